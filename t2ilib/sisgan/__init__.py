"""SISGAN (Dong et al., ICCV 2017): the model (``model``), its losses (``losses``), the training
step (``step``), the recipes (``recipes``), the run wiring (``train``) and editing
(``sampling``)."""

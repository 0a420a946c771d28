"""SSA-GAN (Liao et al., CVPR 2022): the model (``blocks``, ``ssacn``, ``model``), its losses
(``losses``, ``diversity``), the training step (``step``), the recipes (``recipes``), the run
wiring (``train``) and sampling (``sampling``)."""

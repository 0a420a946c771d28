"""The applications on top of the library: the command line (``cli``), evaluation of a trained
model (``evaluate``) and the interactive demo (``demo``)."""

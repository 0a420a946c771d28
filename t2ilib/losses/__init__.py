"""Losses: DAMSM matching (``damsm``); hinge, matching-aware pairs, MA-GP (``adversarial``);
the mode-seeking diversity term (``diversity``)."""

"""Losses: DAMSM word/sentence matching (``damsm``), hinge + matching-aware + MA-GP (``adversarial``)."""

"""Training loops (DAMSM pretraining, SSA-GAN, SISGAN) and checkpoints."""

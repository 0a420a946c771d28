"""AttnGAN's DAMSM, shared by both papers: the image encoders (``image_encoder``), the matching
losses (``losses``), the loss a generator's images get (``guide``), pretraining on the engine
(``pretrain``) and the encoders' checkpoints (``checkpoint``)."""

"""AttnGAN's DAMSM, shared by both papers: the image encoders (``image_encoder``), the matching
losses (``losses``), the loss a generator's images get (``guide``), pretraining on the engine
(``pretrain``), the encoders' checkpoints (``checkpoint``) and the import of AttnGAN's
released encoders for CUB (``convert``)."""

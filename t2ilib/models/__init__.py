"""Networks: image encoders, conditioning blocks, SSACN, SSA-GAN's generator and discriminator."""

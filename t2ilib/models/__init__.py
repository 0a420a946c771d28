"""Networks: image encoders, conditioning blocks, SSACN, the SSA-GAN generator/discriminator, SISGAN."""

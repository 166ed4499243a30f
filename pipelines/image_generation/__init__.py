"""Image generation: a DCGAN-style GAN (spectral norm, EMA generator) on Fashion-MNIST, measured by FID/KID."""

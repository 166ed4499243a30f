"""Image denoising: a residual CNN (DnCNN/FFDNet-style or U-Net) trained on clean photographs with noise added on the fly."""

"""vidtune: long, temporally consistent, pose-guided video generation with diffusion models."""

__version__ = "0.1.0"

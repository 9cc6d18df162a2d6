"""transferlab: a Hydra + PyTorch Lightning research template for transfer learning."""

__version__ = "0.1.0"

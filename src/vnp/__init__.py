"""vnp: VirNucPro inference, fast and faithful, in plain PyTorch."""

__version__ = "0.1.0"

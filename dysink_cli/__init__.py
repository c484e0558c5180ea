"""dysink: long autoregressive video rendering on one GPU."""

__version__ = "0.1.0"

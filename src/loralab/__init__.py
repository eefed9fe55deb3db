"""loralab: compare LoRA (and its variants) with full fine-tuning, with Hydra + Lightning."""

__version__ = "0.1.0"

"""Backbones that know nothing of LoRA: plain nn.Modules with well-named Linear layers."""

from loralab.models.backbone import (
    build_backbone,
    load_backbone,
    read_metadata,
    save_backbone,
)
from loralab.models.blocks import FeedForward, MultiHeadAttention, TransformerBlock
from loralab.models.encoder import TransformerEncoderClassifier
from loralab.models.gpt import TinyGPT

__all__ = [
    "FeedForward",
    "MultiHeadAttention",
    "TinyGPT",
    "TransformerBlock",
    "TransformerEncoderClassifier",
    "build_backbone",
    "load_backbone",
    "read_metadata",
    "save_backbone",
]

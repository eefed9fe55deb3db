"""Data modules that yield {"input_ids", "attention_mask", "labels"} batch dicts."""

from loralab.data.char_text import CharTextDataModule
from loralab.data.dataset import TensorDictDataset
from loralab.data.instruct import InstructDataModule
from loralab.data.lm_text import LMTextDataModule
from loralab.data.synthetic import SyntheticDataModule, make_token_dataset
from loralab.data.text import TextClassificationDataModule

__all__ = [
    "CharTextDataModule",
    "InstructDataModule",
    "LMTextDataModule",
    "SyntheticDataModule",
    "TensorDictDataset",
    "TextClassificationDataModule",
    "make_token_dataset",
]

"""Data modules that yield {"input_ids", "attention_mask", "labels"} batch dicts."""

from loralab.data.dataset import TensorDictDataset
from loralab.data.synthetic import SyntheticDataModule, make_token_dataset

__all__ = ["SyntheticDataModule", "TensorDictDataset", "make_token_dataset"]

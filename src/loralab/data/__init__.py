"""Data modules that yield {"input_ids", "attention_mask", "labels"} batch dicts."""

# the bundled writers under their old paths too: checkpoints saved before they moved to
# bundled/ name them as `loralab.data.<module>.<writer>` in their embedded run config
from loralab.data.bundled import instructions, real_qa, reviews  # noqa: F401
from loralab.data.char_text import CharTextDataModule
from loralab.data.dataset import TensorDictDataset
from loralab.data.instruction_tuning import InstructDataModule
from loralab.data.lm_text import LMTextDataModule
from loralab.data.synthetic import SyntheticDataModule, make_token_dataset
from loralab.data.text_classification import TextClassificationDataModule
from loralab.data.text_source import TextSource

__all__ = [
    "CharTextDataModule",
    "InstructDataModule",
    "LMTextDataModule",
    "SyntheticDataModule",
    "TensorDictDataset",
    "TextClassificationDataModule",
    "TextSource",
    "make_token_dataset",
]

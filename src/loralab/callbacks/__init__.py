"""Lightning callbacks: measurement and checks that stay out of the task modules."""

from loralab.callbacks.atomic_checkpoint import AtomicModelCheckpoint
from loralab.callbacks.data_position import RestoreDataPosition
from loralab.callbacks.merge_check import MergeCheck
from loralab.callbacks.nonfinite import NonFiniteLossError, NonFiniteLossGuard
from loralab.callbacks.resources import ResourceMonitor
from loralab.callbacks.run_config import EmbedRunConfig
from loralab.callbacks.source_eval import SourceEvaluation
from loralab.callbacks.text_samples import TextSamples

__all__ = [
    "AtomicModelCheckpoint",
    "EmbedRunConfig",
    "MergeCheck",
    "NonFiniteLossError",
    "NonFiniteLossGuard",
    "ResourceMonitor",
    "RestoreDataPosition",
    "SourceEvaluation",
    "TextSamples",
]

"""Lightning callbacks: measurement and checks that stay out of the task modules."""

from loralab.callbacks.checkpointing import AtomicModelCheckpoint, RestoreDataPosition
from loralab.callbacks.checks import MergeCheck, NonFiniteLossError, NonFiniteLossGuard
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

"""Lightning callbacks: measurement and checks that stay out of the task modules."""

from loralab.callbacks.merge_check import MergeCheck
from loralab.callbacks.resources import ResourceMonitor
from loralab.callbacks.run_config import EmbedRunConfig

__all__ = ["EmbedRunConfig", "MergeCheck", "ResourceMonitor"]

"""Lightning modules, one per task; none of them knows which adapter it trains."""

from loralab.tasks.classification import ClassificationTask
from loralab.tasks.language_modeling import LanguageModelingTask

__all__ = ["ClassificationTask", "LanguageModelingTask"]

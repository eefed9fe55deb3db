"""Lightning modules, one per task; none of them knows which adapter it trains."""

from loralab.tasks.classification import ClassificationTask

__all__ = ["ClassificationTask"]

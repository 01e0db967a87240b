"""Lightning modules and training plumbing (the only place that knows both models and Lightning)."""
from zoo.lightning.classification import ClassificationModule
from zoo.lightning.segmentation import SegmentationModule

__all__ = ["ClassificationModule", "SegmentationModule"]

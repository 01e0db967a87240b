"""Data modules: built-in procedural data, image/mask folders, and the public datasets."""
from zoo.data.base import SegDataModule

__all__ = ["SegDataModule"]

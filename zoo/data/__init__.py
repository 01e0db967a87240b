"""Data modules: built-in procedural data, image/mask folders, and the public datasets."""
from zoo.data.base import SegDataModule
from zoo.data.folder import FolderSegDataModule
from zoo.data.synthetic import SyntheticSegDataModule

__all__ = ["SegDataModule", "SyntheticSegDataModule", "FolderSegDataModule"]

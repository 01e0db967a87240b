"""Data modules: built-in procedural data, image/mask folders, and the public datasets."""
from zoo.data.base import SegDataModule
from zoo.data.drive import DriveDataModule
from zoo.data.folder import FolderSegDataModule
from zoo.data.imagefolder import ImageFolderDataModule
from zoo.data.msd import DecathlonDataModule
from zoo.data.nifti_folder import NiftiFolderDataModule
from zoo.data.synthetic import SyntheticSegDataModule

__all__ = ["SegDataModule", "SyntheticSegDataModule", "FolderSegDataModule", "DriveDataModule",
           "DecathlonDataModule", "NiftiFolderDataModule", "ImageFolderDataModule"]

"""Built-in procedural segmentation data, 2-D or 3-D, generated from a seed: the quickstart's default dataset.

Classes: 0 background, 1 blobs (ellipses/ellipsoids with a granular texture and a domed profile), 2 boxes
(rotated rectangles/cuboids with a stripe texture), 3 tubes (thin curvilinear structures, 3-5 px wide).
Every object's contrast to its local background is drawn from the same range for all classes, with a random
sign, on a textured background under a smooth multiplicative bias field and Gaussian noise: intensity alone
does not separate the classes, shape, texture and context do.

Case ``i`` of a split is generated from ``numpy.random.default_rng([seed, split, i])``, so any case is
reproducible on its own and DataLoader workers agree. Images are stored quantised (2-D: 16-bit for one channel,
8-bit for three; 3-D: float32) and normalised per image and channel by z-score (``zoo.data.normalize``), so the
files written by ``export`` give the same model input when read back and normalised the same way.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from scipy.ndimage import gaussian_filter
from torch.utils.data import DataLoader, Dataset

from zoo.data.base import SegDataModule
from zoo.data.normalize import ZSCORE, normalize

__all__ = ["CLASS_NAMES", "SPLITS", "generate_case", "SyntheticSegDataset", "SyntheticSegDataModule"]

CLASS_NAMES = ("background", "blob", "box", "tube")
SPLITS = {"train": 0, "val": 1, "test": 2}
_COORDS: dict[tuple[int, ...], np.ndarray] = {}


def _coords(shape: tuple[int, ...]) -> np.ndarray:
    """Cached ``[d, *shape]`` float32 grid of voxel coordinates."""
    if shape not in _COORDS:
        _COORDS[shape] = np.indices(shape, dtype=np.float32)
    return _COORDS[shape]


def _rotation(rng: np.random.Generator, d: int) -> np.ndarray:
    """Uniformly random rotation matrix (columns are the object's axes)."""
    if d == 2:
        a = rng.uniform(0, 2 * np.pi)
        return np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]], dtype=np.float32)
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return (q * np.sign(np.diag(r))).astype(np.float32)


def _window(lo: np.ndarray, hi: np.ndarray, shape: tuple[int, ...]) -> tuple[slice, ...] | None:
    """Slices of the box [lo, hi] clipped to the image, or None when it lies outside."""
    a = np.maximum(np.floor(lo).astype(int), 0)
    b = np.minimum(np.ceil(hi).astype(int) + 1, shape)
    if np.any(b <= a):
        return None
    return tuple(slice(int(i), int(j)) for i, j in zip(a, b))


def _local(sl: tuple[slice, ...], center: np.ndarray, rot: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """Coordinates of the window's voxels in the object's frame, ``[*window, d]``."""
    x = np.moveaxis(_coords(shape)[(slice(None), *sl)], 0, -1) - center.astype(np.float32)
    return x @ rot


def _smooth_field(rng: np.random.Generator, shape: tuple[int, ...], waves: int, max_freq: float) -> np.ndarray:
    """Sum of random low-frequency plane waves, scaled to [-1, 1]: bias fields and background texture."""
    k = (rng.normal(size=(waves, len(shape))) * max_freq * 2 * np.pi / np.array(shape)).astype(np.float32)
    phase = rng.uniform(0, 2 * np.pi, size=(waves, 1)).astype(np.float32)
    field = np.cos(k @ _coords(shape).reshape(len(shape), -1) + phase).sum(0).reshape(shape)
    return field / max(float(np.abs(field).max()), 1e-6)


def _tube_points(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """A smooth wiggly polyline crossing a good part of the image, ``[n, d]``."""
    d, size = len(shape), np.array(shape, np.float32)
    direction = rng.normal(size=d)
    direction /= np.linalg.norm(direction)
    rot = _rotation(rng, d)
    normals = [n - (n @ direction) * direction for n in rot.T[: d - 1]]
    length = rng.uniform(0.6, 1.1) * size.min()
    t = np.linspace(0, 1, max(int(length / 2), 8))[:, None]
    pts = (t - 0.5) * length * direction
    for n in normals:
        n = n / max(np.linalg.norm(n), 1e-6)
        amp, freq, phase = rng.uniform(0.04, 0.12) * size.min(), rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
        pts = pts + amp * np.sin(2 * np.pi * freq * t + phase) * n
    return pts + rng.uniform(0.3, 0.7, size=d) * size


def _tube_mask(pts: np.ndarray, radius: float, shape: tuple[int, ...], mask: np.ndarray) -> None:
    """Mark voxels within ``radius`` of the polyline into ``mask``: exact balls around points 0.5 px apart."""
    seg = np.linalg.norm(np.diff(pts, axis=0), axis=1)
    t = np.interp(np.arange(0, seg.sum(), 0.5), np.concatenate([[0], np.cumsum(seg)]), np.arange(len(pts)))
    i = np.minimum(t.astype(np.int32), len(pts) - 2)
    dense = (pts[i] + (t - i)[:, None] * (pts[i + 1] - pts[i])).astype(np.float32)
    r = int(np.ceil(radius))
    offsets = np.stack(np.meshgrid(*[np.arange(-r, r + 2)] * len(shape), indexing="ij"), -1).reshape(-1, len(shape))
    vox = np.floor(dense).astype(np.int32)[:, None, :] + offsets.astype(np.int32)[None]
    diff = vox - dense[:, None, :]
    near = np.einsum("pkd,pkd->pk", diff, diff) <= radius * radius
    vox = vox[near]
    vox = vox[((vox >= 0) & (vox < np.array(shape, np.int32))).all(-1)]
    mask[tuple(vox.T)] = True


def _quantise(image: np.ndarray, spatial_dims: int) -> np.ndarray:
    """How the case is stored on disk: 2-D 16-bit (1 channel) or 8-bit (3 channels) integers, 3-D float32."""
    image = np.clip(image, 0.0, 1.0)
    if spatial_dims == 3:
        return image.astype(np.float32)
    if image.shape[0] == 3:
        return np.round(image * 255).astype(np.uint8)
    return np.round(image * 65535).astype(np.uint16)


def generate_case(seed: int, split: str, index: int, spatial_dims: int = 2, image_size: Sequence[int] = (64, 64),
                  in_channels: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """One case: the stored image ``[C, *image_size]`` (see ``_quantise``) and its int64 label map."""
    shape = tuple(int(s) for s in image_size)
    d = spatial_dims
    rng = np.random.default_rng([seed, SPLITS[split], index])
    size = float(min(shape))
    area = float(np.prod(shape)) / size ** d  # objects scale with the shortest side; elongated images get more
    label = np.zeros(shape, np.int64)
    base = rng.uniform(0.35, 0.65, size=in_channels).astype(np.float32)
    bg = np.stack([b + 0.1 * _smooth_field(rng, shape, 4, 4.0) for b in base])
    image = bg.copy()
    speckle = gaussian_filter(rng.standard_normal(shape, dtype=np.float32), 0.8)
    speckle /= max(float(speckle.std()), 1e-6)

    def contrast() -> np.ndarray:  # same range for every class, random sign per object and channel
        return (rng.choice([-1.0, 1.0], size=in_channels) * rng.uniform(0.2, 0.35, size=in_channels)).astype(np.float32)

    def paint(sl: tuple[slice, ...], m: np.ndarray, cls: int, values: np.ndarray) -> None:
        label[sl][m] = cls
        image[(slice(None), *sl)][:, m] = values

    n_box, n_blob, n_tube = (max(1, int(round(rng.integers(lo, hi + 1) * area))) for lo, hi in ((2, 3), (2, 3), (1, 2)))
    for cls in rng.permutation([2] * n_box + [1] * n_blob):
        for _ in range(4):  # a few tries to find a place that hardly overlaps the objects already there
            center = rng.uniform(0.15, 0.85, size=d) * np.array(shape)
            half = rng.uniform(0.08, 0.17, size=d) * size
            rot = _rotation(rng, d)
            sl = _window(center - np.linalg.norm(half), center + np.linalg.norm(half), shape)
            u = _local(sl, center, rot, shape)
            if cls == 2:  # box with stripes along its first axis
                m = (np.abs(u) <= half.astype(np.float32)).all(-1)
                profile = 1 + 0.5 * np.sin(2 * np.pi * u[..., 0] / rng.uniform(3.0, 5.0) + rng.uniform(0, 2 * np.pi))
            else:  # ellipse/ellipsoid, domed and granular
                rho2 = ((u / half.astype(np.float32)) ** 2).sum(-1)
                m = rho2 <= 1
                profile = 1.2 - 0.4 * rho2 + 0.25 * speckle[sl]
            if m.any() and (label[sl][m] > 0).mean() <= 0.1:
                c = contrast()
                paint(sl, m, int(cls), bg[(slice(None), *sl)][:, m] + c[:, None] * profile[m][None])
                break
    for _ in range(n_tube):
        m = np.zeros(shape, bool)
        _tube_mask(_tube_points(rng, shape), rng.uniform(1.5, 2.5), shape, m)
        c = contrast() * 1.2
        paint(tuple(slice(None) for _ in shape), m, 3, bg[:, m] + c[:, None])
    bias = 1 + 0.25 * np.stack([_smooth_field(rng, shape, 3, 1.0) for _ in range(in_channels)])
    image = image * bias + rng.uniform(0.02, 0.05) * rng.standard_normal(image.shape, dtype=np.float32)
    return _quantise(image, d), label


class SyntheticSegDataset(Dataset):
    """In-memory cases of one split: normalised float32 images, int64 labels, names."""

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, names: list[str]) -> None:
        self.images, self.labels, self.names = images, labels, names

    def __len__(self) -> int:
        return len(self.names)

    def __getitem__(self, i: int) -> dict:
        return {"image": self.images[i], "label": self.labels[i], "name": self.names[i]}


def _positive(name: str, value: int, minimum: int = 1) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


class SyntheticSegDataModule(SegDataModule):
    """Procedural 2-D/3-D data (see module doc): whole images are the training patches; val/test one case a batch.

    The test split is generated only when ``num_test > 0``; otherwise ``test`` runs on the validation cases.
    """

    def __init__(
        self, spatial_dims: int = 2, image_size: int | tuple[int, ...] = 64, num_train: int = 512, num_val: int = 32,
        num_test: int = 0, seed: int = 0, batch_size: int = 16, num_workers: int = 0, in_channels: int = 1,
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims!r}")
        size = (image_size,) * spatial_dims if isinstance(image_size, int) else tuple(image_size)
        if len(size) != spatial_dims or any(not isinstance(s, int) or s < 16 for s in size):
            raise ValueError(f"image_size must be an int >= 16 or {spatial_dims} of them (spatial_dims="
                             f"{spatial_dims}), got {image_size!r}")
        if spatial_dims == 2 and in_channels not in (1, 3):
            raise ValueError(f"in_channels must be 1 or 3 for 2-D synthetic data (stored as PNG), got {in_channels!r}")
        self.save_hyperparameters()
        self.spatial_dims, self.image_size = spatial_dims, size
        self.num_train, self.num_val = _positive("num_train", num_train), _positive("num_val", num_val)
        self.num_test, self.seed = _positive("num_test", num_test, 0), seed
        self.batch_size, self.num_workers = _positive("batch_size", batch_size), _positive("num_workers", num_workers, 0)
        self.in_channels = _positive("in_channels", in_channels)
        self.num_classes, self.class_names = len(CLASS_NAMES), CLASS_NAMES
        self.patch_size = size
        self.normalization = dict(ZSCORE)
        self._data: dict[str, SyntheticSegDataset] = {}

    def case_name(self, split: str, index: int) -> str:
        return f"synthetic_{split}_{index:04d}"

    def generate(self, split: str, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Stored image and label of one case (what ``export`` writes)."""
        return generate_case(self.seed, split, index, self.spatial_dims, self.image_size, self.in_channels)

    def dataset(self, split: str) -> SyntheticSegDataset:
        """The split's cases, generated on first use and kept in memory."""
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        if split not in self._data:
            n = {"train": self.num_train, "val": self.num_val, "test": self.num_test}[split]
            images, labels = zip(*(self.generate(split, i) for i in range(n)))
            x = np.stack([normalize(im.astype(np.float32), ZSCORE) for im in images])
            self._data[split] = SyntheticSegDataset(torch.from_numpy(x), torch.from_numpy(np.stack(labels)),
                                                    [self.case_name(split, i) for i in range(n)])
        return self._data[split]

    def setup(self, stage: str | None = None) -> None:
        if stage in (None, "fit"):
            self.dataset("train")
        if stage in (None, "fit", "validate") or (stage == "test" and self.num_test == 0):
            self.dataset("val")
        if stage in (None, "test") and self.num_test > 0:
            self.dataset("test")

    def _loader(self, split: str, batch_size: int, shuffle: bool) -> DataLoader:
        return DataLoader(self.dataset(split), batch_size=batch_size, shuffle=shuffle, num_workers=self.num_workers,
                          persistent_workers=self.num_workers > 0, pin_memory=torch.cuda.is_available())

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", self.batch_size, True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", 1, False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test" if self.num_test > 0 else "val", 1, False)

    def export(self, folder: str | Path, split: str = "val") -> Path:
        """Write a split's cases to ``folder/images`` and ``folder/masks`` (2-D PNG, 3-D NIfTI) + ``dataset.json``."""
        from zoo.data.io import write_image, write_mask

        n = {"train": self.num_train, "val": self.num_val, "test": self.num_test or self.num_val}[split]
        src = split if split != "test" or self.num_test > 0 else "val"
        folder = Path(folder)
        (folder / "images").mkdir(parents=True, exist_ok=True)
        (folder / "masks").mkdir(parents=True, exist_ok=True)
        for i in range(n):
            image, label = self.generate(src, i)
            name = self.case_name(src, i)
            if self.spatial_dims == 2:
                write_image(folder / "images" / f"{name}.png", image)
                write_mask(folder / "masks" / f"{name}.png", label)
            else:
                import nibabel as nib

                vol = image[0] if self.in_channels == 1 else np.moveaxis(image, 0, -1)
                nib.save(nib.Nifti1Image(vol, np.eye(4)), str(folder / "images" / f"{name}.nii.gz"))
                nib.save(nib.Nifti1Image(label.astype(np.uint8), np.eye(4)), str(folder / "masks" / f"{name}.nii.gz"))
        meta = dict(self.describe(), split=src, num_cases=n, seed=self.seed)
        (folder / "dataset.json").write_text(json.dumps(meta, indent=2))
        return folder

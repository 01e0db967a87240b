"""Post-processing of predicted label maps: keep the largest connected component of each foreground class, as
nnU-Net does for structures that are one piece (a hippocampus, an organ), so stray islands become background."""
from __future__ import annotations

from typing import Sequence

import numpy as np
from scipy import ndimage

__all__ = ["keep_largest_component"]


def keep_largest_component(labels: np.ndarray, num_classes: int, classes: Sequence[int] | None = None,
                           connectivity: int = 1) -> np.ndarray:
    """A copy of the integer label map ``labels`` ([*spatial]) in which every class of ``classes`` (default: all
    foreground classes 1..num_classes-1) keeps only its largest connected component; the rest becomes 0.

    ``connectivity`` 1 joins voxels that share a face, ``labels.ndim`` also those that share only a corner (scipy's
    ``generate_binary_structure``). Ties keep the component that scipy numbers first.
    """
    labels = np.asarray(labels)
    if labels.dtype.kind not in "iub":
        raise ValueError(f"labels must be an integer label map, got dtype {labels.dtype}")
    if labels.ndim < 1:
        raise ValueError(f"labels must have at least one spatial axis, got shape {labels.shape}")
    if not 1 <= connectivity <= labels.ndim:
        raise ValueError(f"connectivity must be in [1, {labels.ndim}] for a {labels.ndim}-D label map, "
                         f"got {connectivity}")
    wanted = list(range(1, num_classes)) if classes is None else [int(c) for c in classes]
    bad = [c for c in wanted if not 1 <= c < num_classes]
    if bad:
        raise ValueError(f"classes must be foreground classes in [1, {num_classes}), got {bad}")
    structure = ndimage.generate_binary_structure(labels.ndim, connectivity)
    out = labels.copy()
    for c in wanted:
        components, count = ndimage.label(labels == c, structure=structure)
        if count > 1:
            sizes = np.bincount(components.ravel())[1:]
            out[(components > 0) & (components != 1 + int(sizes.argmax()))] = 0
    return out

"""Brain MRI segmentation data: the Colin27 T1 volume and an atlas in MNI space, from MRIcron's templates.

The task is to segment atlas regions from the T1 image of a single brain (Holmes et al. 1998, "Enhancement
of MR images using registration for signal averaging", JCAT 22:324, the "Colin27" average of 27 scans).
The files (Debian package ``mricron-data``) are read with nibabel:

* ``ch2.nii.gz``: T1, 1 mm, 181x217x181, the same grid and affine as ``aal.nii.gz`` and ``brodmann.nii.gz``;
* ``ch2better.nii.gz``: a 0.5 mm T1 on another grid (301x370x316);
* ``HarvardOxford-cort-maxprob-thr0-1mm.nii.gz``: 48 cortical regions on a left-right flipped 182x218x182
  grid (x axis pointing left).

Label sets (``labels=``):

* ``"lobes"`` (default, 9 classes): the 116 AAL regions (Tzourio-Mazoyer et al. 2002) grouped into 8 lobes
  plus background. The table ships as ``aal_lobes.json``; the grouping is the leading digit of the AAL
  code that MRIcron's ``aal.nii.txt`` lists for each region.
* ``"aal"`` (117 classes): every AAL region.
* ``"harvard-oxford"`` (49 classes) and ``"brodmann"`` (the 41 areas present, plus background).

Before use the atlas and the image must share a grid. :func:`same_grid` compares shapes and affines; when
they differ the atlas is resampled onto the image's grid with nearest-neighbour interpolation (labels stay
labels) and a note says so (``BrainMRI.notes``, which the study prints and writes into its report).

Preprocessing, in order: optional integer downsampling (``downsample=f``: mean over f³ blocks for the
image, the most frequent label of each block for the atlas); a crop to the atlas's bounding box with a
``margin``; zero-padding of every axis to a multiple of ``pad_multiple`` (so a U-Net's poolings divide
evenly); intensity normalisation: clip at the 99.5th percentile of the non-zero (head) voxels, then
z-score with the mean and standard deviation of those voxels, so background maps to a constant below 0.

Splits (:func:`axial_slabs`): disjoint slabs of axial slices (the third, inferior-superior axis) in a
repeating cycle ``train, gap, val, gap, test, gap`` over the slices that contain brain, so every split
samples the whole brain from bottom to top while no test or validation slice is closer than ``gap + 1``
slices to a training slice. Both 2-D slices (:meth:`BrainMRI.slices`) and 3-D slabs (:meth:`BrainMRI.slabs`,
from which 3-D patches are cut) are offered.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

IMAGES = {"ch2": "ch2.nii.gz", "ch2better": "ch2better.nii.gz"}
ATLASES = {
    "lobes": "aal.nii.gz",
    "aal": "aal.nii.gz",
    "harvard-oxford": "HarvardOxford-cort-maxprob-thr0-1mm.nii.gz",
    "brodmann": "brodmann.nii.gz",
}
SPLITS = ("train", "val", "test")


def aal_lobe_table() -> dict:
    """The shipped AAL→lobe table: "
    "``{"lobes": [...], "regions": [{"index", "name", "code", "lobe"}, ...]}``."""
    with open(Path(__file__).with_name("aal_lobes.json"), encoding="utf-8") as handle:
        return json.load(handle)


def load_nifti(path: os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """The voxel array (in its stored dtype) and the 4x4 voxel-to-world affine of a NIfTI file."""
    try:
        import nibabel
    except ImportError as error:
        raise ImportError(
            "excite.datasets: reading NIfTI needs nibabel (pip install 'excite[study]')"
        ) from error
    image = nibabel.load(str(path))
    return np.asanyarray(image.dataobj), np.asarray(image.affine, dtype=np.float64)


def same_grid(
    shape_a: Sequence[int],
    affine_a: np.ndarray,
    shape_b: Sequence[int],
    affine_b: np.ndarray,
    atol: float = 1e-3,
) -> bool:
    """True when two volumes have the same shape and affines equal within ``atol`` millimetres."""
    return tuple(shape_a) == tuple(shape_b) and bool(np.allclose(affine_a, affine_b, atol=atol))


def resample(
    data: np.ndarray,
    affine: np.ndarray,
    target_shape: Sequence[int],
    target_affine: np.ndarray,
    *,
    mode: str = "nearest",
    chunk: int = 32,
) -> np.ndarray:
    """Resample ``data`` (voxel→world ``affine``) onto the grid ``(target_shape, target_affine)``.

    Each target voxel centre is mapped to source voxel coordinates with ``inv(affine) @ target_affine``
    (any affine, flips included) and sampled with ``torch.nn.functional.grid_sample`` (``align_corners=True``
    so voxel centres map exactly). Points outside the source read 0. ``mode="nearest"`` for labels,
    ``"bilinear"`` (trilinear in 3-D) for intensities. Works in slabs of ``chunk`` target planes to bound
    memory. Returns an array of ``data``'s dtype.

    Raises:
        ValueError: ``data`` not 3-D, or an unknown mode.
    """
    if data.ndim != 3:
        raise ValueError(f"resample: expected a 3-D volume, got shape {list(data.shape)}")
    if mode not in ("nearest", "bilinear"):
        raise ValueError(f"resample: mode must be 'nearest' or 'bilinear', got {mode!r}")
    source = torch.from_numpy(np.ascontiguousarray(data, dtype=np.float32))[None, None]
    to_source = torch.from_numpy(np.linalg.inv(affine) @ target_affine)
    sizes = torch.tensor(data.shape, dtype=torch.float64)
    out = np.empty(tuple(target_shape), dtype=data.dtype)
    j, k = torch.meshgrid(
        torch.arange(target_shape[1], dtype=torch.float64),
        torch.arange(target_shape[2], dtype=torch.float64),
        indexing="ij",
    )
    for start in range(0, target_shape[0], chunk):
        stop = min(start + chunk, target_shape[0])
        i = torch.arange(start, stop, dtype=torch.float64)[:, None, None].expand(-1, *j.shape)
        voxels = torch.stack([i, j.expand_as(i), k.expand_as(i), torch.ones_like(i)], dim=-1)
        source_voxels = voxels @ to_source.T
        normalised = 2.0 * source_voxels[..., :3] / (sizes - 1).clamp(min=1) - 1.0
        # grid_sample wants (x, y, z) = (last, middle, first) axis of the input.
        grid = normalised.flip(-1).to(torch.float32)[None]
        sampled = F.grid_sample(source, grid, mode=mode, padding_mode="zeros", align_corners=True)
        values = sampled[0, 0].numpy()
        if np.issubdtype(data.dtype, np.integer):
            values = np.rint(values)
        out[start:stop] = values.astype(data.dtype)
    return out


def downsample_image(image: Tensor, factor: int) -> Tensor:
    """Mean over ``factor³`` blocks (the remainder at the high end of each axis is dropped)."""
    if factor == 1:
        return image
    return F.avg_pool3d(image[None, None].float(), factor)[0, 0]


def downsample_labels(labels: Tensor, factor: int) -> Tensor:
    """The most frequent label of each ``factor³`` block (ties go to the smaller label)."""
    if factor == 1:
        return labels
    sizes = [s // factor for s in labels.shape]
    blocks = labels[: sizes[0] * factor, : sizes[1] * factor, : sizes[2] * factor]
    blocks = blocks.reshape(sizes[0], factor, sizes[1], factor, sizes[2], factor).permute(0, 2, 4, 1, 3, 5)
    return blocks.reshape(*sizes, factor**3).mode(dim=-1).values


def axial_slabs(
    first: int, stop: int, *, train: int = 12, val: int = 4, test: int = 4, gap: int = 2
) -> dict[str, list[tuple[int, int]]]:
    """Slabs ``[start, end)`` of slices in ``[first, stop)``, cycling ``train, gap, val, gap, test, gap``.

    Only whole slabs are kept. Any validation or test slice is at least ``gap + 1`` slices away from
    every training slice (``gap`` slices lie between them).

    Raises:
        ValueError: a non-positive slab size, a negative gap, or a range too short for one cycle.
    """
    for name, size in (("train", train), ("val", val), ("test", test)):
        if size < 1:
            raise ValueError(f"axial_slabs: {name} slab must be >= 1 slice, got {size}")
    if gap < 0:
        raise ValueError(f"axial_slabs: gap must be >= 0, got {gap}")
    cycle = train + val + test + 3 * gap
    if stop - first < train + val + test + 2 * gap:
        raise ValueError(
            f"axial_slabs: slices [{first}, {stop}) are too few for one cycle of "
            f"train {train}, val {val}, test {test} with gaps of {gap}"
        )
    slabs: dict[str, list[tuple[int, int]]] = {split: [] for split in SPLITS}
    start = first
    while start < stop:
        offset = start
        for split, size in (("train", train), ("val", val), ("test", test)):
            if offset + size <= stop:
                slabs[split].append((offset, offset + size))
            offset += size + gap
        start += cycle
    return slabs


def slab_indices(slabs: Sequence[tuple[int, int]]) -> list[int]:
    return [z for start, end in slabs for z in range(start, end)]


@dataclass
class BrainMRI:
    """A normalised T1 volume ``(X, Y, Z)`` float32 and its labels ``(X, Y, Z)`` int64 on one grid.

    Axis 2 is the axial (inferior→superior) axis. ``affine`` maps voxel indices of these arrays to MNI
    millimetres; ``notes`` lists what was done to the data (resampling, downsampling).
    """

    image: Tensor
    labels: Tensor
    affine: np.ndarray
    label_names: list[str]
    spacing_mm: tuple[float, float, float]
    notes: list[str] = field(default_factory=list)
    brain_slices: tuple[int, int] = (0, 0)
    source: Path | None = None

    @property
    def num_classes(self) -> int:
        return len(self.label_names)

    def split_slabs(
        self, *, train: int = 12, val: int = 4, test: int = 4, gap: int = 2
    ) -> dict[str, list[tuple[int, int]]]:
        """:func:`axial_slabs` over the slices that contain brain."""
        return axial_slabs(*self.brain_slices, train=train, val=val, test=test, gap=gap)

    def slices(self, slabs: Sequence[tuple[int, int]]) -> tuple[Tensor, Tensor]:
        """2-D axial slices of the given slabs: images ``(N, 1, X, Y)`` and labels ``(N, X, Y)``."""
        index = torch.tensor(slab_indices(slabs), dtype=torch.long)
        images = self.image.index_select(2, index).permute(2, 0, 1).unsqueeze(1).contiguous()
        labels = self.labels.index_select(2, index).permute(2, 0, 1).contiguous()
        return images, labels

    def slabs(self, slabs: Sequence[tuple[int, int]]) -> list[tuple[Tensor, Tensor]]:
        """3-D slabs: for each, the image ``(1, X, Y, T)`` and labels ``(X, Y, T)``."""
        return [
            (self.image[None, :, :, a:b].contiguous(), self.labels[:, :, a:b].contiguous()) for a, b in slabs
        ]


def _relabel(atlas: np.ndarray, labels: str) -> tuple[np.ndarray, list[str]]:
    if labels in ("lobes", "aal"):
        table = aal_lobe_table()
        if labels == "aal":
            names = ["background"] + [r["name"] for r in sorted(table["regions"], key=lambda r: r["index"])]
            return atlas.astype(np.int64), names
        lookup = np.zeros(256, dtype=np.int64)
        for region in table["regions"]:
            lookup[region["index"]] = table["lobes"].index(region["lobe"])
        return lookup[atlas.astype(np.int64)], list(table["lobes"])
    values = np.unique(atlas)
    values = values[values != 0]
    prefix = "HO" if labels == "harvard-oxford" else "BA"
    lookup = np.zeros(int(atlas.max()) + 1, dtype=np.int64)
    lookup[values] = np.arange(1, len(values) + 1)
    return lookup[atlas.astype(np.int64)], ["background"] + [f"{prefix}{int(v)}" for v in values]


def load_brain_mri(
    path: os.PathLike | None = None,
    *,
    image: str = "ch2",
    labels: str = "lobes",
    downsample: int = 1,
    margin: int = 4,
    pad_multiple: int = 16,
    log: Callable[[str], None] | None = None,
) -> BrainMRI:
    """Load the T1 image and an atlas, put them on one grid, crop, pad and normalise.

    Args:
        path: the templates folder (or ``$EXCITE_BRAIN_MRI``, or the Debian location).
        image: ``"ch2"`` (1 mm, the atlases' grid) or ``"ch2better"`` (0.5 mm; the atlas is resampled to it).
        labels: ``"lobes"`` (9 classes), ``"aal"`` (117), ``"harvard-oxford"`` (49) or ``"brodmann"``.
        downsample: integer factor applied after the grids agree (2 turns 1 mm into 2 mm).
        margin: voxels kept around the atlas's bounding box.
        pad_multiple: every axis is zero-padded at its high end to a multiple of this.
        log: called with each note (resampling etc.) as it happens.

    Raises:
        FileNotFoundError: missing files; the message says how to install them.
        ValueError: unknown ``image`` or ``labels``, or ``downsample < 1``.
    """
    from . import BRAIN_MRI

    if image not in IMAGES:
        raise ValueError(f"load_brain_mri: image must be one of {sorted(IMAGES)}, got {image!r}")
    if labels not in ATLASES:
        raise ValueError(f"load_brain_mri: labels must be one of {sorted(ATLASES)}, got {labels!r}")
    if downsample < 1:
        raise ValueError(f"load_brain_mri: downsample must be >= 1, got {downsample}")
    folder = BRAIN_MRI.locate(path)
    for name in (IMAGES[image], ATLASES[labels]):
        if not (folder / name).exists():
            raise FileNotFoundError(f"load_brain_mri: {name} not found in {folder}.\n{BRAIN_MRI.how_to_get}")
    notes: list[str] = []

    def note(message: str) -> None:
        notes.append(message)
        if log is not None:
            log(message)

    t1, affine = load_nifti(folder / IMAGES[image])
    atlas, atlas_affine = load_nifti(folder / ATLASES[labels])
    if same_grid(t1.shape, affine, atlas.shape, atlas_affine):
        note(f"{ATLASES[labels]} and {IMAGES[image]} share one grid {list(t1.shape)} and affine: used as is.")
    else:
        note(
            f"{ATLASES[labels]} (grid {list(atlas.shape)}, voxel sizes "
            f"{np.round(np.diag(atlas_affine)[:3], 3).tolist()}) "
            f"differs from {IMAGES[image]} (grid {list(t1.shape)}, voxel sizes "
            f"{np.round(np.diag(affine)[:3], 3).tolist()}): resampled the atlas onto the image grid "
            f"with nearest-neighbour interpolation."
        )
        atlas = resample(atlas, atlas_affine, t1.shape, affine, mode="nearest")
    atlas, names = _relabel(atlas, labels)

    volume = torch.from_numpy(np.asarray(t1, dtype=np.float32))
    label_volume = torch.from_numpy(atlas)
    if downsample > 1:
        volume = downsample_image(volume, downsample)
        label_volume = downsample_labels(label_volume, downsample)
        shift = (downsample - 1) / 2.0
        scale = np.diag([downsample, downsample, downsample, 1.0])
        scale[:3, 3] = shift
        affine = affine @ scale
        note(f"Downsampled by {downsample} (image: block mean; labels: block mode) to {list(volume.shape)}.")

    # Crop to the labelled brain with a margin, then pad every axis to a multiple of pad_multiple.
    brain = torch.nonzero(label_volume > 0)
    low = (brain.min(dim=0).values - margin).clamp(min=0)
    high = torch.minimum(brain.max(dim=0).values + margin + 1, torch.tensor(label_volume.shape))
    crop = tuple(slice(int(a), int(b)) for a, b in zip(low, high))
    volume, label_volume = volume[crop], label_volume[crop]
    shift = np.eye(4)
    shift[:3, 3] = low.numpy()
    affine = affine @ shift

    head = volume[volume > 0]
    ceiling = float(np.percentile(head.numpy(), 99.5))
    head = head.clamp(max=ceiling)
    mean, std = float(head.mean()), float(head.std())
    volume = (volume.clamp(max=ceiling) - mean) / std

    padding: list[int] = []
    for size in reversed(volume.shape):
        padding.extend([0, (-size) % pad_multiple])
    background = (0.0 - mean) / std
    volume = F.pad(volume, padding, value=background)
    label_volume = F.pad(label_volume, padding, value=0)

    occupied = torch.nonzero(label_volume.flatten(0, 1).any(dim=0)).flatten()
    spacing = tuple(float(s) for s in np.linalg.norm(affine[:3, :3], axis=0))
    return BrainMRI(
        image=volume.contiguous(),
        labels=label_volume.contiguous(),
        affine=affine,
        label_names=names,
        spacing_mm=spacing,  # type: ignore[arg-type]
        notes=notes,
        brain_slices=(int(occupied.min()), int(occupied.max()) + 1),
        source=folder,
    )

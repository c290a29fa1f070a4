"""Fashion-MNIST from its IDX files, with a fixed, documented validation split.

Xiao, Rasul, Vollgraf. "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning
Algorithms", arXiv 1708.07747, 2017. 70,000 grey 28x28 images of 10 clothing classes: 60,000 for training
(6,000 per class) and 10,000 for testing (1,000 per class).

The IDX format (LeCun's MNIST format): a big-endian header ``0x00 0x00 <type> <ndim>`` followed by
``ndim`` big-endian uint32 sizes and the raw data. Fashion-MNIST uses type ``0x08`` (unsigned byte), so
the magic numbers are 2051 for images (3 dims) and 2049 for labels (1 dim). Both ``.gz`` files (as the
Debian package and the official download ship them) and uncompressed files are read.

Validation split: a fixed stratified subset of the training set, ``validation_per_class`` images of
each class (500 by default, so 5,000 validation and 55,000 training images), chosen with a generator
seeded by ``split_seed`` (0 by default). It does not depend on the seed of a training run, so every arm
and seed of a study sees the same split.
"""

from __future__ import annotations

import gzip
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)

_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def read_idx(path: os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) into a numpy array of its declared shape and type.

    Raises:
        ValueError: a header that is not IDX, or a payload whose size disagrees with the header.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        raw = handle.read()
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_TYPES:
        raise ValueError(f"read_idx: {path} is not an IDX file (header bytes {list(raw[:4])})")
    dtype = _IDX_TYPES[raw[2]]
    ndim = raw[3]
    header = 4 + 4 * ndim
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape)) * dtype.itemsize
    if len(raw) - header != expected:
        raise ValueError(
            f"read_idx: {path} declares shape {shape} ({expected} bytes of data), "
            f"but holds {len(raw) - header} bytes"
        )
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def _idx_file(folder: Path, stem: str) -> Path:
    for name in (f"{stem}.gz", stem):
        if (folder / name).exists():
            return folder / name
    raise FileNotFoundError(f"Fashion-MNIST: {stem}(.gz) not found in {folder}")


@dataclass
class Split:
    """Images ``(N, 28, 28)`` uint8 and labels ``(N,)`` int64 of one split."""

    images: Tensor
    labels: Tensor

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def class_counts(self, num_classes: int = len(CLASSES)) -> Tensor:
        return torch.bincount(self.labels, minlength=num_classes)

    def stratified_subset(self, per_class: int, seed: int = 0) -> Split:
        """``per_class`` images of each class, chosen with ``seed``, in a fixed order."""
        keep = _stratified_indices(self.labels, per_class, seed)
        return Split(self.images[keep], self.labels[keep])


@dataclass
class FashionMNIST:
    """The three splits, the class names, and the training-split pixel statistics (in [0, 1] units)."""

    train: Split
    val: Split
    test: Split
    classes: tuple[str, ...] = CLASSES
    mean: float = 0.0
    std: float = 1.0
    source: Path | None = None
    notes: list = field(default_factory=list)

    def splits(self) -> dict[str, Split]:
        return {"train": self.train, "val": self.val, "test": self.test}


def _stratified_indices(labels: Tensor, per_class: int, seed: int) -> Tensor:
    generator = torch.Generator().manual_seed(seed)
    chosen = []
    for label in torch.unique(labels).tolist():
        members = torch.nonzero(labels == label).flatten()
        if per_class > members.numel():
            raise ValueError(
                f"stratified subset: asked for {per_class} images of class {label}, only "
                f"{members.numel()} exist"
            )
        order = torch.randperm(members.numel(), generator=generator)
        chosen.append(members[order[:per_class]])
    return torch.sort(torch.cat(chosen)).values


def load_fashion_mnist(
    path: os.PathLike | None = None,
    *,
    validation_per_class: int = 500,
    split_seed: int = 0,
) -> FashionMNIST:
    """Load Fashion-MNIST from ``path`` (or ``$EXCITE_FASHION_MNIST``, or the Debian location).

    Args:
        path: a folder with the four IDX files (``train-images-idx3-ubyte.gz`` ...).
        validation_per_class: images per class moved from train to the validation split (default 500).
        split_seed: seed of the validation split (fixed at 0 by default, independent of run seeds).

    Raises:
        FileNotFoundError: the data is missing; the message says how to install it.
        ValueError: files that disagree with each other (counts, image shape).
    """
    from . import FASHION_MNIST

    folder = FASHION_MNIST.locate(path)
    train_images = torch.from_numpy(read_idx(_idx_file(folder, "train-images-idx3-ubyte")).copy())
    train_labels = torch.from_numpy(read_idx(_idx_file(folder, "train-labels-idx1-ubyte")).astype(np.int64))
    test_images = torch.from_numpy(read_idx(_idx_file(folder, "t10k-images-idx3-ubyte")).copy())
    test_labels = torch.from_numpy(read_idx(_idx_file(folder, "t10k-labels-idx1-ubyte")).astype(np.int64))
    for name, images, labels in (("train", train_images, train_labels), ("test", test_images, test_labels)):
        if images.shape[0] != labels.shape[0] or tuple(images.shape[1:]) != (28, 28):
            raise ValueError(
                f"Fashion-MNIST {name}: expected (N, 28, 28) images and N labels, "
                f"got images {list(images.shape)} and labels {list(labels.shape)}"
            )
    validation = torch.zeros(train_labels.shape[0], dtype=torch.bool)
    if validation_per_class > 0:
        validation[_stratified_indices(train_labels, validation_per_class, split_seed)] = True
    train = Split(train_images[~validation], train_labels[~validation])
    val = Split(train_images[validation], train_labels[validation])
    pixels = train.images.to(torch.float64) / 255.0
    return FashionMNIST(
        train=train,
        val=val,
        test=Split(test_images, test_labels),
        mean=float(pixels.mean()),
        std=float(pixels.std()),
        source=folder,
    )

"""Fashion-MNIST IDX loading against the data set's published facts (Xiao et al. 2017)."""

from __future__ import annotations

import gzip
import struct

import numpy as np
import pytest
import torch

from excite.datasets import FASHION_MNIST, load_fashion_mnist, read_idx
from excite.datasets.fashion_mnist import CLASSES

needs_data = pytest.mark.skipif(
    FASHION_MNIST.find() is None, reason="Fashion-MNIST not installed (dataset-fashion-mnist)"
)


@pytest.fixture(scope="module")
def data():
    return load_fashion_mnist()


def _write_idx(path, array: np.ndarray, type_code: int) -> None:
    header = bytes([0, 0, type_code, array.ndim]) + b"".join(struct.pack(">I", s) for s in array.shape)
    with gzip.open(path, "wb") as handle:
        handle.write(header + array.astype(array.dtype.newbyteorder(">")).tobytes())


def test_read_idx_roundtrip_and_big_endian(tmp_path):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    _write_idx(tmp_path / "images.gz", images, 0x08)
    np.testing.assert_array_equal(read_idx(tmp_path / "images.gz"), images)
    ints = np.array([1, 256, 65536, -5], dtype=np.int32)
    _write_idx(tmp_path / "ints.gz", ints, 0x0C)
    np.testing.assert_array_equal(read_idx(tmp_path / "ints.gz"), ints)


def test_read_idx_rejects_bad_files(tmp_path):
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04\x05")
    with pytest.raises(ValueError, match="not an IDX file"):
        read_idx(tmp_path / "junk")
    short = bytes([0, 0, 8, 1]) + struct.pack(">I", 10) + bytes(3)
    (tmp_path / "short").write_bytes(short)
    with pytest.raises(ValueError, match="declares shape"):
        read_idx(tmp_path / "short")


@needs_data
def test_raw_files_match_published_counts_and_magic():
    folder = FASHION_MNIST.locate()
    with gzip.open(folder / "train-images-idx3-ubyte.gz", "rb") as handle:
        magic, count, rows, cols = struct.unpack(">IIII", handle.read(16))
    assert (magic, count, rows, cols) == (2051, 60000, 28, 28)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "rb") as handle:
        assert struct.unpack(">II", handle.read(8)) == (2049, 10000)
    train_labels = read_idx(folder / "train-labels-idx1-ubyte.gz")
    test_labels = read_idx(folder / "t10k-labels-idx1-ubyte.gz")
    assert train_labels.shape == (60000,) and test_labels.shape == (10000,)
    assert np.bincount(train_labels).tolist() == [6000] * 10
    assert np.bincount(test_labels).tolist() == [1000] * 10


@needs_data
def test_splits_are_stratified_disjoint_and_fixed(data):
    assert len(data.train) + len(data.val) == 60000 and len(data.test) == 10000
    assert data.val.class_counts().tolist() == [500] * 10
    assert data.train.class_counts().tolist() == [5500] * 10
    assert tuple(data.train.images.shape[1:]) == (28, 28) and data.train.images.dtype == torch.uint8
    assert len(CLASSES) == 10
    # Known pixel statistics of the Fashion-MNIST training images (0.2860, 0.3530 over all 60k).
    assert data.mean == pytest.approx(0.2860, abs=2e-3)
    assert data.std == pytest.approx(0.3530, abs=2e-3)
    # The validation split is a fixed function of split_seed, and disjoint from training.
    again = load_fashion_mnist()
    assert torch.equal(again.val.images, data.val.images)
    # Train and validation together are exactly the official training images (a partition).
    raw = read_idx(FASHION_MNIST.locate() / "train-images-idx3-ubyte.gz").reshape(60000, -1)
    ours = torch.cat([data.train.images, data.val.images]).reshape(60000, -1).numpy()
    assert sorted(map(bytes, raw)) == sorted(map(bytes, ours))
    other = load_fashion_mnist(split_seed=1)
    assert not torch.equal(other.val.images, data.val.images)


@needs_data
def test_stratified_subset(data):
    subset = data.train.stratified_subset(7, seed=3)
    assert subset.class_counts().tolist() == [7] * 10
    with pytest.raises(ValueError, match="only 5500 exist"):
        data.train.stratified_subset(6000)


def test_missing_data_message(tmp_path, monkeypatch):
    monkeypatch.delenv("EXCITE_FASHION_MNIST", raising=False)
    monkeypatch.setattr(type(FASHION_MNIST), "find", lambda self, path=None: None)
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path)

"""Tiny tasks on real data for the study tests (a few dozen images, a 4-wide ResNet, a 2-level U-Net)."""

from __future__ import annotations

import pytest
import torch

from excite.datasets import BRAIN_MRI, FASHION_MNIST


@pytest.fixture(autouse=True)
def _few_threads():
    # The machine running the suite is shared; more threads than cores only adds contention.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="session")
def fashion():
    if FASHION_MNIST.find() is None:
        pytest.skip("Fashion-MNIST not installed (dataset-fashion-mnist)")
    from excite.datasets import load_fashion_mnist

    return load_fashion_mnist()


@pytest.fixture(scope="session")
def brain():
    pytest.importorskip("nibabel")
    if BRAIN_MRI.find() is None:
        pytest.skip("mricron-data not installed")
    from excite.datasets import load_brain_mri

    return load_brain_mri(labels="lobes", downsample=2, pad_multiple=4)


@pytest.fixture(scope="session")
def tiny_classification(fashion):
    from excite.study.tasks import ClassificationSetup, ClassificationTask

    return ClassificationTask(
        fashion, ClassificationSetup(width=4, train_per_class=4, val_per_class=2, test_limit=40)
    )

"""Presets, arm overrides, the reduction sweep's arms and the 3-D segmentation option."""

from __future__ import annotations

import pytest
import torch

from excite.layers import SE
from excite.study import Arm, TrainSettings, customise, preset, train_run
from excite.study.config import SWEEP_RATIOS, sweep_arm
from excite.study.tasks import SegmentationSetup, SegmentationTask


def test_presets_and_overrides():
    quick, full = preset("quick"), preset("full")
    assert len(quick.seeds) >= 3 and len(full.seeds) > len(quick.seeds)
    resnet = {"none", "se", "eca", "fca", "coord", "simam", "spse", "cbam", "eca_coord"}
    vit = {"vit", "vit_se", "vit_se_mlp", "vit_se_both"}
    assert set(full.arms["classification"]) == resnet | vit
    assert {"scse", "scse-add", "scse-mul", "scse-concat", "eca", "coord", "simam", "eca_coord"} <= set(
        full.arms["segmentation"]
    )
    # The hybrid with both parents, and the ViT with and without SE, are in quick too.
    assert {"eca", "coord", "eca_coord", "vit", "vit_se"} <= set(quick.arms["classification"])
    assert {"none", "cse", "sse", "scse"} <= set(quick.arms["segmentation"])
    # full runs every part; quick leaves out the 3-D task and the search, and names the flags.
    assert set(full.tasks) == {"classification", "segmentation", "segmentation3d", "graphs", "search"}
    assert full.not_run() == []
    assert dict(quick.not_run()) == {"segmentation3d": "--with-3d", "search": "--search quick"}
    assert "scse" in full.arms["segmentation3d"] and "none" in full.arms["segmentation3d"]
    # Same budget for every arm of a task: one TrainSettings per task.
    assert set(quick.training) >= {"classification", "segmentation", "segmentation3d"}
    toggled = customise(quick, with_3d=True, search="standard", graphs=False)
    assert toggled.tasks == ("classification", "segmentation", "segmentation3d", "search")
    assert toggled.search == "standard" and toggled.engine_tasks()[-1] == "segmentation3d"
    assert "search" not in customise(full, search="none").tasks
    with pytest.raises(ValueError, match="--search must be"):
        customise(quick, search="huge")
    custom = customise(
        quick, seeds=[4, 5], tasks=["segmentation"], arms=["none", "sse"], sweep_reduction=True
    )
    assert custom.seeds == (4, 5) and custom.tasks == ("segmentation",)
    assert custom.arms["segmentation"] == ("none", "sse")
    assert [a.name for a in custom.arm_list("classification")][-5:] == [f"se-r{r}" for r in SWEEP_RATIOS]
    with pytest.raises(ValueError, match="unknown arm"):
        customise(quick, arms=["nope"])
    with pytest.raises(ValueError, match="no arm of --arms"):
        customise(quick, arms=["sse"])
    with pytest.raises(ValueError, match="preset must be"):
        preset("medium")
    # The brain-MRI search part is in the full preset and added to quick by name, in the search's order.
    assert full.search_parts == ("attention", "frequency", "segmentation")
    assert quick.search_parts == ("attention", "frequency")
    parts = customise(quick, search="quick", search_parts=["segmentation", "attention"]).search_parts
    assert parts == ("attention", "segmentation")
    with pytest.raises(ValueError, match="--search-parts must be"):
        customise(quick, search_parts=["ranking"])
    with pytest.raises(ValueError, match="--search-parts must be"):
        customise(quick, search_parts=[])


def test_sweep_arms_build_se_with_a_floored_bottleneck(tiny_classification):
    widths = {}
    for ratio in SWEEP_RATIOS:
        model = tiny_classification.build_model(sweep_arm(ratio))
        modules = [m for m in model.modules() if isinstance(m, SE)]
        assert len(modules) == 8
        widths[ratio] = sorted({(m.channels, m.hidden_channels) for m in modules})
    # The tiny task's ResNet has stage widths 4, 8, 16, 32.
    assert widths[2] == [(4, 2), (8, 4), (16, 8), (32, 16)]
    assert widths[32] == [(4, 1), (8, 1), (16, 1), (32, 1)]


def test_segmentation_in_3d_on_patches(brain, tmp_path):
    setup = SegmentationSetup(
        dim=3, features=(4, 8), slab_train=8, slab_val=4, slab_test=4, patch=(16, 16, 8)
    )
    task = SegmentationTask(brain, setup)
    x, y = task.train_batch(torch.arange(3), torch.Generator().manual_seed(0))
    assert x.shape == (3, 1, 16, 16, 8) and y.shape == (3, 16, 16, 8)
    # Patches come from training slabs only: each label patch is a sub-block of some training slab.
    train_slabs = [labels for _, labels in task.slabs["train"]]
    windows = [slab.unfold(0, 16, 1).unfold(1, 16, 1).unfold(2, 8, 1) for slab in train_slabs]
    assert any((w == y[0]).flatten(3).all(-1).any() for w in windows)
    result = train_run(
        task,
        Arm("scse", "scse"),
        0,
        TrainSettings(epochs=1, batch_size=2),
        tmp_path,
        progress=False,
        log=lambda m: None,
    )
    assert 0.0 <= result.test["mean_dice"] <= 1.0 and "hd95_mm" in result.test
    with pytest.raises(ValueError, match="patch depth"):
        SegmentationTask(brain, SegmentationSetup(dim=3, features=(4, 8), slab_train=6, patch=(16, 16, 8)))


def test_loss_curve_bins_the_step_losses():
    from excite.study import loss_curve

    curve = loss_curve([float(i) for i in range(10)], points=4)
    # Bins of ceil(10 / 4) = 3 steps: [0, 1, 2], [3, 4, 5], [6, 7, 8], [9].
    assert curve == [[2.0, 1.0], [5.0, 4.0], [8.0, 7.0], [10.0, 9.0]]
    assert loss_curve([]) == []

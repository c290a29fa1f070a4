"""The training engine: determinism, checkpoint/resume after an interruption, and DDP = one process."""

from __future__ import annotations

import json
import math
import os
import socket
from pathlib import Path

import pytest
import torch

from excite.study.engine import (
    Arm,
    Interrupted,
    TrainSettings,
    epoch_order,
    learning_rate_factor,
    load_model,
    train_run,
)

SE_ARM = Arm("se", "se", (("reduction", 4),))
SETTINGS = TrainSettings(epochs=2, batch_size=8, lr=3e-3, checkpoint_every=2)


def _params(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.named_parameters()}


def test_learning_rate_schedule_formula():
    total, warmup = 100, 0.1
    assert learning_rate_factor(0, total, warmup) == pytest.approx(1 / 10)
    assert learning_rate_factor(9, total, warmup) == pytest.approx(1.0)
    # Cosine from step 10 (factor 1) to step 100 (factor 0): halfway at step 55.
    assert learning_rate_factor(55, total, warmup) == pytest.approx(0.5)
    assert learning_rate_factor(100, total, warmup) == pytest.approx(0.0, abs=1e-12)
    assert learning_rate_factor(37, total, warmup) == pytest.approx(0.5 * (1 + math.cos(math.pi * 27 / 90)))


def test_epoch_order_depends_on_seed_and_epoch_only():
    a = epoch_order(50, seed=3, epoch=1)
    assert torch.equal(a, epoch_order(50, seed=3, epoch=1))
    assert sorted(a.tolist()) == list(range(50))
    assert not torch.equal(a, epoch_order(50, seed=3, epoch=2))
    assert not torch.equal(a, epoch_order(50, seed=4, epoch=1))


def test_interrupted_run_resumes_to_the_same_result(tiny_classification, tmp_path):
    task = tiny_classification
    reference = train_run(
        task, SE_ARM, 0, SETTINGS, tmp_path / "straight", progress=False, log=lambda m: None
    )
    assert reference.steps == 2 * (40 // 8)
    # Interrupt mid-epoch (step 3 of 5), after a checkpoint at step 2, then again in epoch 2.
    run_dir = tmp_path / "interrupted"
    with pytest.raises(Interrupted):
        train_run(task, SE_ARM, 0, SETTINGS, run_dir, progress=False, stop_after=3, log=lambda m: None)
    assert (run_dir / "checkpoint.pt").exists() and not (run_dir / "result.json").exists()
    messages = []
    with pytest.raises(Interrupted):
        train_run(task, SE_ARM, 0, SETTINGS, run_dir, progress=False, stop_after=4, log=messages.append)
    assert any("resuming" in m and "step 3/10" in m for m in messages)
    resumed = train_run(task, SE_ARM, 0, SETTINGS, run_dir, progress=False, log=lambda m: None)
    assert not (run_dir / "checkpoint.pt").exists()
    assert resumed.step_losses == reference.step_losses
    assert resumed.test == reference.test
    assert len(resumed.history) == 2
    straight = _params(load_model(task, SE_ARM, tmp_path / "straight"))
    again = _params(load_model(task, SE_ARM, run_dir))
    for name in straight:
        assert torch.equal(straight[name], again[name]), name

    # A finished run is reused, not retrained.
    stamp = (run_dir / "result.json").stat().st_mtime_ns
    reused = train_run(task, SE_ARM, 0, SETTINGS, run_dir, progress=False, log=lambda m: None)
    assert reused.step_losses == reference.step_losses
    assert (run_dir / "result.json").stat().st_mtime_ns == stamp
    # ... unless it belongs to another configuration.
    with pytest.raises(ValueError, match="another configuration"):
        train_run(task, SE_ARM, 1, SETTINGS, run_dir, progress=False, log=lambda m: None)


def test_seed_changes_the_run_and_the_arm_does_not_change_the_order(tiny_classification, tmp_path):
    settings = TrainSettings(epochs=1, batch_size=8, lr=3e-3)
    task = tiny_classification
    seen = []
    original = task.train_batch

    def spy(indices, generator):
        seen.append(indices.tolist())
        return original(indices, generator)

    task.train_batch = spy
    try:
        train_run(task, Arm("none", None), 5, settings, tmp_path / "a", progress=False, log=lambda m: None)
        first = list(seen)
        seen.clear()
        train_run(task, Arm("eca", "eca"), 5, settings, tmp_path / "b", progress=False, log=lambda m: None)
        assert seen == first
    finally:
        del task.train_batch


def test_batch_must_split_into_equal_chunks(tiny_classification, tmp_path):
    with pytest.raises(ValueError, match="equal chunks"):
        train_run(
            tiny_classification,
            Arm("none", None),
            0,
            TrainSettings(epochs=1, batch_size=7, accumulate=2),
            tmp_path,
            progress=False,
        )


def _free_port() -> int:
    with socket.socket() as handle:
        handle.bind(("127.0.0.1", 0))
        return handle.getsockname()[1]


def _ddp_worker(rank: int, world_size: int, port: int, task, run_dir: str) -> None:
    os.environ.update(
        {
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            "RANK": str(rank),
            "WORLD_SIZE": str(world_size),
        }
    )
    torch.set_num_threads(1)
    from excite.study.engine import init_distributed

    assert init_distributed(torch.device("cpu"))
    try:
        train_run(task, SE_ARM, 0, SETTINGS, run_dir, progress=False, log=lambda m: None)
    finally:
        torch.distributed.destroy_process_group()


def test_two_process_ddp_matches_one_process(tiny_classification, tmp_path):
    """Two gloo processes (one chunk each) equal one process accumulating the same two chunks."""
    import dataclasses

    single = train_run(
        tiny_classification,
        SE_ARM,
        0,
        dataclasses.replace(SETTINGS, accumulate=2),
        tmp_path / "single",
        progress=False,
        log=lambda m: None,
    )
    torch.multiprocessing.spawn(
        _ddp_worker, args=(2, _free_port(), tiny_classification, str(tmp_path / "ddp")), nprocs=2, join=True
    )
    ddp = json.loads((tmp_path / "ddp" / "result.json").read_text())
    assert ddp["world_size"] == 2 and single.world_size == 1
    assert ddp["config_key"] == single.config_key
    assert len(ddp["step_losses"]) == len(single.step_losses) == 10
    for a, b in zip(ddp["step_losses"], single.step_losses):
        assert a == pytest.approx(b, rel=1e-4, abs=1e-5)
    one = _params(load_model(tiny_classification, SE_ARM, tmp_path / "single"))
    two = _params(load_model(tiny_classification, SE_ARM, Path(tmp_path / "ddp")))
    for name in one:
        torch.testing.assert_close(two[name], one[name], rtol=1e-4, atol=1e-5, msg=name)

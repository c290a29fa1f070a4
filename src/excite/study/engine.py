"""The training engine of the study: one (task, arm, seed) run, deterministic, resumable, DDP-ready.

Determinism. The seed fixes everything: the model's initialisation (``torch.manual_seed(seed)`` right
before the model is built), the order of the training examples (epoch ``e`` uses a permutation drawn from a
generator seeded by ``(seed, e)``) and any augmentation (each chunk of a batch draws from a generator
seeded by ``(seed, epoch, step, chunk)``). The order does not depend on the arm, so all arms of one seed see
the same batches, which is what makes the paired comparisons of :mod:`excite.study.stats` meaningful.

Batches and processes. A step takes ``batch_size`` examples (the last incomplete batch of an epoch is
dropped), split into ``world_size × accumulate`` equal chunks: rank ``r`` processes chunks
``r·accumulate ... r·accumulate + accumulate - 1`` one after another, accumulating gradients, and
DistributedDataParallel averages over ranks. The update is therefore the mean of the chunk gradients, and
a run on ``W`` processes equals a run on one process with ``accumulate=W`` (BatchNorm statistics are per
chunk in both, as with per-GPU BatchNorm). CPU runs use the gloo backend, CUDA runs NCCL; start them
with ``torchrun --nproc_per_node=W -m excite study ...``.

Checkpoints and resume. Every ``checkpoint_every`` steps and at the end of every epoch, rank 0 writes
``checkpoint.pt`` in the run folder (model, optimizer, LR schedule, AMP scaler, position, history and the
time spent), atomically. A finished run writes ``result.json`` and ``model.pt`` and removes the checkpoint.
Calling :func:`train_run` again skips a finished run and continues an interrupted one from its checkpoint
(mid-epoch included); the result is the same as an uninterrupted run. A run folder belongs to one
configuration: its key is stored and compared, so changing the preset cannot silently mix runs.

Mixed precision: on CUDA, autocast to bfloat16 where supported (else float16 with a gradient scaler);
on CPU, full float32 (CPU autocast is slower than float32 on most machines).

Optimisation: AdamW with a linear warm-up over the first ``warmup`` fraction of the steps, then cosine
decay to zero, stepped per optimizer step. The schedule is a pure function of the step, so resuming is exact.
The final model (not the best validation epoch) is tested: every arm gets the same budget and no selection.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import Tensor, nn


@dataclass(frozen=True)
class Arm:
    """One compared configuration: an attention name (None for the baseline) and its options.

    ``network`` names the network family when it is not the task's default (``"vit"``: the small vision
    transformer of :func:`excite.tokens.vit_tiny` in the classification task); ``baseline`` is the arm
    it is compared against (the same network without attention). Neither is part of the run's key
    unless set, so runs of the default network keep their keys.
    """

    name: str
    attention: str | None
    options: tuple[tuple[str, Any], ...] = ()
    network: str | None = None
    baseline: str = "none"

    @property
    def attention_options(self) -> dict[str, Any]:
        return dict(self.options)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "attention": self.attention,
            "options": self.attention_options,
        }
        if self.network is not None:
            out["network"] = self.network
        return out


@dataclass(frozen=True)
class TrainSettings:
    """The budget of a run. Every arm of a task gets the same settings."""

    epochs: int = 2
    batch_size: int = 64
    lr: float = 2e-3
    weight_decay: float = 5e-4
    warmup: float = 0.05
    accumulate: int = 1
    checkpoint_every: int = 50
    grad_clip: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Task(Protocol):
    """What the engine needs from a task (see :mod:`excite.study.tasks`)."""

    name: str

    def config(self) -> dict[str, Any]: ...

    def build_model(self, arm: Arm) -> nn.Module: ...

    def num_train(self) -> int: ...

    def train_batch(self, indices: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]: ...

    def loss(self, output: Tensor, target: Tensor) -> Tensor: ...

    def evaluate(
        self, model: nn.Module, split: str, device: torch.device, final: bool = False
    ) -> dict[str, Any]: ...


@dataclass
class RunResult:
    task: str
    arm: str
    seed: int
    test: dict[str, Any]
    history: list[dict[str, Any]]
    step_losses: list[float]
    train_seconds: float
    steps: int
    world_size: int
    config_key: str
    extra: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Interrupted(RuntimeError):
    """Raised by :func:`train_run` when ``stop_after`` steps were taken; the checkpoint is on disk."""


# ---------------------------------------------------------------------------------------------- distributed


def distributed() -> tuple[int, int]:
    """``(rank, world_size)``: ``(0, 1)`` unless a process group is initialised."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed(device: torch.device) -> bool:
    """Initialise the process group when started by torchrun (``WORLD_SIZE`` > 1); gloo on CPU, NCCL on CUDA.

    Returns True when running distributed. On CUDA each process takes the GPU ``LOCAL_RANK``.
    """
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return False
    if torch.distributed.is_initialized():
        return True
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    torch.distributed.init_process_group(backend=backend)
    return True


def barrier() -> None:
    if distributed()[1] > 1:
        torch.distributed.barrier()


def resolve_device(device: str | None) -> torch.device:
    """``"auto"``/None → CUDA when available, else CPU. Under torchrun on CUDA, the local rank's GPU."""
    if device in (None, "auto"):
        device = "cuda" if torch.cuda.is_available() else "cpu"
    resolved = torch.device(device)
    if resolved.type == "cuda" and resolved.index is None and "LOCAL_RANK" in os.environ:
        resolved = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
    return resolved


# ---------------------------------------------------------------------------------------------- helpers


def mixed_seed(*parts: int) -> int:
    """A 63-bit seed from integers, stable across runs and platforms (SHA-256 of their decimal form)."""
    digest = hashlib.sha256(":".join(str(int(p)) for p in parts).encode()).digest()
    return int.from_bytes(digest[:8], "little") & ((1 << 63) - 1)


def epoch_order(num_examples: int, seed: int, epoch: int) -> Tensor:
    """The permutation of the training examples for ``epoch`` of ``seed`` (the same for every arm)."""
    generator = torch.Generator().manual_seed(mixed_seed(seed, epoch, 0x0DE7))
    return torch.randperm(num_examples, generator=generator)


def config_key(config: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:16]


def learning_rate_factor(step: int, total_steps: int, warmup: float) -> float:
    """Linear warm-up over ``warmup·total`` steps, then cosine decay to 0 at ``total_steps``."""
    warmup_steps = max(1, int(round(warmup * total_steps))) if warmup > 0 else 0
    if step < warmup_steps:
        return (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def autocast_for(device: torch.device, enabled: bool) -> tuple[Callable[[], Any], torch.dtype | None]:
    """The autocast context factory and dtype for ``device`` (no autocast on CPU)."""
    if not enabled or device.type != "cuda":
        return nullcontext, None
    dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return (lambda: torch.autocast("cuda", dtype=dtype)), dtype


def _atomic_save(obj: Any, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    torch.save(obj, temporary)
    os.replace(temporary, path)


def _write_json(obj: Any, path: Path) -> None:
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(json.dumps(obj, indent=1, default=_json_default))
    os.replace(temporary, path)


def _json_default(value: Any) -> Any:
    if isinstance(value, Tensor):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def load_result(run_dir: Path) -> RunResult | None:
    path = Path(run_dir) / "result.json"
    if not path.exists():
        return None
    return RunResult(**json.loads(path.read_text()))


# ---------------------------------------------------------------------------------------------- the run


def run_config(task: Task, arm: Arm, seed: int, settings: TrainSettings) -> dict[str, Any]:
    """What determines a run's outcome (its key): the task's setup, the arm, the seed and the budget.

    ``accumulate`` and the world size are left out: they change how a step is computed, not what it is.
    """
    budget = settings.to_dict()
    budget.pop("accumulate")
    budget.pop("checkpoint_every")
    return {"task": task.config(), "arm": arm.to_dict(), "seed": seed, "budget": budget}


def train_run(
    task: Task,
    arm: Arm,
    seed: int,
    settings: TrainSettings,
    run_dir: os.PathLike,
    *,
    device: torch.device | str = "cpu",
    amp: bool = True,
    resume: bool = True,
    progress: bool = True,
    stop_after: int | None = None,
    log: Callable[[str], None] = print,
) -> RunResult:
    """Train ``arm`` on ``task`` with ``seed`` under ``settings``, test it, and return the result.

    Args:
        run_dir: the run's folder (checkpoint, result.json, model.pt).
        resume: skip a finished run and continue an interrupted one; False starts over.
        stop_after: simulate an interruption: raise :class:`Interrupted` once this many optimizer steps
            have been taken in this call (a checkpoint is written first).

    Raises:
        ValueError: a run folder holding another configuration while ``resume`` is on, or a batch size
            that does not split into ``world_size × accumulate`` equal chunks.
        Interrupted: see ``stop_after``.
    """
    run_dir = Path(run_dir)
    device = torch.device(device)
    rank, world_size = distributed()
    key = config_key(run_config(task, arm, seed, settings))
    checkpoint_path = run_dir / "checkpoint.pt"
    chunks = world_size * settings.accumulate
    if settings.batch_size % chunks:
        raise ValueError(
            f"train_run: batch_size {settings.batch_size} must split into world_size × accumulate = "
            f"{world_size} × {settings.accumulate} equal chunks"
        )
    finished = load_result(run_dir)
    if finished is not None and resume:
        if finished.config_key != key:
            raise ValueError(
                f"train_run: {run_dir} holds a finished run of another configuration (key "
                f"{finished.config_key}, expected {key}); use another output folder or resume=False "
                "(--no-resume)"
            )
        return finished

    torch.manual_seed(seed)
    model = task.build_model(arm).to(device)
    steps_per_epoch = task.num_train() // settings.batch_size
    if steps_per_epoch < 1:
        raise ValueError(
            f"train_run: {task.num_train()} training examples are fewer than one batch of "
            f"{settings.batch_size}"
        )
    total_steps = steps_per_epoch * settings.epochs
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: learning_rate_factor(step, total_steps, settings.warmup)
    )
    autocast, amp_dtype = autocast_for(device, amp)
    scaler = torch.amp.GradScaler("cuda", enabled=amp_dtype == torch.float16)

    state = {"epoch": 0, "step_in_epoch": 0, "global_step": 0, "train_seconds": 0.0}
    history: list[dict[str, Any]] = []
    step_losses: list[float] = []
    if checkpoint_path.exists() and resume:
        checkpoint = torch.load(checkpoint_path, map_location=device, weights_only=True)
        if checkpoint["config_key"] != key:
            raise ValueError(
                f"train_run: {checkpoint_path} belongs to another configuration (key "
                f"{checkpoint['config_key']}, "
                f"expected {key}); use another output folder or resume=False (--no-resume)"
            )
        model.load_state_dict(checkpoint["model"])
        optimizer.load_state_dict(checkpoint["optimizer"])
        schedule.load_state_dict(checkpoint["schedule"])
        scaler.load_state_dict(checkpoint["scaler"])
        state = checkpoint["state"]
        history = checkpoint["history"]
        step_losses = checkpoint["step_losses"]
        if rank == 0:
            log(f"  resuming {task.name}/{arm.name}/seed {seed} at step {state['global_step']}/{total_steps}")

    network: nn.Module = model
    if world_size > 1:
        network = nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )

    def save_checkpoint() -> None:
        if rank == 0:
            run_dir.mkdir(parents=True, exist_ok=True)
            _atomic_save(
                {
                    "config_key": key,
                    "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "schedule": schedule.state_dict(),
                    "scaler": scaler.state_dict(),
                    "state": dict(state),
                    "history": history,
                    "step_losses": step_losses,
                },
                checkpoint_path,
            )
        barrier()

    bar = None
    if progress and rank == 0:
        bar = _progress_bar(total_steps, f"{task.name}/{arm.name}/s{seed}", initial=state["global_step"])
    chunk_size = settings.batch_size // chunks
    steps_this_call = 0
    try:
        while state["epoch"] < settings.epochs:
            epoch = state["epoch"]
            order = epoch_order(task.num_train(), seed, epoch)
            model.train()
            started = time.perf_counter()
            while state["step_in_epoch"] < steps_per_epoch:
                step = state["step_in_epoch"]
                batch = order[step * settings.batch_size : (step + 1) * settings.batch_size]
                optimizer.zero_grad(set_to_none=True)
                loss_sum = torch.zeros((), device=device)
                for local in range(settings.accumulate):
                    chunk = rank * settings.accumulate + local
                    generator = torch.Generator().manual_seed(mixed_seed(seed, epoch, step, chunk))
                    inputs, targets = task.train_batch(
                        batch[chunk * chunk_size : (chunk + 1) * chunk_size], generator
                    )
                    inputs, targets = (
                        inputs.to(device, non_blocking=True),
                        targets.to(device, non_blocking=True),
                    )
                    sync = local == settings.accumulate - 1 or world_size == 1
                    context = nullcontext() if sync else network.no_sync()
                    with context:
                        with autocast():
                            loss = task.loss(network(inputs), targets)
                        scaler.scale(loss / settings.accumulate).backward()
                    loss_sum += loss.detach().float()
                if settings.grad_clip is not None:
                    scaler.unscale_(optimizer)
                    nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
                scaler.step(optimizer)
                scaler.update()
                schedule.step()
                if world_size > 1:
                    torch.distributed.all_reduce(loss_sum)
                step_loss = float(loss_sum) / chunks
                step_losses.append(step_loss)
                state["step_in_epoch"] += 1
                state["global_step"] += 1
                steps_this_call += 1
                if bar is not None:
                    bar.update(1)
                    bar.set_postfix(loss=f"{step_loss:.4f}")
                now = time.perf_counter()
                state["train_seconds"] += now - started
                started = now
                if stop_after is not None and steps_this_call >= stop_after:
                    save_checkpoint()
                    raise Interrupted(f"stopped after {steps_this_call} steps (simulated interruption)")
                if (
                    state["global_step"] % settings.checkpoint_every == 0
                    and state["step_in_epoch"] < steps_per_epoch
                ):
                    save_checkpoint()
            val: dict[str, Any] = {}
            if rank == 0:
                val = task.evaluate(model, "val", device)
                model.train()
            epoch_steps = step_losses[epoch * steps_per_epoch : (epoch + 1) * steps_per_epoch]
            history.append(
                {
                    "epoch": epoch + 1,
                    "step": state["global_step"],
                    "train_loss": sum(epoch_steps) / len(epoch_steps),
                    "val": val,
                    "train_seconds": state["train_seconds"],
                }
            )
            state["epoch"] += 1
            state["step_in_epoch"] = 0
            save_checkpoint()
    finally:
        if bar is not None:
            bar.close()

    result = RunResult(
        task=task.name,
        arm=arm.name,
        seed=seed,
        test={},
        history=history,
        step_losses=step_losses,
        train_seconds=state["train_seconds"],
        steps=state["global_step"],
        world_size=world_size,
        config_key=key,
    )
    if rank == 0:
        result.test = task.evaluate(model, "test", device, final=True)
        # Keys starting with "_" carry tensors (example predictions): kept next to the result, not in JSON.
        artifacts = {k[1:]: result.test.pop(k) for k in list(result.test) if k.startswith("_")}
        run_dir.mkdir(parents=True, exist_ok=True)
        if artifacts:
            torch.save(artifacts, run_dir / "artifacts.pt")
        torch.save(model.state_dict(), run_dir / "model.pt")
        _write_json(result.to_dict(), run_dir / "result.json")
        checkpoint_path.unlink(missing_ok=True)
    barrier()
    if rank != 0:
        loaded = load_result(run_dir)
        if loaded is not None:
            result = loaded
    return result


def load_model(task: Task, arm: Arm, run_dir: os.PathLike, device: torch.device | str = "cpu") -> nn.Module:
    """The trained model of a finished run (``model.pt``), in eval mode."""
    model = task.build_model(arm)
    model.load_state_dict(torch.load(Path(run_dir) / "model.pt", map_location="cpu", weights_only=True))
    return model.to(device).eval()


def _progress_bar(total: int, description: str, initial: int = 0):
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm(total=total, initial=initial, desc=description, leave=False, dynamic_ncols=True)

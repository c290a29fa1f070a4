"""Presets, arms and the study configuration.

``quick`` (the default) is sized by measurement to finish in under 15 minutes on a 2-core CPU and still
produce a real report on the real data, 3 seeds throughout: seven ResNet arms (none, se, eca, fca, simam,
coord, eca_coord: the claims' arms and the hybrid with both parents) on 3,000 Fashion-MNIST images for 2
epochs, tested on 5,000; the ViT with and without SE (6 epochs, 7x7 patches); four 2-D U-Net arms (none,
cse, sse, scse) on 2 mm brain slices for 80 epochs; and the graph table (3 training seeds, 8
epochs). The U-Net budget is set by measurement: at 40 epochs (300 steps) the baseline had not converged
and its test mean Dice ranged 0.16-0.60 over three seeds, so no difference between arms could be resolved;
at 80 epochs and lr 1e-2 it was 0.66-0.73. The 3-D U-Net task (``--with-3d``, about 10 more minutes on
2 cores) and the search section (``--search quick``, about 9 more minutes) are options in quick. Measured
wall times are in the README and in every report's header.
``full`` is meant for a GPU: every arm, 5 seeds, wider networks, the whole data, longer schedules, the 3-D
U-Net task and the search section. Both train every arm of a task with the same budget (epochs, batch
size, learning rate schedule), so the comparison is fair at that budget; "at this budget" qualifies
every verdict. The one exception is by design: the ViT arms have their own budget (the same for each of
them), because they are compared with the ViT only (:meth:`StudyConfig.settings_for`).

Arms. Classification: ``none`` (baseline), ``se``, ``eca``, ``fca``, ``coord``, ``simam``, ``spse``,
``cbam``, ``eca_coord`` (our ECA + Coordinate Attention hybrid, :mod:`excite.layers.eca_coord`), each
with the module's official defaults, in the ResNet; and ``vit`` / ``vit_se`` (SE after the attention
branch, the SQET-style default placement) / ``vit_se_mlp`` / ``vit_se_both``: the small ViT of
:func:`excite.tokens.vit_tiny`, compared with ``vit``, not with the ResNet. Segmentation (2-D and the
3-D task ``segmentation3d``): ``none``, ``cse``, ``sse``, ``scse`` (official aggregation ``max``),
``scse-add``, ``scse-mul``, ``scse-concat`` (the TMI 2019 variants), ``eca``, ``coord``, ``simam`` and
``eca_coord`` (``eca`` and ``coord`` are the hybrid's parents). The reduction-ratio sweep adds ``se-r2``
... ``se-r32`` to classification, with the hidden width ``max(1, C // r)`` so that r = 32 stays defined
on 16-channel stages.

Sections that the engine does not train: ``graphs`` (LightGCN / SimGCL / WeightedGCL on real
interactions, :mod:`excite.graphs`, with the budget of :class:`GraphSetup`) and ``search`` (the per-layer
attention search and the FcaNet frequency search, :func:`excite.search.study_section` with one of its
presets). They are listed in ``StudyConfig.tasks`` like the engine's tasks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from .engine import Arm, TrainSettings
from .tasks import ClassificationSetup, SegmentationSetup

ENGINE_TASKS = ("classification", "segmentation", "segmentation3d")
SECTIONS = ("graphs", "search")
TASKS = ENGINE_TASKS + SECTIONS
SWEEP_RATIOS = (2, 4, 8, 16, 32)
SEARCH_PRESETS = ("quick", "standard", "full")
# What runs a part that a preset leaves out (the report names it).
ENABLE_FLAG = {
    "segmentation3d": "--with-3d",
    "graphs": "--graphs",
    "search": "--search quick",
}

CLASSIFICATION_ARMS = {
    "none": Arm("none", None),
    "se": Arm("se", "se"),
    "eca": Arm("eca", "eca"),
    "fca": Arm("fca", "fca"),
    "coord": Arm("coord", "coord"),
    "simam": Arm("simam", "simam"),
    "spse": Arm("spse", "spse"),
    "cbam": Arm("cbam", "cbam"),
    "eca_coord": Arm("eca_coord", "eca_coord"),
    "vit": Arm("vit", None, network="vit", baseline="vit"),
    "vit_se": Arm("vit_se", "se", (("se_position", "attn"),), network="vit", baseline="vit"),
    "vit_se_mlp": Arm("vit_se_mlp", "se", (("se_position", "mlp"),), network="vit", baseline="vit"),
    "vit_se_both": Arm("vit_se_both", "se", (("se_position", "both"),), network="vit", baseline="vit"),
}
SEGMENTATION_ARMS = {
    "none": Arm("none", None),
    "cse": Arm("cse", "cse"),
    "sse": Arm("sse", "sse"),
    "scse": Arm("scse", "scse", (("aggregation", "max"),)),
    "scse-add": Arm("scse-add", "scse", (("aggregation", "add"),)),
    "scse-mul": Arm("scse-mul", "scse", (("aggregation", "mul"),)),
    "scse-concat": Arm("scse-concat", "scse", (("aggregation", "concat"),)),
    "eca": Arm("eca", "eca"),
    "coord": Arm("coord", "coord"),
    "simam": Arm("simam", "simam"),
    "eca_coord": Arm("eca_coord", "eca_coord"),
}
ARMS = {
    "classification": CLASSIFICATION_ARMS,
    "segmentation": SEGMENTATION_ARMS,
    "segmentation3d": SEGMENTATION_ARMS,
}


def sweep_arm(ratio: int) -> Arm:
    """SE with reduction ``ratio`` and hidden width ``max(1, C // ratio)`` (the sweep's arms)."""
    return Arm(f"se-r{ratio}", "se", (("reduction", ratio), ("hidden_floor", 1)))


@dataclass(frozen=True)
class Margins:
    """The practical margins δ of the verdict rules (see :mod:`excite.study.stats`)."""

    accuracy: float = 0.005
    dice: float = 0.01
    specificity: float = 0.02
    latency: float = 0.05
    # Recall@20 / NDCG@20 are fractions too; 0.005 is ~2% of LightGCN's Recall@20 on MovieLens-100K,
    # below the relative gains the WeightedGCL paper reports over SimGCL.
    ranking: float = 0.005


@dataclass(frozen=True)
class GraphSetup:
    """The graph comparison's budget: :func:`excite.graphs.train_model` with ``preset`` and overrides.

    Every model trains on the same per-user 8/1/1 split (``split_seed``) once per training seed in
    ``seeds``; runs are paired by seed. ``None`` overrides keep the graph preset's value (quick: 30
    epochs, lr 1e-3, evaluation every 5 epochs, patience 10; official: 500 epochs, lr 1e-4).
    ``user_limit`` keeps only the first ``user_limit`` users of the file (and the items they touched)
    before the split: for tests; the report states it.
    """

    models: tuple[str, ...] = ("lightgcn", "simgcl", "weightedgcl")
    seeds: tuple[int, ...] = (2023,)
    preset: str = "quick"
    epochs: int | None = None
    lr: float | None = None
    eval_every: int | None = None
    patience: int | None = None
    split_seed: int = 2023
    ks: tuple[int, ...] = (10, 20)
    user_limit: int | None = None
    # Torch threads while the graph models train: the sparse propagation at MovieLens-100K's size does
    # not gain from a second thread, and loses a lot next to other work (measured: 3 epochs of LightGCN
    # 1.2 s with 1 thread, 13.8 s with 2, on the shared 2-core machine).
    threads: int | None = 1

    def overrides(self) -> dict[str, Any]:
        """The keyword overrides of the graph preset for :func:`excite.graphs.train_model`."""
        pairs = {
            "epochs": self.epochs,
            "lr": self.lr,
            "eval_every": self.eval_every,
            "patience": self.patience,
        }
        return {key: value for key, value in pairs.items() if value is not None}


# The 3-D task: a U-Net with two poolings on whole-plane 80x100x4 patches of the 2 mm volume, slabs of 8/4/4
# slices with gaps of 1 (thicknesses must be multiples of 4 for two poolings; every validation and test
# slab is segmented whole). Set by measurement (one seed, no attention): with slabs of 16/8/8 (2.5
# train/val/test cycles over the brain) and 48x48x16 patches, the network fitted its two training slabs
# (train loss 0.006) and reached a test mean Dice of 0.13-0.15, because held-out slabs lay at axial levels
# far from any training slab and small patches saw no global position; with thin interleaved slabs (4.6
# cycles) and whole-plane patches it reached 0.50 in 60 epochs (about 85 s per run on 2 cores).
SEGMENTATION_3D = SegmentationSetup(
    dim=3,
    downsample=2,
    features=(8, 16, 32),
    slab_train=8,
    slab_val=4,
    slab_test=4,
    slab_gap=1,
    patch=(80, 100, 4),
    patches_per_epoch=32,
)


@dataclass
class StudyConfig:
    preset: str
    seeds: tuple[int, ...]
    tasks: tuple[str, ...]
    arms: dict[str, tuple[str, ...]]
    classification: ClassificationSetup
    segmentation: SegmentationSetup
    training: dict[str, TrainSettings]
    segmentation3d: SegmentationSetup = SEGMENTATION_3D
    graphs: GraphSetup = field(default_factory=GraphSetup)
    search: str = "quick"
    search_parts: tuple[str, ...] = ("attention", "frequency")
    # Replacements of fields of the search preset's ``excite.search.study.Settings`` (tests shrink it).
    search_overrides: dict[str, Any] = field(default_factory=dict)
    sweep_reduction: bool = False
    sweep_seeds: tuple[int, ...] | None = None
    analysis_examples: int = 2000
    profile_batch: dict[str, int] = field(
        default_factory=lambda: {"classification": 32, "segmentation": 4, "segmentation3d": 2}
    )
    profile_repeats: int = 5
    profile_rounds: int = 5
    margins: Margins = field(default_factory=Margins)

    def arm_list(self, task: str) -> list[Arm]:
        arms = [ARMS[task][name] for name in self.arms.get(task, ())]
        if task == "classification" and self.sweep_reduction:
            arms += [sweep_arm(r) for r in SWEEP_RATIOS]
        return arms

    def settings_for(self, task: str, arm: Arm) -> TrainSettings:
        """The budget of ``arm``: ``training["<task>:<network>"]`` for arms of another network family
        (the ViT arms), else the task's ``training[task]``. Arms are only compared within one family, and
        every arm of a family gets the same budget."""
        if arm.network is not None and f"{task}:{arm.network}" in self.training:
            return self.training[f"{task}:{arm.network}"]
        return self.training[task]

    def seeds_for(self, task: str, arm: Arm) -> tuple[int, ...]:
        if arm.name.startswith("se-r") and self.sweep_seeds is not None:
            return self.sweep_seeds
        return self.seeds

    def engine_tasks(self) -> tuple[str, ...]:
        """The tasks the training engine runs, in order."""
        return tuple(t for t in self.tasks if t in ENGINE_TASKS)

    def not_run(self) -> list[tuple[str, str]]:
        """``(part, flag)`` for each optional part left out of this configuration."""
        return [(part, ENABLE_FLAG[part]) for part in ENABLE_FLAG if part not in self.tasks]

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["training"] = {k: v.to_dict() for k, v in self.training.items()}
        return out


def preset(name: str) -> StudyConfig:
    """The ``quick`` or ``full`` configuration.

    Raises:
        ValueError: an unknown preset name.
    """
    if name == "quick":
        return StudyConfig(
            preset="quick",
            seeds=(0, 1, 2),
            tasks=("classification", "segmentation", "graphs"),
            arms={
                "classification": (
                    "none",
                    "se",
                    "eca",
                    "fca",
                    "simam",
                    "coord",
                    "eca_coord",
                    "vit",
                    "vit_se",
                ),
                # The claims' arms only: coord and eca_coord are left out of the quick U-Net (both are in the
                # quick ResNet) so that 80 epochs per run fit in the budget (with coord: 15.2 min in all).
                "segmentation": ("none", "cse", "sse", "scse"),
                "segmentation3d": ("none", "scse"),
            },
            # 3,000 training images (2 epochs, 92 steps) keep seven ResNet arms x 3 seeds inside the budget;
            # testing on the first 5,000 test images halves the evaluation, which costs as much as the
            # training at this size. The ViT uses 7x7 patches (16 tokens): 3x cheaper per step than 4x4
            # and, at this budget, more accurate (measured, one seed: 0.59 vs 0.38 after 2 epochs, 0.75
            # after 6).
            classification=ClassificationSetup(
                width=16, train_per_class=300, val_per_class=50, test_limit=5000, vit_patch=7
            ),
            # At 2 mm the brain spans ~73 axial slices: thinner slabs (6/2/3, gap 1) give five cycles, so
            # every split samples the whole brain; a gap of one slice keeps held-out slices off the
            # training slices.
            segmentation=SegmentationSetup(
                dim=2,
                downsample=2,
                features=(8, 16, 32, 64),
                slab_train=6,
                slab_val=2,
                slab_test=3,
                slab_gap=1,
            ),
            training={
                "classification": TrainSettings(epochs=2, batch_size=64, lr=2e-3, weight_decay=5e-4),
                "classification:vit": TrainSettings(epochs=6, batch_size=64, lr=2e-3, weight_decay=5e-4),
                "segmentation": TrainSettings(epochs=80, batch_size=4, lr=1e-2, weight_decay=1e-4),
                "segmentation3d": TrainSettings(epochs=60, batch_size=2, lr=1e-2, weight_decay=1e-4),
            },
            # Three training seeds so that the graph verdicts have an interval; validation every epoch
            # because the contrastive models peak early on this data (docs/beyond-cnn.md).
            graphs=GraphSetup(seeds=(2023, 2024, 2025), epochs=8, eval_every=1),
            search="quick",
            search_parts=("attention", "frequency"),
            analysis_examples=2000,
            profile_repeats=3,
        )
    if name == "full":
        return StudyConfig(
            preset="full",
            seeds=(0, 1, 2, 3, 4),
            tasks=TASKS,
            arms={
                "classification": tuple(CLASSIFICATION_ARMS),
                "segmentation": tuple(SEGMENTATION_ARMS),
                "segmentation3d": ("none", "cse", "sse", "scse"),
            },
            classification=ClassificationSetup(width=32),
            segmentation=SegmentationSetup(dim=2, downsample=1, features=(16, 32, 64, 128, 256)),
            segmentation3d=replace(SEGMENTATION_3D, features=(16, 32, 64), patches_per_epoch=128),
            training={
                "classification": TrainSettings(epochs=15, batch_size=128, lr=2e-3, weight_decay=5e-4),
                "segmentation": TrainSettings(epochs=100, batch_size=8, lr=1e-2, weight_decay=1e-4),
                "segmentation3d": TrainSettings(epochs=100, batch_size=4, lr=1e-2, weight_decay=1e-4),
            },
            graphs=GraphSetup(seeds=(2023, 2024, 2025), preset="official"),
            search="standard",
            search_parts=("attention", "frequency", "segmentation"),
            analysis_examples=10000,
            profile_repeats=20,
            profile_rounds=7,
        )
    raise ValueError(f"study: preset must be 'quick' or 'full', got {name!r}")


def customise(
    config: StudyConfig,
    *,
    seeds: Sequence[int] | None = None,
    tasks: Sequence[str] | None = None,
    arms: Sequence[str] | None = None,
    sweep_reduction: bool | None = None,
    dim: int | None = None,
    with_3d: bool | None = None,
    search: str | None = None,
    graphs: bool | None = None,
    search_parts: Sequence[str] | None = None,
) -> StudyConfig:
    """Apply the command line's overrides. ``arms`` names arms of any task; each task keeps those it has.

    ``tasks`` selects among the engine's tasks and the sections (``graphs``, ``search``); then
    ``with_3d``, ``graphs`` and ``search`` add or remove their part (``search`` also picks the search
    preset, ``"none"`` removes it); ``search_parts`` picks the search's parts among ``attention``,
    ``frequency`` and ``segmentation`` (the brain-MRI search, about 19 minutes on 2 cores at the quick
    search preset, in the full preset by default). ``dim=3`` turns the 2-D segmentation task itself into
    the 3-D one (``--dim 3``); ``with_3d`` adds the separate 3-D task next to the 2-D one.

    Raises:
        ValueError: an unknown task, arm, search preset or search part, or a task left without arms.
    """
    config = replace(config)
    if seeds is not None:
        if not seeds:
            raise ValueError("study: --seeds needs at least one seed")
        config.seeds = tuple(int(s) for s in seeds)
    if tasks is not None:
        unknown = sorted(set(tasks) - set(TASKS))
        if unknown:
            raise ValueError(f"study: unknown task(s) {unknown}; choose from {list(TASKS)}")
        config.tasks = tuple(t for t in TASKS if t in tasks)
    toggles = {"segmentation3d": with_3d, "graphs": graphs}
    if search is not None:
        if search != "none" and search not in SEARCH_PRESETS:
            raise ValueError(
                f"study: --search must be 'none' or one of {list(SEARCH_PRESETS)}, got {search!r}"
            )
        toggles["search"] = search != "none"
        if search != "none":
            config.search = search
    for part, wanted in toggles.items():
        if wanted is True and part not in config.tasks:
            config.tasks = tuple(t for t in TASKS if t in config.tasks or t == part)
        elif wanted is False:
            config.tasks = tuple(t for t in config.tasks if t != part)
    if arms is not None:
        known = set().union(*(set(table) for table in ARMS.values()))
        unknown = sorted(set(arms) - known)
        if unknown:
            raise ValueError(
                f"study: unknown arm(s) {unknown}; classification arms are {list(CLASSIFICATION_ARMS)}, "
                f"segmentation arms {list(SEGMENTATION_ARMS)}"
            )
        config.arms = {task: tuple(a for a in ARMS[task] if a in arms) for task in ENGINE_TASKS}
        for task in config.engine_tasks():
            if not config.arms[task]:
                raise ValueError(f"study: no arm of --arms {list(arms)} belongs to the {task} task")
    if search_parts is not None:
        from ..search.study import PARTS as SEARCH_PARTS

        unknown = sorted(set(search_parts) - set(SEARCH_PARTS))
        if unknown or not search_parts:
            raise ValueError(
                f"study: --search-parts must be a comma list among {list(SEARCH_PARTS)}, "
                f"got {list(search_parts)}"
            )
        config.search_parts = tuple(p for p in SEARCH_PARTS if p in search_parts)
    if sweep_reduction is not None:
        config.sweep_reduction = sweep_reduction
    if dim is not None:
        if dim not in (2, 3):
            raise ValueError(f"study: --dim must be 2 or 3, got {dim}")
        if dim == 3:
            config.segmentation = replace(
                config.segmentation,
                dim=3,
                slab_train=16,
                slab_val=8,
                slab_test=8,
                slab_gap=2,
                patch=(48, 48, 16),
            )
            config.training = dict(config.training)
            config.training["segmentation"] = replace(config.training["segmentation"], batch_size=2)
    return config

"""The two tasks of the study: Fashion-MNIST classification and brain-MRI atlas segmentation.

Each task holds its data in memory (both fit easily), builds the network for an arm, hands the engine
batches by index, and evaluates a model on a split. Batches are gathered by index rather than through a
``DataLoader``: the data is a tensor already, and the engine's index order is what makes runs
deterministic and shardable across processes.

Classification: a ResNet-18 layout with the small stem (3x3 stride 1, no max-pool) for 28x28 images,
``width`` base channels, attention in every block at the paper's placement (``excite.models.resnet18``).
Arms with ``network="vit"`` get instead the small vision transformer of :func:`excite.tokens.vit_tiny`
(``vit_patch`` x ``vit_patch`` patches, 4x4 by default: 49 tokens and a class token; ``vit_width``,
``vit_depth``, ``vit_heads``; SE on the token channels after the attention and/or MLP branch, reduction 4),
trained on the same data and seeds; every ViT arm gets the same budget (the configuration may give the ViT
family its own, see :meth:`excite.study.config.StudyConfig.settings_for`).
Pixels are scaled to [0, 1] and standardised with the training split's mean and standard deviation.
Augmentation: random horizontal flips (p = 0.5); clothes are left-right symmetric classes. Metric: top-1
accuracy (torchmetrics), on the full 10,000-image test set unless ``test_limit`` says otherwise.

Segmentation: ``excite.models.unet`` (2-D on axial slices, or 3-D on patches cut from the slabs), attention
after every encoder and decoder block. Loss: cross-entropy plus soft Dice (``1 - mean`` over the
foreground classes of ``(2Σpg + 1) / (Σp + Σg + 1)``), the usual pairing for atlas segmentation (Roy et
al. trained with weighted cross-entropy plus Dice). No augmentation: left-right flips would swap the
hemispheric AAL labels. Metrics: Dice per region and mean Dice on the split; on the final test also HD95
per region in millimetres, computed in 3-D on each test slab (the slices of a slab stacked back) and
averaged over the slabs and regions where it is finite (``hd95_missed`` counts region-slab pairs present
in the ground truth but absent from the prediction).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .engine import Arm
from .metrics import dice_per_class, hausdorff95, mean_finite


@dataclass(frozen=True)
class ClassificationSetup:
    depth: int = 18
    width: int = 16
    train_per_class: int | None = None
    val_per_class: int | None = None
    test_limit: int | None = None
    flip: bool = True
    eval_batch: int = 500
    vit_width: int = 64
    vit_depth: int = 6
    vit_heads: int = 4
    vit_patch: int = 4


@dataclass(frozen=True)
class SegmentationSetup:
    dim: int = 2
    image: str = "ch2"
    labels: str = "lobes"
    downsample: int = 2
    features: tuple[int, ...] = (16, 32, 64, 128)
    slab_train: int = 12
    slab_val: int = 4
    slab_test: int = 4
    slab_gap: int = 2
    patch: tuple[int, int, int] = (64, 64, 16)
    patches_per_epoch: int = 64
    eval_batch: int = 16
    hd95: bool = True
    examples: int = 4


def cross_entropy_soft_dice(logits: Tensor, target: Tensor) -> Tensor:
    """The segmentation loss: cross-entropy plus ``1 −`` the mean soft Dice of the foreground classes.

    ``logits`` is ``(N, K, *spatial)``, ``target`` holds class indices ``(N, *spatial)`` with 0 the
    background. The soft Dice of each foreground class is pooled over the batch and space with +1
    smoothing, so a class absent from the batch scores 1 when nothing is predicted for it.
    """
    logits = logits.float()
    target = target.long()
    cross_entropy = F.cross_entropy(logits, target)
    probabilities = logits.softmax(dim=1)[:, 1:]
    one_hot = F.one_hot(target, logits.shape[1]).movedim(-1, 1)[:, 1:].to(probabilities.dtype)
    axes = [0] + list(range(2, logits.dim()))
    overlap = (probabilities * one_hot).sum(dim=axes)
    total = probabilities.sum(dim=axes) + one_hot.sum(dim=axes)
    dice = (2 * overlap + 1) / (total + 1)
    return cross_entropy + (1 - dice.mean())


def _floored_se(
    channels: int, *, dim: int = 2, reduction: int = 16, hidden_floor: int = 1, **options: Any
) -> nn.Module:
    from ..layers import SE

    return SE(channels, dim=dim, hidden_channels=max(hidden_floor, channels // reduction), **options)


def attention_spec(arm: Arm) -> tuple[Any, dict[str, Any] | None]:
    """The ``attention=`` and ``attention_options=`` a network builder gets for ``arm``.

    An SE arm with the option ``hidden_floor`` (the reduction sweep) becomes a callable building SE with
    hidden width ``max(hidden_floor, C // reduction)``; every other arm is its registry name and options.
    """
    options = arm.attention_options
    if arm.attention == "se" and "hidden_floor" in options:
        return _floored_se, options
    return arm.attention, (options or None)


class ClassificationTask:
    """Fashion-MNIST with a small ResNet (see the module docstring)."""

    name = "classification"
    metric = "accuracy"

    def __init__(self, data, setup: ClassificationSetup) -> None:
        from ..datasets.fashion_mnist import Split

        self.setup = setup
        # Only the (subset) tensors are kept, so that the task pickles small for spawned DDP workers.
        self.pixel_mean, self.pixel_std = data.mean, data.std
        self.classes = list(data.classes)
        train = data.train
        if setup.train_per_class is not None:
            train = train.stratified_subset(setup.train_per_class, seed=1)
        val = data.val
        if setup.val_per_class is not None:
            val = val.stratified_subset(setup.val_per_class, seed=2)
        test = data.test
        if setup.test_limit is not None:
            test = Split(test.images[: setup.test_limit], test.labels[: setup.test_limit])
        self.splits = {
            name: (self._prepare(split.images), split.labels)
            for name, split in (("train", train), ("val", val), ("test", test))
        }
        self.sizes = {name: int(labels.shape[0]) for name, (_, labels) in self.splits.items()}
        self.input_size = (1, 1, 28, 28)

    def _prepare(self, images: Tensor) -> Tensor:
        return ((images.to(torch.float32) / 255.0 - self.pixel_mean) / self.pixel_std).unsqueeze(1)

    def config(self) -> dict[str, Any]:
        return {"name": self.name, "setup": asdict(self.setup), "sizes": self.sizes}

    def build_model(self, arm: Arm) -> nn.Module:
        """The ResNet with ``arm``'s attention, or the ViT for ``network="vit"`` arms.

        Raises:
            ValueError: an unknown network.
        """
        from .. import models

        if arm.network == "vit":
            return self._build_vit(arm)
        if arm.network not in (None, "resnet"):
            raise ValueError(
                f"ClassificationTask: arm {arm.name!r} asks for network {arm.network!r}; "
                "expected None, 'resnet' or 'vit'"
            )
        builder = getattr(models, f"resnet{self.setup.depth}")
        attention, options = attention_spec(arm)
        return builder(
            attention=attention,
            attention_options=options,
            in_channels=1,
            num_classes=len(self.classes),
            stem="small",
            width=self.setup.width,
        )

    def _build_vit(self, arm: Arm) -> nn.Module:
        from ..tokens import vit_tiny

        options = arm.attention_options
        position = options.pop("se_position", "attn") if arm.attention is not None else None
        return vit_tiny(
            in_channels=1,
            num_classes=len(self.classes),
            image_size=self.input_size[-1],
            patch_size=self.setup.vit_patch,
            dim=self.setup.vit_width,
            depth=self.setup.vit_depth,
            heads=self.setup.vit_heads,
            se_position=position,
            attention=arm.attention or "se",
            attention_options=options or None,
        )

    def num_train(self) -> int:
        return self.sizes["train"]

    def train_batch(self, indices: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        images, labels = self.splits["train"]
        x = images[indices]
        if self.setup.flip:
            flip = torch.rand(x.shape[0], generator=generator) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(-1), x)
        return x, labels[indices]

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(output.float(), target)

    @torch.no_grad()
    def predict(self, model: nn.Module, images: Tensor, device: torch.device) -> Tensor:
        model.eval()
        logits = []
        for start in range(0, images.shape[0], self.setup.eval_batch):
            logits.append(model(images[start : start + self.setup.eval_batch].to(device)).float().cpu())
        return torch.cat(logits)

    def evaluate(
        self, model: nn.Module, split: str, device: torch.device, final: bool = False
    ) -> dict[str, Any]:
        from torchmetrics.functional.classification import multiclass_accuracy

        images, labels = self.splits[split]
        logits = self.predict(model, images, device)
        classes = len(self.classes)
        result: dict[str, Any] = {
            "accuracy": float(multiclass_accuracy(logits, labels, num_classes=classes, average="micro")),
            "loss": float(F.cross_entropy(logits, labels)),
            "examples": int(labels.shape[0]),
        }
        if final:
            per_class = multiclass_accuracy(logits, labels, num_classes=classes, average="none")
            result["per_class_accuracy"] = dict(zip(self.classes, per_class.tolist()))
        return result

    def loader(self, split: str, batch_size: int = 500):
        """``(images, labels)`` batches of a split, for :func:`excite.analysis.excitations`."""
        images, labels = self.splits[split]
        for start in range(0, images.shape[0], batch_size):
            yield images[start : start + batch_size], labels[start : start + batch_size]


class SegmentationTask:
    """Atlas regions from the Colin27 T1 with a U-Net (see the module docstring)."""

    name = "segmentation"
    metric = "mean_dice"

    def __init__(self, volume, setup: SegmentationSetup, name: str = "segmentation") -> None:
        # The name keys the run folders and the results: the separate 3-D task is "segmentation3d".
        self.name = name
        self.setup = setup
        self.volume = volume
        self.label_names = list(volume.label_names)
        self.num_classes = volume.num_classes
        self.slab_ranges = volume.split_slabs(
            train=setup.slab_train, val=setup.slab_val, test=setup.slab_test, gap=setup.slab_gap
        )
        levels = len(setup.features) - 1
        multiple = 2**levels
        if setup.dim == 2:
            self.slices = {split: volume.slices(slabs) for split, slabs in self.slab_ranges.items()}
            self.sizes = {split: int(images.shape[0]) for split, (images, _) in self.slices.items()}
            in_plane = tuple(volume.image.shape[:2])
            for size in in_plane:
                if size % multiple:
                    raise ValueError(
                        f"SegmentationTask: in-plane size {in_plane} must be a multiple of {multiple} for a "
                        f"U-Net with {len(setup.features)} levels; load the volume with "
                        f"pad_multiple={multiple}"
                    )
            self.input_size = (1, 1, *in_plane)
        elif setup.dim == 3:
            self.slabs = {split: volume.slabs(slabs) for split, slabs in self.slab_ranges.items()}
            patch = setup.patch
            for split, slabs in self.slab_ranges.items():
                thickness = min(b - a for a, b in slabs)
                if thickness % multiple or (split == "train" and thickness < patch[2]):
                    raise ValueError(
                        f"SegmentationTask: 3-D {split} slabs are {thickness} slices thick; they must be a "
                        f"multiple of {multiple} and (train) at least the patch depth {patch[2]}"
                    )
            for axis in range(2):
                if patch[axis] > volume.image.shape[axis] or patch[axis] % multiple:
                    raise ValueError(
                        f"SegmentationTask: patch {patch} must fit the volume "
                        f"{list(volume.image.shape)} and be a "
                        f"multiple of {multiple}"
                    )
            self.sizes = {split: sum(b - a for a, b in slabs) for split, slabs in self.slab_ranges.items()}
            self.input_size = (1, 1, *patch)
        else:
            raise ValueError(f"SegmentationTask: dim must be 2 or 3, got {setup.dim}")

    def config(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "setup": asdict(self.setup),
            "classes": self.num_classes,
            "slabs": self.slab_ranges,
            "shape": list(self.volume.image.shape),
        }

    def build_model(self, arm: Arm) -> nn.Module:
        from .. import models

        attention, options = attention_spec(arm)
        return models.unet(
            dim=self.setup.dim,
            in_channels=1,
            out_channels=self.num_classes,
            features=tuple(self.setup.features),
            attention=attention,
            attention_options=options,
            input_size=self.input_size[2:],
        )

    def num_train(self) -> int:
        if self.setup.dim == 2:
            return self.sizes["train"]
        return self.setup.patches_per_epoch

    def train_batch(self, indices: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
        if self.setup.dim == 2:
            images, labels = self.slices["train"]
            return images[indices], labels[indices]
        slabs = self.slabs["train"]
        px, py, pz = self.setup.patch
        inputs, targets = [], []
        for _ in range(indices.shape[0]):
            image, labels = slabs[int(torch.randint(len(slabs), (1,), generator=generator))]
            x0 = int(torch.randint(image.shape[1] - px + 1, (1,), generator=generator))
            y0 = int(torch.randint(image.shape[2] - py + 1, (1,), generator=generator))
            z0 = int(torch.randint(image.shape[3] - pz + 1, (1,), generator=generator))
            inputs.append(image[:, x0 : x0 + px, y0 : y0 + py, z0 : z0 + pz])
            targets.append(labels[x0 : x0 + px, y0 : y0 + py, z0 : z0 + pz])
        return torch.stack(inputs), torch.stack(targets)

    def loss(self, output: Tensor, target: Tensor) -> Tensor:
        return cross_entropy_soft_dice(output, target)

    @torch.no_grad()
    def predict_volumes(
        self, model: nn.Module, split: str, device: torch.device
    ) -> list[tuple[Tensor, Tensor, Tensor]]:
        """Per slab of ``split``: the image ``(X, Y, T)``, labels and prediction, as 3-D stacks."""
        model.eval()
        out = []
        if self.setup.dim == 2:
            images, labels = self.slices[split]
            predictions = []
            for start in range(0, images.shape[0], self.setup.eval_batch):
                logits = model(images[start : start + self.setup.eval_batch].to(device))
                predictions.append(logits.argmax(dim=1).cpu())
            prediction = torch.cat(predictions)
            start = 0
            for a, b in self.slab_ranges[split]:
                stop = start + (b - a)
                out.append(
                    (
                        images[start:stop, 0].permute(1, 2, 0),
                        labels[start:stop].permute(1, 2, 0),
                        prediction[start:stop].permute(1, 2, 0),
                    )
                )
                start = stop
            return out
        for image, labels in self.slabs[split]:
            prediction = model(image[None].to(device)).argmax(dim=1)[0].cpu()
            out.append((image[0], labels, prediction))
        return out

    def evaluate(
        self, model: nn.Module, split: str, device: torch.device, final: bool = False
    ) -> dict[str, Any]:
        stacks = self.predict_volumes(model, split, device)
        labels = torch.cat([lab.flatten() for _, lab, _ in stacks])
        prediction = torch.cat([pred.flatten() for _, _, pred in stacks])
        dice = dice_per_class(prediction, labels, self.num_classes)
        present = torch.bincount(labels, minlength=self.num_classes)[1:] > 0
        per_region = {
            name: (float(d) if bool(p) else None) for name, d, p in zip(self.label_names[1:], dice, present)
        }
        result: dict[str, Any] = {
            "mean_dice": float(dice[present].nanmean()) if bool(present.any()) else float("nan"),
            "dice": per_region,
            "voxels": int(labels.numel()),
        }
        if final and self.setup.hd95:
            distances: dict[str, list[float]] = {name: [] for name in self.label_names[1:]}
            missed = 0
            for _, truth, pred in stacks:
                for index, name in enumerate(self.label_names[1:], start=1):
                    truth_mask = truth == index
                    if not bool(truth_mask.any()):
                        continue
                    value = hausdorff95(pred == index, truth_mask, self.volume.spacing_mm)
                    if math.isinf(value):
                        missed += 1
                    distances[name].append(value)
            per_region_hd = {
                name: mean_finite(values) if values else None for name, values in distances.items()
            }
            result["hd95_mm"] = mean_finite([v for v in per_region_hd.values() if v is not None])
            result["hd95_per_region_mm"] = per_region_hd
            result["hd95_missed"] = missed
        if final and self.setup.examples:
            picks = []
            for image, truth, pred in stacks[: self.setup.examples]:
                middle = image.shape[2] // 2
                picks.append(
                    {
                        "image": image[:, :, middle].clone(),
                        "labels": truth[:, :, middle].to(
                            torch.uint8 if self.num_classes < 256 else torch.int16
                        ),
                        "prediction": pred[:, :, middle].to(
                            torch.uint8 if self.num_classes < 256 else torch.int16
                        ),
                    }
                )
            result["_examples"] = picks
        return result

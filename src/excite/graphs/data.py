"""User-item interaction data for the graph recommenders: loaders, the per-user split, and where the
real data comes from.

Real data offline: the PyPI package ``recbole`` (MIT licence; RecBole 1.2.1) ships MovieLens-100K
(GroupLens; 943 users, 1,682 movies, 100,000 ratings from 1997-98) as the atomic file
``recbole/dataset_example/ml-100k/ml-100k.inter``. Installing the wheel without its dependencies
(``pip install --no-deps recbole``) is enough: the file is found through the import system without
importing RecBole. Of every package in the Debian and PyPI lists, this is the only copy of a real
user-item data set that ships inside a package. MovieLens is not one of the WeightedGCL paper's data sets
(Amazon-Books, Pinterest, Alibaba, all distributed through Google Drive), so figures on it are not
comparable with the paper's table.

Other data come from a user path, in either standard format:

* a RecBole atomic ``.inter`` file (tab-separated, header ``user_id:token  item_id:token  ...``), or a
  folder holding one;
* a folder with ``train.txt`` and ``test.txt`` (optionally ``valid.txt``) as in the LightGCN and SimGCL
  repositories: ``format="lightgcn"`` reads ``user item item ...`` per line, ``format="pairs"`` reads the
  first two columns of ``user item [rating ...]`` lines.

Search order: the explicit path, then ``$EXCITE_INTERACTIONS``, then RecBole's MovieLens-100K.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

ENV_VAR = "EXCITE_INTERACTIONS"
RECBOLE_ML100K = ("dataset_example", "ml-100k", "ml-100k.inter")
HOW_TO_GET = (
    "Install RecBole's wheel for its bundled MovieLens-100K: pip install --no-deps recbole. Or pass a "
    "RecBole .inter file, or a folder with train.txt/test.txt (LightGCN/SimGCL format), as path= "
    f"(or set ${ENV_VAR})."
)


@dataclass
class Interactions:
    """Implicit feedback split into train/valid/test ``(E, 2)`` long tensors of ``(user, item)`` ids.

    Ids are contiguous, ``0 .. n_users-1`` and ``0 .. n_items-1``; ``users``/``items`` map them back
    to the file's tokens.
    """

    name: str
    n_users: int
    n_items: int
    train: Tensor
    valid: Tensor
    test: Tensor
    users: list[str]
    items: list[str]

    def summary(self) -> dict[str, float]:
        total = self.train.shape[0] + self.valid.shape[0] + self.test.shape[0]
        return {
            "users": self.n_users,
            "items": self.n_items,
            "interactions": total,
            "train": self.train.shape[0],
            "valid": self.valid.shape[0],
            "test": self.test.shape[0],
            "density": total / float(self.n_users * self.n_items),
        }


def recbole_movielens_path() -> Path | None:
    """RecBole's bundled ``ml-100k.inter``, found without importing RecBole, or None."""
    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        return None
    for folder in spec.submodule_search_locations:
        candidate = Path(folder).joinpath(*RECBOLE_ML100K)
        if candidate.is_file():
            return candidate
    return None


def locate_interactions(path: os.PathLike | None = None) -> Path:
    """The interaction file or folder to load: ``path``, else ``$EXCITE_INTERACTIONS``, else RecBole's.

    Raises:
        FileNotFoundError: nothing found, with instructions.
    """
    for candidate in (path, os.environ.get(ENV_VAR)):
        if candidate:
            if Path(candidate).exists():
                return Path(candidate)
            raise FileNotFoundError(f"interactions: {candidate} does not exist. {HOW_TO_GET}")
    found = recbole_movielens_path()
    if found is None:
        raise FileNotFoundError(f"interactions: no data found. {HOW_TO_GET}")
    return found


def read_inter_file(
    path: os.PathLike,
    *,
    user_field: str = "user_id",
    item_field: str = "item_id",
    rating_field: str = "rating",
    min_rating: float | None = None,
) -> list[tuple[str, str]]:
    """The ``(user, item)`` token pairs of a RecBole atomic ``.inter`` file, in file order.

    Header fields are ``name:type``; ``min_rating`` keeps rows with ``rating >= min_rating`` (the
    WeightedGCL paper keeps Amazon ratings >= 3; None keeps everything, RecBole's default).

    Raises:
        ValueError: a header without the user or item field (or the rating field when filtering).
    """
    with open(path, encoding="utf-8") as handle:
        header = [field.split(":")[0] for field in handle.readline().rstrip("\n").split("\t")]
        for needed in (user_field, item_field) + ((rating_field,) if min_rating is not None else ()):
            if needed not in header:
                raise ValueError(f"read_inter_file: {path} has fields {header}, expected a {needed!r} field")
        u_col, i_col = header.index(user_field), header.index(item_field)
        r_col = header.index(rating_field) if min_rating is not None else -1
        pairs = []
        for line in handle:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < len(header):
                continue
            if min_rating is not None and float(fields[r_col]) < min_rating:
                continue
            pairs.append((fields[u_col], fields[i_col]))
    return pairs


def read_txt_interactions(path: os.PathLike, *, format: str = "lightgcn") -> list[tuple[str, str]]:
    """``(user, item)`` token pairs from a LightGCN-style (``user item item ...``) or pairs file.

    Raises:
        ValueError: an unknown ``format``.
    """
    if format not in ("lightgcn", "pairs"):
        raise ValueError(f"read_txt_interactions: format must be 'lightgcn' or 'pairs', got {format!r}")
    pairs = []
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            fields = line.split()
            if len(fields) < 2:
                continue
            if format == "pairs":
                pairs.append((fields[0], fields[1]))
            else:
                pairs.extend((fields[0], item) for item in fields[1:])
    return pairs


def split_counts(total: int, ratios: Sequence[float]) -> list[int]:
    """How RecBole splits one user's ``total`` interactions by ``ratios`` (its ``_calcu_split_ids``).

    ``floor(ratio·total)`` for every part but the first, which takes the rest; then each later part
    whose share is positive but below one interaction is given one, taken from the first part while it
    keeps more than one.
    """
    counts = [int(r * total) for r in ratios]
    counts[0] = total - sum(counts[1:])
    for i in range(1, len(ratios)):
        if counts[0] <= 1:
            break
        if 0 < ratios[-i] * total < 1:
            counts[-i] += 1
            counts[0] -= 1
    return counts


def split_per_user(
    pairs: Tensor, n_users: int, ratios: Sequence[float] = (0.8, 0.1, 0.1), seed: int = 2023
) -> list[Tensor]:
    """Random per-user split of ``(E, 2)`` pairs (RecBole's ``RS`` split grouped by user, ``RO`` order).

    Each user's interactions are shuffled with a generator seeded by ``seed`` and cut by
    :func:`split_counts`, so every user with enough history appears in every part.

    Raises:
        ValueError: ratios that are not positive or do not sum to 1.
    """
    ratios = [float(r) for r in ratios]
    if min(ratios) < 0 or abs(sum(ratios) - 1.0) > 1e-6:
        raise ValueError(f"split_per_user: ratios must be >= 0 and sum to 1, got {ratios}")
    generator = torch.Generator().manual_seed(seed)
    order = torch.randperm(pairs.shape[0], generator=generator)
    shuffled = pairs[order]
    by_user = torch.argsort(shuffled[:, 0], stable=True)
    shuffled = shuffled[by_user]
    per_user = torch.bincount(shuffled[:, 0], minlength=n_users).tolist()
    parts: list[list[Tensor]] = [[] for _ in ratios]
    start = 0
    for count in per_user:
        if count == 0:
            continue
        offset = start
        for part, size in zip(parts, split_counts(count, ratios)):
            part.append(shuffled[offset : offset + size])
            offset += size
        start += count
    return [torch.cat(p) if p else pairs.new_zeros((0, 2)) for p in parts]


def _index(pairs: list[tuple[str, str]], users: dict[str, int], items: dict[str, int]) -> Tensor:
    for user, item in pairs:
        users.setdefault(user, len(users))
        items.setdefault(item, len(items))
    if not pairs:
        return torch.zeros((0, 2), dtype=torch.long)
    array = np.array([(users[u], items[i]) for u, i in pairs], dtype=np.int64)
    return torch.from_numpy(array)


def _unique_pairs(pairs: Tensor, n_items: int) -> Tensor:
    """Drop repeated (user, item) pairs, keeping first occurrences in order: a repeat would double an edge."""
    keys = pairs[:, 0] * n_items + pairs[:, 1]
    _, inverse = torch.unique(keys, return_inverse=True)
    first = torch.full((int(inverse.max()) + 1,), keys.numel(), dtype=torch.long)
    first.scatter_reduce_(0, inverse, torch.arange(keys.numel()), reduce="amin")
    return pairs[first.sort().values]


def load_interactions(
    path: os.PathLike | None = None,
    *,
    format: str = "lightgcn",
    ratios: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 2023,
    min_rating: float | None = None,
) -> Interactions:
    """Load implicit feedback and split it (see the module docstring for sources and formats).

    A ``.inter`` file (or a folder with exactly one) is split per user by ``ratios`` with ``seed``,
    as the WeightedGCL configuration does (8/1/1, seed 2023). A folder with ``train.txt``/``test.txt``
    keeps its split; without ``valid.txt`` the validation part is empty. Repeated (user, item) pairs
    are dropped (RecBole keeps them by default; MovieLens-100K has none).

    Raises:
        FileNotFoundError: no data (with instructions). ValueError: a folder with neither format.
    """
    source = locate_interactions(path)
    users: dict[str, int] = {}
    items: dict[str, int] = {}
    if source.is_dir() and (source / "train.txt").is_file():
        parts = []
        for split in ("train", "valid", "test"):
            file = source / f"{split}.txt"
            parts.append(
                _index(read_txt_interactions(file, format=format) if file.is_file() else [], users, items)
            )
        train, valid, test = (_unique_pairs(p, len(items)) if p.numel() else p for p in parts)
        name = source.name
    else:
        if source.is_dir():
            inter_files = sorted(source.glob("*.inter"))
            if len(inter_files) != 1:
                raise ValueError(
                    f"load_interactions: {source} should hold one .inter file or train.txt/test.txt, "
                    f"found {[f.name for f in inter_files] or 'neither'}"
                )
            source = inter_files[0]
        pairs = _unique_pairs(
            _index(read_inter_file(source, min_rating=min_rating), users, items), len(items)
        )
        train, valid, test = split_per_user(pairs, len(users), ratios, seed)
        name = source.stem
    return Interactions(
        name=name,
        n_users=len(users),
        n_items=len(items),
        train=train,
        valid=valid,
        test=test,
        users=list(users),
        items=list(items),
    )

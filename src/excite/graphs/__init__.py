"""SE beyond CNN feature maps, part 2: graphs. WeightedGCL and its baselines for collaborative filtering.

* :class:`LightGCN`, :class:`SimGCL`, :class:`WeightedGCL` (torch sparse propagation), with
  :class:`FeatureExcitation` (WeightedGCL's SE weighting), :func:`perturb`, :func:`info_nce`.
* :func:`load_interactions`: RecBole ``.inter`` files or LightGCN/SimGCL ``train.txt``/``test.txt``
  folders; by default the MovieLens-100K copy bundled in the ``recbole`` wheel.
* :func:`topk_metrics`: full-ranking Recall@K / NDCG@K with known items masked.
* :func:`compare` and :func:`format_table`: the LightGCN / SimGCL / WeightedGCL table.
"""

from .data import Interactions, load_interactions, locate_interactions, recbole_movielens_path, split_per_user
from .metrics import topk_metrics
from .models import (
    MODELS,
    FeatureExcitation,
    LightGCN,
    SimGCL,
    WeightedGCL,
    bpr_loss,
    embedding_norm_loss,
    info_nce,
    normalized_adjacency,
    perturb,
)
from .train import PRESETS, compare, evaluate, format_table, sample_negatives, train_model

__all__ = [
    "MODELS",
    "PRESETS",
    "FeatureExcitation",
    "Interactions",
    "LightGCN",
    "SimGCL",
    "WeightedGCL",
    "bpr_loss",
    "compare",
    "embedding_norm_loss",
    "evaluate",
    "format_table",
    "info_nce",
    "load_interactions",
    "locate_interactions",
    "normalized_adjacency",
    "perturb",
    "recbole_movielens_path",
    "sample_negatives",
    "split_per_user",
    "topk_metrics",
    "train_model",
]

r"""LightGCN, SimGCL and WeightedGCL on torch sparse matrices.

* LightGCN: He et al., "LightGCN: Simplifying and Powering Graph Convolution Network for
  Recommendation", SIGIR 2020.
* SimGCL: Yu et al., "Are Graph Augmentations Necessary? Simple Graph Contrastive Learning for
  Recommendation", SIGIR 2022.
* WeightedGCL: Chen, Xu, Wei, Peng, "Squeeze and Excitation: A Weighted Graph Contrastive Learning for
  Collaborative Filtering", SIGIR 2025 (arXiv 2504.04443); official code ``Jinfeng-Xu/WeightedGCL``
  (``recbole_gnn/model/general_recommender/weightedgcl.py`` and ``WeightedGCL.yaml``), on RecBole-GNN.

All three follow RecBole-GNN's arithmetic, which the WeightedGCL code builds on:

.. math::

    \hat A = D^{-1/2} A D^{-1/2},\quad E^{l} = \hat A E^{l-1},\quad
    \mathcal L = \mathrm{BPR} + \lambda_{reg} \frac{\lVert E^0_u\rVert + \lVert E^0_{i^+}\rVert
    + \lVert E^0_{i^-}\rVert}{B} + \lambda\,(\mathrm{InfoNCE}_u + \mathrm{InfoNCE}_i)

with :math:`A` the symmetric user-item adjacency (a node of degree 0 keeps degree 1), BPR
:math:`-\mathrm{mean}\log\sigma(s^+ - s^-)`, and the regulariser RecBole's ``EmbLoss`` with
``require_pow=False``: the Frobenius norms of the batch's ego embeddings, not squared, over the batch
size.

The contrastive views are perturbed propagations, :math:`E^l \leftarrow E^l + \epsilon\,\mathrm{sign}
(E^l)\odot \frac{U}{\lVert U\rVert_2}` with :math:`U \sim \mathcal U[0,1)` per row; SimGCL perturbs every
layer, WeightedGCL only the last. Both final embeddings (views and recommendation) are the mean of layers
1..L: the overridden ``forward`` of both drops layer 0, unlike LightGCN's mean of 0..L.

WeightedGCL's SE weighting, per node and shared by both views and by users and items:

.. math::

    z = \mathrm{mean}_d(v) \in \mathbb R,\qquad w = \sigma(W_3 W_2 W_1 z + \dots) \in (0,1)^d,
    \qquad \tilde v = w \odot v

with linear maps 1 → d/16 → d/4 → d and **no nonlinearity between them** (the official choice; the code
keeps 1→d, 1→d/8→d and 1→d/32→d/16→d/4→d commented out). Because the chain is linear, ``w`` is
``σ(a·z + b)`` for per-feature vectors ``a, b``: each feature's weight is a sigmoid of the node's mean.

InfoNCE (SimGCL's and WeightedGCL's ``calculate_cl_loss``): L2-normalised views, temperature τ,
positives on the diagonal, the other rows as negatives; WeightedGCL **sums** over the unique users and
unique positive items of the batch (SimGCL's authors average; see :class:`SimGCL`).

Official-code details kept as defaults: the excitation layers keep PyTorch's default initialisation
(they are created after RecBole's Xavier initialisation has run; the embeddings are Xavier-uniform), and
the yaml's ``k: 64`` and ``warm_up_step: 30`` are not used by the model.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def normalized_adjacency(n_users: int, n_items: int, train: Tensor) -> Tensor:
    r"""The ``(U+I) x (U+I)`` sparse COO matrix :math:`D^{-1/2} A D^{-1/2}` of the bipartite graph.

    ``train`` is ``(E, 2)`` ``(user, item)`` pairs; item ``i`` is node ``U + i``. Degree-0 nodes use
    degree 1 (RecBole-GNN's ``get_norm_adj_mat``), so their rows stay zero.
    """
    users, items = train[:, 0], train[:, 1] + n_users
    rows = torch.cat([users, items])
    cols = torch.cat([items, users])
    nodes = n_users + n_items
    degree = torch.bincount(rows, minlength=nodes).float()
    inv_sqrt = degree.clamp(min=1).rsqrt()
    values = inv_sqrt[rows] * inv_sqrt[cols]
    # COO, not CSR: on CPU its sparse-dense product and that product's backward are several times faster.
    return torch.sparse_coo_tensor(
        torch.stack([rows, cols]), values, (nodes, nodes), check_invariants=False
    ).coalesce()


def perturb(embeddings: Tensor, eps: float, generator: torch.Generator | None = None) -> Tensor:
    r"""SimGCL's noise: :math:`E + \epsilon\,\mathrm{sign}(E) \odot U/\lVert U\rVert_2`, ``U ~ U[0, 1)``
    per row.

    The noise lies in the orthant of each embedding and has norm ``eps`` per row.
    """
    noise = torch.rand(
        embeddings.shape, generator=generator, dtype=embeddings.dtype, device=embeddings.device
    )
    return embeddings + torch.sign(embeddings) * F.normalize(noise, dim=-1) * eps


def info_nce(view1: Tensor, view2: Tensor, temperature: float, reduction: str = "sum") -> Tensor:
    r"""InfoNCE between row-aligned views: :math:`-\sum_i \log \frac{\exp(\hat v^1_i\cdot \hat v^2_i/\tau)}
    {\sum_j \exp(\hat v^1_i\cdot \hat v^2_j/\tau)}` with L2-normalised rows.

    Computed with ``logsumexp`` (the official code divides exponentials; same value, no overflow for
    small τ). ``reduction="sum"`` is the official; ``"mean"`` is SELFRec's SimGCL.
    """
    view1, view2 = F.normalize(view1, dim=-1), F.normalize(view2, dim=-1)
    logits = view1 @ view2.T / temperature
    losses = torch.logsumexp(logits, dim=1) - logits.diagonal()
    if reduction == "sum":
        return losses.sum()
    if reduction == "mean":
        return losses.mean()
    raise ValueError(f"info_nce: reduction must be 'sum' or 'mean', got {reduction!r}")


def bpr_loss(positive: Tensor, negative: Tensor) -> Tensor:
    r""":math:`-\mathrm{mean}\,\log\sigma(s^+ - s^-)`: RecBole's ``-log(1e-10 + σ(Δ))`` in stable form."""
    return -F.logsigmoid(positive - negative).mean()


def embedding_norm_loss(*embeddings: Tensor, require_pow: bool = False) -> Tensor:
    """RecBole's ``EmbLoss``: ``Σ‖E‖_F / B`` (default) or ``Σ‖E‖_F² / (2B)`` with ``require_pow``."""
    batch = embeddings[-1].shape[0]
    if require_pow:
        return sum(e.pow(2).sum() for e in embeddings) / batch / 2
    return sum(torch.linalg.vector_norm(e) for e in embeddings) / batch


class FeatureExcitation(nn.Module):
    r"""WeightedGCL's SE weighting of one view: per-node mean squeeze, linear chain, sigmoid, multiply.

    .. math::

        z_n = \tfrac1d \textstyle\sum_k v_{n,k},\qquad w_n = \sigma(\mathrm{Lin}_{d/4\to d}\,
        \mathrm{Lin}_{d/16\to d/4}\,\mathrm{Lin}_{1\to d/16}\, z_n),\qquad \tilde v_n = w_n \odot v_n

    Args:
        features: d, the embedding size.
        hidden: the widths between 1 and d; default ``(d // 16, d // 4)`` (official, 1→4→16→64 at d=64).
        activation: a nonlinearity between the linears (None, the official choice, has none).

    Raises:
        ValueError: a hidden width below 1 (d < 16 with the default widths).
    """

    def __init__(
        self, features: int, hidden: Sequence[int] | None = None, activation: nn.Module | None = None
    ) -> None:
        super().__init__()
        widths = [features // 16, features // 4] if hidden is None else [int(h) for h in hidden]
        if any(w < 1 for w in widths):
            raise ValueError(f"FeatureExcitation: hidden widths must be >= 1, got {widths} for d={features}")
        layers = []
        previous = 1
        for width in widths:
            layers.append(nn.Linear(previous, width))
            if activation is not None:
                layers.append(activation)
            previous = width
        layers.append(nn.Linear(previous, features))
        layers.append(nn.Sigmoid())
        self.excitation = nn.Sequential(*layers)

    def weights(self, view: Tensor) -> Tensor:
        """The ``(n, d)`` feature weights of each node."""
        return self.excitation(view.mean(dim=1, keepdim=True))

    def forward(self, view: Tensor) -> Tensor:
        return self.weights(view) * view


class LightGCN(nn.Module):
    """LightGCN: parameter-free propagation over the normalised bipartite graph; BPR + embedding norm.

    Args:
        n_users, n_items: node counts.
        train: ``(E, 2)`` training pairs (the graph).
        embedding_size: d (64).
        n_layers: L (2).
        reg_weight: λ_reg (1e-4, the WeightedGCL setting; RecBole's LightGCN default is 1e-5).
        require_pow: RecBole's ``EmbLoss`` option (False: plain norms).
        include_ego: average layers 0..L (LightGCN) rather than 1..L.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        train: Tensor,
        *,
        embedding_size: int = 64,
        n_layers: int = 2,
        reg_weight: float = 1e-4,
        require_pow: bool = False,
        include_ego: bool = True,
    ) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"{type(self).__name__}: n_layers must be >= 1, got {n_layers}")
        self.n_users = n_users
        self.n_items = n_items
        self.n_layers = n_layers
        self.reg_weight = reg_weight
        self.require_pow = require_pow
        self.include_ego = include_ego
        self.user_embedding = nn.Embedding(n_users, embedding_size)
        self.item_embedding = nn.Embedding(n_items, embedding_size)
        nn.init.xavier_uniform_(self.user_embedding.weight)
        nn.init.xavier_uniform_(self.item_embedding.weight)
        self.register_buffer("adjacency", normalized_adjacency(n_users, n_items, train), persistent=False)

    def ego_embeddings(self) -> Tensor:
        return torch.cat([self.user_embedding.weight, self.item_embedding.weight])

    def propagate(
        self,
        perturb_layers: Sequence[int] = (),
        eps: float = 0.0,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor]:
        """Final user and item embeddings; layers (1-based) in ``perturb_layers`` get SimGCL noise."""
        layer = self.ego_embeddings()
        layers = [layer] if self.include_ego else []
        for index in range(1, self.n_layers + 1):
            layer = torch.sparse.mm(self.adjacency, layer)
            if index in perturb_layers:
                layer = perturb(layer, eps, generator)
            layers.append(layer)
        final = torch.stack(layers, dim=1).mean(dim=1)
        return final[: self.n_users], final[self.n_users :]

    def recommendation_loss(
        self, users: Tensor, positives: Tensor, negatives: Tensor, user_final: Tensor, item_final: Tensor
    ) -> dict[str, Tensor]:
        user_vectors = user_final[users]
        bpr = bpr_loss(
            (user_vectors * item_final[positives]).sum(1), (user_vectors * item_final[negatives]).sum(1)
        )
        reg = embedding_norm_loss(
            self.user_embedding(users),
            self.item_embedding(positives),
            self.item_embedding(negatives),
            require_pow=self.require_pow,
        )
        return {"bpr": bpr, "reg": self.reg_weight * reg}

    def loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> dict[str, Tensor]:
        """The loss terms for a batch of ``(user, positive, negative)`` triples; ``"total"`` is their sum."""
        parts = self.recommendation_loss(users, positives, negatives, *self.propagate())
        parts["total"] = parts["bpr"] + parts["reg"]
        return parts

    @torch.no_grad()
    def score_all(self, users: Tensor) -> Tensor:
        """``(B, n_items)`` scores of every item for ``users`` (clean propagation)."""
        user_final, item_final = self.propagate()
        return user_final[users] @ item_final.T


class SimGCL(LightGCN):
    """SimGCL: noise on every layer, InfoNCE between two perturbed views of the batch's users and items.

    Defaults are the SimGCL authors' (SELFRec ``SimGCL``): λ=0.5, ε=0.1, τ=0.2, InfoNCE **averaged** over
    the **unique** batch users and items. RecBole-GNN's port, on which WeightedGCL is built, keeps λ=0.5
    but sums over the batch columns with repeats, which weights the contrastive term about
    ``batch_size``-fold (4,096x) more; ``unique_nodes=False, cl_reduction="sum"`` reproduces it. The
    recommendation loss is RecBole's (BPR + ``EmbLoss`` on the ego embeddings) for all three models, so
    that only the contrastive parts differ.

    Args:
        cl_weight: λ.
        eps: noise norm ε.
        temperature: τ.
        perturb: ``"all"`` layers (SimGCL) or ``"last"`` (WeightedGCL's "robust perturbation").
        unique_nodes: InfoNCE over unique batch users/items rather than the batch columns with repeats.
        cl_reduction: ``"mean"`` (SELFRec) or ``"sum"`` (RecBole-GNN, WeightedGCL).
        Other args: as :class:`LightGCN`; layer 0 is excluded from the final mean.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        train: Tensor,
        *,
        embedding_size: int = 64,
        n_layers: int = 2,
        reg_weight: float = 1e-4,
        require_pow: bool = False,
        cl_weight: float = 0.5,
        eps: float = 0.1,
        temperature: float = 0.2,
        perturb: str = "all",
        unique_nodes: bool = True,
        cl_reduction: str = "mean",
    ) -> None:
        super().__init__(
            n_users,
            n_items,
            train,
            embedding_size=embedding_size,
            n_layers=n_layers,
            reg_weight=reg_weight,
            require_pow=require_pow,
            include_ego=False,
        )
        if perturb not in ("all", "last"):
            raise ValueError(f"{type(self).__name__}: perturb must be 'all' or 'last', got {perturb!r}")
        self.cl_weight = cl_weight
        self.eps = eps
        self.temperature = temperature
        self.perturb = perturb
        self.unique_nodes = unique_nodes
        self.cl_reduction = cl_reduction

    def perturbed_layers(self) -> tuple[int, ...]:
        if self.perturb == "last":
            return (self.n_layers,)
        return tuple(range(1, self.n_layers + 1))

    def views(
        self, generator: torch.Generator | None = None
    ) -> tuple[tuple[Tensor, Tensor], tuple[Tensor, Tensor]]:
        """Two perturbed propagations with independent noise: ``((users1, items1), (users2, items2))``."""
        layers = self.perturbed_layers()
        return self.propagate(layers, self.eps, generator), self.propagate(layers, self.eps, generator)

    def weight_views(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
        """Hook for WeightedGCL: SimGCL uses the views as they are."""
        return view1, view2

    def contrastive_loss(
        self, users: Tensor, positives: Tensor, generator: torch.Generator | None = None
    ) -> Tensor:
        """``λ·(InfoNCE_users + InfoNCE_items)`` on the batch's users and positive items."""
        if self.unique_nodes:
            users, positives = torch.unique(users), torch.unique(positives)
        (users1, items1), (users2, items2) = self.views(generator)
        user_view1, user_view2 = self.weight_views(users1[users], users2[users])
        item_view1, item_view2 = self.weight_views(items1[positives], items2[positives])
        user_term = info_nce(user_view1, user_view2, self.temperature, self.cl_reduction)
        item_term = info_nce(item_view1, item_view2, self.temperature, self.cl_reduction)
        return self.cl_weight * (user_term + item_term)

    def loss(self, users: Tensor, positives: Tensor, negatives: Tensor) -> dict[str, Tensor]:
        parts = self.recommendation_loss(users, positives, negatives, *self.propagate())
        parts["cl"] = self.contrastive_loss(users, positives)
        parts["total"] = parts["bpr"] + parts["reg"] + parts["cl"]
        return parts


class WeightedGCL(SimGCL):
    """WeightedGCL: SimGCL with last-layer noise and SE feature weighting of both views.

    Defaults are the official ``WeightedGCL.yaml``: d=64, L=2, λ_reg=1e-4, λ=1e-3, ε=0.1, τ=0.2, noise
    on the last layer only, InfoNCE summed over the unique batch users and items.

    Args:
        excitation_hidden: the excitation MLP's inner widths (default ``(d // 16, d // 4)``).
        perturb: ``"last"`` (official) or ``"all"`` (the paper's "WGCL-all pert." ablation).
        Other args: as :class:`SimGCL`.
    """

    def __init__(
        self,
        n_users: int,
        n_items: int,
        train: Tensor,
        *,
        embedding_size: int = 64,
        n_layers: int = 2,
        reg_weight: float = 1e-4,
        require_pow: bool = False,
        cl_weight: float = 1e-3,
        eps: float = 0.1,
        temperature: float = 0.2,
        perturb: str = "last",
        unique_nodes: bool = True,
        cl_reduction: str = "sum",
        excitation_hidden: Sequence[int] | None = None,
    ) -> None:
        super().__init__(
            n_users,
            n_items,
            train,
            embedding_size=embedding_size,
            n_layers=n_layers,
            reg_weight=reg_weight,
            require_pow=require_pow,
            cl_weight=cl_weight,
            eps=eps,
            temperature=temperature,
            perturb=perturb,
            unique_nodes=unique_nodes,
            cl_reduction=cl_reduction,
        )
        self.excitation = FeatureExcitation(embedding_size, excitation_hidden)

    def weight_views(self, view1: Tensor, view2: Tensor) -> tuple[Tensor, Tensor]:
        return self.excitation(view1), self.excitation(view2)


MODELS = {"lightgcn": LightGCN, "simgcl": SimGCL, "weightedgcl": WeightedGCL}

r"""Full-ranking top-K metrics with the user's known items masked out.

For every user with at least one held-out item, all items are scored, the items the user interacted with
in the parts used for training (and validation, at test time) are set to :math:`-\infty`, and the top K
are compared with the held-out set :math:`R(u)`:

.. math::

    \mathrm{Recall@K}(u) = \frac{|\mathrm{top}_K(u)\cap R(u)|}{|R(u)|},\qquad
    \mathrm{NDCG@K}(u) = \frac{\sum_{r=1}^{K} [\mathrm{top}_K(u)_r \in R(u)]/\log_2(r+1)}
    {\sum_{r=1}^{\min(|R(u)|,K)} 1/\log_2(r+1)}

averaged over those users. These are RecBole's ``Recall`` and ``NDCG`` (full sort): the recall
denominator is :math:`|R(u)|`, not :math:`\min(|R(u)|, K)`. Ties are broken by ``torch.topk``.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def _user_sets(pairs: Tensor, n_users: int) -> Sequence[Tensor]:
    """Per-user item tensors from ``(E, 2)`` pairs."""
    if pairs.numel() == 0:
        return [pairs.new_zeros(0) for _ in range(n_users)]
    order = torch.argsort(pairs[:, 0], stable=True)
    pairs = pairs[order]
    counts = torch.bincount(pairs[:, 0], minlength=n_users).tolist()
    return list(torch.split(pairs[:, 1], counts))


def topk_metrics(
    score_users: Callable[[Tensor], Tensor],
    n_users: int,
    n_items: int,
    held_out: Tensor,
    known: Sequence[Tensor],
    ks: Sequence[int] = (10, 20),
    batch_users: int = 1024,
) -> dict[str, float]:
    """Recall@K and NDCG@K over the users that have held-out items.

    Args:
        score_users: maps a ``(B,)`` tensor of user ids to ``(B, n_items)`` scores.
        n_users, n_items: the id ranges.
        held_out: ``(E, 2)`` ``(user, item)`` pairs to find.
        known: ``(E_k, 2)`` pair tensors whose items are masked (training, and validation at test time).
        ks: the cut-offs.
        batch_users: users scored at once.

    Returns:
        ``{"recall@K": ..., "ndcg@K": ..., "users": n}``.

    Raises:
        ValueError: no held-out pairs, or a K larger than the number of items.
    """
    if held_out.numel() == 0:
        raise ValueError("topk_metrics: held_out has no (user, item) pairs to evaluate")
    k_max = max(ks)
    if k_max > n_items:
        raise ValueError(f"topk_metrics: K={k_max} exceeds the number of items ({n_items})")
    known_pairs = torch.cat([p for p in known if p.numel()]) if any(p.numel() for p in known) else None
    held_sets = _user_sets(held_out, n_users)
    known_sets = _user_sets(known_pairs, n_users) if known_pairs is not None else None
    users = torch.tensor([u for u in range(n_users) if held_sets[u].numel()], dtype=torch.long)
    discounts = 1.0 / torch.log2(torch.arange(2, k_max + 2, dtype=torch.float64))
    ideal = torch.cumsum(discounts, 0)
    sums = {f"{name}@{k}": 0.0 for k in ks for name in ("recall", "ndcg")}
    for start in range(0, users.numel(), batch_users):
        batch = users[start : start + batch_users]
        scores = score_users(batch).clone()
        relevant = torch.zeros(scores.shape, dtype=torch.bool, device=scores.device)
        for row, user in enumerate(batch.tolist()):
            if known_sets is not None and known_sets[user].numel():
                scores[row, known_sets[user]] = float("-inf")
            relevant[row, held_sets[user]] = True
        top = torch.topk(scores, k_max, dim=1).indices
        hits = torch.gather(relevant, 1, top).double().cpu()
        n_relevant = relevant.sum(1).double().cpu()
        for k in ks:
            found = hits[:, :k]
            sums[f"recall@{k}"] += float((found.sum(1) / n_relevant).sum())
            dcg = (found * discounts[:k]).sum(1)
            best = ideal[(n_relevant.clamp(max=k) - 1).long()]
            sums[f"ndcg@{k}"] += float((dcg / best).sum())
    result = {key: value / users.numel() for key, value in sums.items()}
    result["users"] = int(users.numel())
    return result

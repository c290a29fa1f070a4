r"""Confidence intervals over seeds and the verdict rules of the claims section.

Every number in a study table is a mean over seeds with a two-sided 95% confidence interval from the
t-distribution with ``n - 1`` degrees of freedom: :math:`\bar x \pm t_{0.975,\,n-1}\, s/\sqrt n`.

Comparisons between two arms use the **paired** differences ``d_i = a_i - b_i`` over the seeds both arms
ran (seed ``i`` fixes the data order and the augmentation of both arms, so pairing removes that part of the
noise), with the same t-interval on the mean difference. The verdict rules, each with a practical
margin ``δ`` (the "negligible difference" of the task; the study uses 0.5 accuracy points for
classification and 0.01 Dice for segmentation):

* ``A > B``: **supported** if the interval's lower end is > 0; **not supported** if its upper end is < δ
  (any advantage of A is smaller than the margin, or A is worse); otherwise **inconclusive**.
* ``A ≥ B`` (A not worse): **supported** if the lower end is > -δ; **not supported** if the upper end is
  < 0 (A is worse); otherwise **inconclusive**.
* ``A ≈ B`` (equivalence within δ): **supported** if the whole interval lies within [-δ, δ];
  **not supported** if it lies entirely outside (lower end > δ or upper end < -δ); otherwise
  **inconclusive**.

With a single seed no interval exists and every comparison is inconclusive. A claim made of several parts
(e.g. "ECA ≥ SE > baseline") is supported when every part is, not supported when any part is not, and
inconclusive otherwise.

The t quantile is computed exactly for integer degrees of freedom from the closed-form Student-t CDF
(Abramowitz & Stegun 26.7.3-4) and bisection, so no SciPy is needed.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

SUPPORTED = "supported"
NOT_SUPPORTED = "not supported"
INCONCLUSIVE = "inconclusive"


def student_t_cdf(t: float, df: int) -> float:
    """P(T <= t) for Student's t with integer ``df`` >= 1 (A&S 26.7.3 for odd, 26.7.4 for even df)."""
    if df < 1 or int(df) != df:
        raise ValueError(f"student_t_cdf: df must be a positive integer, got {df}")
    theta = math.atan(abs(t) / math.sqrt(df))
    cos2 = math.cos(theta) ** 2
    if df % 2 == 1:
        series, term = 0.0, math.cos(theta)
        if df > 1:
            series = term
            for k in range(1, (df - 3) // 2 + 1):
                term *= cos2 * (2 * k) / (2 * k + 1)
                series += term
        inside = 2.0 / math.pi * (theta + math.sin(theta) * series)
    else:
        series, term = 1.0, 1.0
        for k in range(1, (df - 2) // 2 + 1):
            term *= cos2 * (2 * k - 1) / (2 * k)
            series += term
        inside = math.sin(theta) * series
    return 0.5 + math.copysign(inside / 2.0, t)


def student_t_quantile(p: float, df: int) -> float:
    """The ``p`` quantile of Student's t with integer ``df`` (bisection on :func:`student_t_cdf`)."""
    if not 0.0 < p < 1.0:
        raise ValueError(f"student_t_quantile: p must be in (0, 1), got {p}")
    if p < 0.5:
        return -student_t_quantile(1.0 - p, df)
    low, high = 0.0, 1.0
    while student_t_cdf(high, df) < p:
        high *= 2.0
    for _ in range(200):
        mid = 0.5 * (low + high)
        if student_t_cdf(mid, df) < p:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


@dataclass(frozen=True)
class Interval:
    """Mean, the 95% half-width (``nan`` for fewer than 2 values) and the number of values."""

    mean: float
    half_width: float
    n: int

    @property
    def low(self) -> float:
        return self.mean - self.half_width

    @property
    def high(self) -> float:
        return self.mean + self.half_width

    def format(self, scale: float = 1.0, digits: int = 2) -> str:
        if self.n == 0:
            return "n/a"
        if math.isnan(self.half_width):
            return f"{self.mean * scale:.{digits}f}"
        return f"{self.mean * scale:.{digits}f} ± {self.half_width * scale:.{digits}f}"

    def to_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "ci95": self.half_width, "n": self.n}


def mean_ci(values: Iterable[float], confidence: float = 0.95) -> Interval:
    """Mean and t-interval half-width ``t_{(1+c)/2, n-1} · s / sqrt(n)`` of finite ``values``."""
    finite = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    n = len(finite)
    if n == 0:
        return Interval(float("nan"), float("nan"), 0)
    mean = sum(finite) / n
    if n == 1:
        return Interval(mean, float("nan"), 1)
    variance = sum((v - mean) ** 2 for v in finite) / (n - 1)
    quantile = student_t_quantile(0.5 + confidence / 2.0, n - 1)
    return Interval(mean, quantile * math.sqrt(variance / n), n)


def paired_difference(a: dict[int, float], b: dict[int, float]) -> Interval:
    """The t-interval of ``a[seed] - b[seed]`` over the seeds present (and finite) in both."""
    seeds = sorted(set(a) & set(b))
    return mean_ci([a[s] - b[s] for s in seeds])


def _undecided(diff: Interval) -> bool:
    return diff.n < 2 or math.isnan(diff.half_width)


def verdict_greater(diff: Interval, margin: float) -> str:
    """Verdict on ``A > B`` from the interval of ``A - B`` (see the module docstring)."""
    if _undecided(diff):
        return INCONCLUSIVE
    if diff.low > 0:
        return SUPPORTED
    if diff.high < margin:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def verdict_not_worse(diff: Interval, margin: float) -> str:
    """Verdict on ``A ≥ B`` (non-inferiority with ``margin``) from the interval of ``A - B``."""
    if _undecided(diff):
        return INCONCLUSIVE
    if diff.low > -margin:
        return SUPPORTED
    if diff.high < 0:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def verdict_equivalent(diff: Interval, margin: float) -> str:
    """Verdict on ``A ≈ B`` (equivalence within ``margin``) from the interval of ``A - B``."""
    if _undecided(diff):
        return INCONCLUSIVE
    if -margin <= diff.low and diff.high <= margin:
        return SUPPORTED
    if diff.low > margin or diff.high < -margin:
        return NOT_SUPPORTED
    return INCONCLUSIVE


def combine(verdicts: Sequence[str]) -> str:
    """All parts supported → supported; any part not supported → not supported; else inconclusive."""
    if not verdicts:
        return INCONCLUSIVE
    if any(v == NOT_SUPPORTED for v in verdicts):
        return NOT_SUPPORTED
    if all(v == SUPPORTED for v in verdicts):
        return SUPPORTED
    return INCONCLUSIVE


def by_seed(records: Sequence[dict], key: str) -> dict[int, float]:
    """``{seed: record[key]}`` for the records that have a finite value."""
    out: dict[int, float] = {}
    for record in records:
        value: float | None = record.get(key)
        if value is not None and math.isfinite(float(value)):
            out[int(record["seed"])] = float(value)
    return out


def spearman(x: Sequence[float], y: Sequence[float]) -> float:
    """Spearman's rank correlation (average ranks for ties); ``nan`` for fewer than 2 points."""
    if len(x) < 2:
        return float("nan")

    def ranks(values: Sequence[float]) -> list[float]:
        order = sorted(range(len(values)), key=lambda i: values[i])
        result = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                result[order[k]] = (i + j) / 2.0
            i = j + 1
        return result

    rx, ry = ranks(x), ranks(y)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    vx = math.sqrt(sum((a - mx) ** 2 for a in rx))
    vy = math.sqrt(sum((b - my) ** 2 for b in ry))
    if vx == 0 or vy == 0:
        return float("nan")
    return cov / (vx * vy)

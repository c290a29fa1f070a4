"""Confidence intervals and verdict rules on constructed numbers."""

from __future__ import annotations

import math

import pytest

from excite.study import stats

# Two-sided 95% critical values of Student's t (any table, e.g. NIST/SEMATECH e-Handbook 1.3.6.7.2).
T_TABLE = {
    1: 12.706,
    2: 4.303,
    3: 3.182,
    4: 2.776,
    5: 2.571,
    6: 2.447,
    9: 2.262,
    10: 2.228,
    19: 2.093,
    29: 2.045,
}


@pytest.mark.parametrize("df,critical", sorted(T_TABLE.items()))
def test_t_quantile_matches_the_published_table(df, critical):
    assert stats.student_t_quantile(0.975, df) == pytest.approx(critical, abs=6e-4)


def test_t_cdf_closed_forms():
    # df = 1 is the Cauchy distribution, df = 2 has F(t) = 1/2 + t / (2 sqrt(2 + t²)).
    for t in (-3.0, -0.4, 0.0, 0.7, 5.0):
        assert stats.student_t_cdf(t, 1) == pytest.approx(0.5 + math.atan(t) / math.pi)
        assert stats.student_t_cdf(t, 2) == pytest.approx(0.5 + t / (2 * math.sqrt(2 + t * t)))
    assert stats.student_t_quantile(0.025, 4) == pytest.approx(-2.776, abs=6e-4)


def test_t_quantile_against_scipy_when_available():
    scipy_stats = pytest.importorskip("scipy.stats")
    for df in (1, 2, 3, 7, 15, 40):
        for p in (0.6, 0.9, 0.975, 0.995):
            assert stats.student_t_quantile(p, df) == pytest.approx(scipy_stats.t.ppf(p, df), rel=1e-7)


def test_mean_ci_by_hand():
    values = [0.80, 0.84, 0.83]
    mean = sum(values) / 3
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 2)
    interval = stats.mean_ci(values)
    assert interval.mean == pytest.approx(mean)
    assert interval.half_width == pytest.approx(4.303 * sd / math.sqrt(3), rel=2e-4)
    assert interval.n == 3
    single = stats.mean_ci([0.5, float("nan"), None])
    assert single.n == 1 and math.isnan(single.half_width)
    assert stats.mean_ci([]).n == 0


def test_paired_difference_uses_common_seeds():
    a = {0: 0.90, 1: 0.92, 2: 0.91, 3: 0.99}
    b = {0: 0.88, 1: 0.89, 2: 0.90}
    diff = stats.paired_difference(a, b)
    assert diff.n == 3
    assert diff.mean == pytest.approx((0.02 + 0.03 + 0.01) / 3)
    # Pairing removes the seed effect: same differences, large shared offsets.
    offset = {s: v + 10 * s for s, v in b.items()}
    assert stats.paired_difference({s: a[s] + 10 * s for s in b}, offset).half_width == pytest.approx(
        diff.half_width
    )


def _interval(low: float, high: float) -> stats.Interval:
    return stats.Interval((low + high) / 2, (high - low) / 2, 3)


@pytest.mark.parametrize(
    "low,high,expected",
    [
        (0.001, 0.02, stats.SUPPORTED),
        (-0.02, 0.004, stats.NOT_SUPPORTED),  # any gain is below the margin 0.005
        (-0.03, -0.01, stats.NOT_SUPPORTED),
        (-0.01, 0.03, stats.INCONCLUSIVE),
    ],
)
def test_verdict_greater(low, high, expected):
    assert stats.verdict_greater(_interval(low, high), 0.005) == expected


@pytest.mark.parametrize(
    "low,high,expected",
    [
        (-0.004, 0.01, stats.SUPPORTED),
        (-0.03, -0.001, stats.NOT_SUPPORTED),
        (-0.02, 0.01, stats.INCONCLUSIVE),
    ],
)
def test_verdict_not_worse(low, high, expected):
    assert stats.verdict_not_worse(_interval(low, high), 0.005) == expected


@pytest.mark.parametrize(
    "low,high,expected",
    [
        (-0.004, 0.004, stats.SUPPORTED),
        (0.006, 0.02, stats.NOT_SUPPORTED),
        (-0.03, -0.006, stats.NOT_SUPPORTED),
        (-0.002, 0.01, stats.INCONCLUSIVE),
    ],
)
def test_verdict_equivalent(low, high, expected):
    assert stats.verdict_equivalent(_interval(low, high), 0.005) == expected


def test_one_seed_is_always_inconclusive():
    one = stats.Interval(0.5, float("nan"), 1)
    for rule in (stats.verdict_greater, stats.verdict_not_worse, stats.verdict_equivalent):
        assert rule(one, 0.005) == stats.INCONCLUSIVE


def test_combine_and_spearman():
    assert stats.combine([stats.SUPPORTED, stats.SUPPORTED]) == stats.SUPPORTED
    assert stats.combine([stats.SUPPORTED, stats.INCONCLUSIVE]) == stats.INCONCLUSIVE
    assert stats.combine([stats.INCONCLUSIVE, stats.NOT_SUPPORTED]) == stats.NOT_SUPPORTED
    assert stats.combine([]) == stats.INCONCLUSIVE
    assert stats.spearman([1, 2, 3, 4], [10, 20, 25, 100]) == pytest.approx(1.0)
    assert stats.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # Ties get average ranks: ranks (1.5, 1.5, 3) vs (1, 2, 3).
    assert stats.spearman([1, 1, 2], [1, 2, 3]) == pytest.approx(0.8660254, rel=1e-6)

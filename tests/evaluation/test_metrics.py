"""success@K and the interval around success@1."""

import itertools
import math

import pytest

from vla.evaluation.metrics import success_at_k, wilson_interval


def brute_force(outcomes, k):
    """The share of all K-subsets of episodes that hold at least one success."""
    subsets = list(itertools.combinations(outcomes, k))
    return sum(any(s) for s in subsets) / len(subsets)


@pytest.mark.parametrize("n, c", [(5, 0), (5, 1), (5, 3), (8, 2), (6, 6)])
def test_success_at_k_counts_subsets_of_attempts(n, c):
    outcomes = [True] * c + [False] * (n - c)
    for k in range(1, n + 1):
        assert success_at_k(n, c, k) == pytest.approx(brute_force(outcomes, k))
    assert success_at_k(n, c, 1) == pytest.approx(c / n)
    assert success_at_k(n, c, n + 1) is None


def test_bad_counts_are_refused():
    with pytest.raises(ValueError):
        success_at_k(3, 4, 1)
    with pytest.raises(ValueError):
        success_at_k(3, 1, 0)


def test_wilson_interval_is_sound_at_the_edges():
    lo, hi = wilson_interval(20, 20)
    assert hi == pytest.approx(1.0) and 0.8 < lo < 0.9
    lo, hi = wilson_interval(20, 0)
    assert lo == pytest.approx(0.0) and 0.1 < hi < 0.2
    lo, hi = wilson_interval(100, 50)
    assert lo < 0.5 < hi and math.isclose(hi - 0.5, 0.5 - lo, rel_tol=1e-9)

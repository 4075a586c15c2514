"""Success figures from episode outcomes.

success@K is the chance that at least one of K attempts at a task succeeds. From n seeded
episodes with c successes it is estimated without bias as 1 - C(n-c, K) / C(n, K) (the
estimator behind pass@k); success@1 is the plain success rate.
"""

from __future__ import annotations

import math


def success_at_k(n: int, c: int, k: int) -> float | None:
    """Unbiased success@k from ``c`` successes in ``n`` episodes; None when k > n."""
    if not 0 <= c <= n:
        raise ValueError(f"successes must be within 0..{n}, got {c}")
    if k < 1:
        raise ValueError(f"k must be >= 1, got {k}")
    if k > n:
        return None
    if n - c < k:
        return 1.0
    return 1.0 - math.comb(n - c, k) / math.comb(n, k)


def wilson_interval(n: int, c: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval for a success rate (sound at 0% and 100% with few episodes)."""
    if n == 0:
        return (0.0, 1.0)
    p = c / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    return (max(0.0, centre - half), min(1.0, centre + half))

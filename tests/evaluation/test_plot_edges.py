"""`vla eval`'s success plot at the edges: 100/100 and 0/100 (the Wilson edge rounds past the rate)."""

from __future__ import annotations

import attrs
import pytest

from vla.evaluation.cli import summarize
from vla.evaluation.media import plot_success


@attrs.define
class _Run:
    success: bool
    seed: int = 0
    duration_s: float = 1.0
    interrupted: bool = False
    counts: dict = attrs.field(factory=dict)
    info: dict = attrs.field(factory=dict)


@pytest.mark.parametrize("success", [True, False])
def test_all_or_nothing_plots(tmp_path, success):
    results = summarize({"lift": [_Run(success) for _ in range(100)]}, [1, 5], robot="sim", merge="rtc", policy="p")
    assert plot_success(results, tmp_path / "success.png").stat().st_size > 1000

"""The action queue: tick alignment, stale actions, and the three merge modes."""

import numpy as np
import pytest

from vla.client.queue import LATEST, RTC, WEIGHTED_AVERAGE, ActionQueue


def chunk(values, dim=2):
    return np.repeat(np.asarray(values, dtype=float)[:, None], dim, axis=1)


def test_pop_follows_ticks_and_drops_passed_targets():
    q = ActionQueue(2)
    q.merge(chunk([1, 2, 3, 4]), chunk_start=1, next_tick=1, mode=LATEST, chunk_id=7, last_command=np.zeros(2))
    action, source, expired = q.pop(1)
    assert action[0] == 1 and source == 7 and expired == 0
    # tick 2 was missed: its target is dropped, never executed later
    action, _, expired = q.pop(3)
    assert action[0] == 3 and expired == 1
    assert q.length_from(4) == 1
    assert q.pop(5) == (None, None, 1)


def test_latest_replaces_the_plan_and_drops_stale_actions():
    q = ActionQueue(2)
    q.merge(chunk([0, 0, 0, 0, 0, 0]), chunk_start=1, next_tick=1, mode=LATEST, chunk_id=1, last_command=np.zeros(2))
    q.pop(1), q.pop(2)
    # observed after tick 2, arrived before tick 5 runs: targets for ticks 3 and 4 are stale
    q.pop(3), q.pop(4)
    info = q.merge(chunk([3, 4, 5, 6, 7]), chunk_start=3, next_tick=5, mode=LATEST, chunk_id=2,
                   last_command=np.zeros(2))
    assert info.stale == 2 and info.first_tick == 5
    assert [q.pop(t)[0][0] for t in (5, 6, 7)] == [5, 6, 7]
    assert q.pop(8)[0] is None  # the old plan beyond the new chunk is gone too
    assert info.discontinuity == pytest.approx(5.0)


def test_weighted_average_blends_the_overlap_030_070():
    q = ActionQueue(2)
    q.merge(chunk([10] * 6), chunk_start=1, next_tick=1, mode=LATEST, chunk_id=1, last_command=np.zeros(2))
    info = q.merge(chunk([0] * 8), chunk_start=1, next_tick=3, mode=WEIGHTED_AVERAGE, chunk_id=2,
                   last_command=np.full(2, 10.0))
    # old plan held ticks 1..6; new chunk ticks 1..8; ticks 3..6 overlap
    assert info.overlap == 4 and info.first_tick == 3
    values = [q.pop(t)[0][0] for t in range(3, 9)]
    assert values == pytest.approx([3.0, 3.0, 3.0, 3.0, 0.0, 0.0])
    assert info.plan_change == pytest.approx(7.0)


def test_rtc_keeps_the_old_plan_for_the_inference_delay():
    q = ActionQueue(2)
    q.merge(chunk(np.arange(1, 21)), chunk_start=1, next_tick=1, mode=LATEST, chunk_id=1, last_command=np.zeros(2))
    for t in range(1, 6):
        q.pop(t)
    # request after tick 5 with d=3; reply merged before tick 7 (one tick early)
    q.pop(6)
    new = chunk(np.arange(100, 120))
    info = q.merge(new, chunk_start=6, next_tick=7, mode=RTC, chunk_id=2, last_command=chunk([6])[0],
                   inference_delay=3)
    assert info.first_tick == 9 and info.stale == 3
    popped = [q.pop(t) for t in (7, 8, 9, 10)]
    assert [a[0] for a, _, _ in popped] == [7, 8, 103, 104]  # old through tick 8, new from tick 9 = 6 + 3
    assert [source for _, source, _ in popped] == [1, 1, 2, 2]


def test_rtc_late_reply_drops_what_has_passed_and_never_opens_a_gap():
    q = ActionQueue(1)
    q.merge(np.arange(1, 4, dtype=float)[:, None], chunk_start=1, next_tick=1, mode=LATEST, chunk_id=1,
            last_command=np.zeros(1))
    # the old plan ends after tick 3, the delay said 5: the new chunk takes over at tick 4
    info = q.merge(np.arange(100, 110, dtype=float)[:, None], chunk_start=1, next_tick=2, mode=RTC, chunk_id=2,
                   last_command=np.zeros(1), inference_delay=5)
    assert info.first_tick == 4
    assert [q.pop(t)[0][0] for t in (2, 3, 4, 5)] == [2, 3, 103, 104]


def test_merge_refuses_unknown_modes_and_chunks_from_the_future():
    q = ActionQueue(1)
    with pytest.raises(ValueError, match="merge mode"):
        q.merge(np.zeros((2, 1)), 1, 1, "newest", 1, np.zeros(1))
    with pytest.raises(ValueError, match="cannot arrive"):
        q.merge(np.zeros((2, 1)), 5, 1, LATEST, 1, np.zeros(1))

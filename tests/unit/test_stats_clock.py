"""The engine busy-time clock's history (stats.py): bounded, pruned in O(1) amortised, the last hour always kept."""

import pytest

from batchmt_server.telemetry.stats import Stats


def test_busy_clock_history_keeps_the_last_hour_and_stays_bounded():
    now = [0.0]
    stats = Stats(clock=lambda: now[0])
    for i in range(40_000):  # a change every 0.5 s for 5.5 hours, 0 and 1 prompts in flight in turn
        now[0] = i * 0.5
        stats.set_prompts_in_flight(i % 2)
    history = stats._ps
    assert history[0][0] <= now[0] - 3600  # the last hour is all there
    assert len(history) <= 2 * 7200 + 2  # and at most about two (pruned once half of it is older than an hour)
    # a call of the last 10 s: one prompt in flight half of that time
    assert stats.record_prompt(sentences=1, requests=1, ok=True, seconds=10.0) == pytest.approx(5.0)

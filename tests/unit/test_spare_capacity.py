"""The one spare-capacity controller (pipeline/spare_capacity.py) that the job worker and the batcher share."""

from __future__ import annotations

import asyncio

import pytest

from batchmt_server.pipeline.spare_capacity import SpareCapacity


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(maximum: int = 16, *, minimum: int = 1, halve_every_s: float = 0.0, grow_every_s: float = 0.5):
    clock, load = Clock(), [0]
    cap = SpareCapacity(
        maximum,
        minimum=minimum,
        pressure=lambda: load[0],
        halve_every_s=halve_every_s,
        grow_every_s=grow_every_s,
        clock=clock,
    )
    return cap, clock, load


def test_halves_at_every_look_under_pressure_down_to_the_minimum():
    cap, _, load = make(16, minimum=2)
    load[0] = 3
    assert [cap.current() for _ in range(5)] == [8, 4, 2, 2, 2]


def test_halves_at_most_once_per_halve_every_s():
    cap, clock, load = make(16, halve_every_s=0.125)  # steps exact in binary floating point
    load[0] = 1
    clock.now += 0.125
    assert cap.current() == 8
    clock.now += 0.0625
    assert cap.current() == 8  # too soon for the next halving
    clock.now += 0.0625
    assert cap.current() == 4


def test_grows_by_one_per_grow_every_s_without_pressure_up_to_the_maximum():
    cap, clock, load = make(8, grow_every_s=0.25)
    load[0] = 1
    assert cap.current() == 4
    load[0] = 0
    clock.now += 0.2
    assert cap.current() == 4  # not yet
    values = []
    for _ in range(6):
        clock.now += 0.25
        values.append(cap.current())
    assert values == [5, 6, 7, 8, 8, 8]


def test_pressure_resets_the_growth_timer():
    cap, clock, load = make(8, grow_every_s=0.5)
    load[0] = 1
    cap.current()  # 4, timer reset now
    load[0] = 0
    clock.now += 0.4
    assert cap.current() == 4
    clock.now += 0.1
    assert cap.current() == 5


def test_back_off_halves_whatever_the_pressure_and_set_maximum_restarts_at_the_ceiling():
    cap, _, _ = make(8, minimum=3)
    assert cap.back_off() == 4 and cap.back_off() == 3 and cap.back_off() == 3
    cap.set_maximum(12)
    assert cap.value == cap.maximum == 12
    with pytest.raises(ValueError):
        cap.set_maximum(2)
    with pytest.raises(ValueError):
        SpareCapacity(2, minimum=3, pressure=lambda: 0, grow_every_s=1.0)


async def test_worker_and_batcher_use_it_on_the_same_signal():
    from batchmt_server.engines.fake import FakeEngine
    from helpers import running_gateway

    async with running_gateway(FakeEngine(), max_prompts_in_flight=8) as (_, app):
        gw, jobs = app.state.gateway, app.state.jobs
        while jobs.worker is None:  # started once the gateway is ready
            await asyncio.sleep(0.01)
        for capacity in (gw.batcher.job_capacity, jobs.worker.capacity):
            assert isinstance(capacity, SpareCapacity)
            assert capacity.pressure() == gw.batcher.interactive_active == 0
        assert jobs.worker.cap == jobs.worker.capacity.value

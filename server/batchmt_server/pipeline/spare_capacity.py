"""Batch jobs run in the capacity interactive callers leave: one controller, one AIMD.

:class:`SpareCapacity` is a cap on job work in flight, between ``minimum`` and ``maximum``. While interactive work
is waiting (``pressure() > 0``: interactive sentences queued or in flight) the cap halves, at most once per
``halve_every_s``; while there is none it grows back by one every ``grow_every_s``. The two places that hold job
work back each have one, on the same signal:

- the job worker (jobs/worker.py): job *lines* in flight (halves at every look, grows by one per 0.5 s);
- the batcher (pipeline/batcher.py): job *prompts* in flight (halves at most every 0.1 s, grows by one per 0.25 s);
- admission (pipeline/translator.py, ``Translator.job_capacity``): job *ensemble sentence-rounds* in flight (they go
  to the engine beside the batcher; halves at most every 0.1 s, grows by one per 0.25 s, on the interactive
  sentences and ensemble rounds). A job line over it gets ``429 queue_full``, and the worker gives it back.

Below both, the engine runs job prompts at a lower vLLM priority than interactive ones.
"""

from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["SpareCapacity"]


class SpareCapacity:
    def __init__(
        self,
        maximum: int,
        *,
        pressure: Callable[[], int],
        grow_every_s: float,
        halve_every_s: float = 0.0,
        minimum: int = 1,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not 1 <= minimum <= maximum:
            raise ValueError(f"need 1 <= minimum ({minimum}) <= maximum ({maximum})")
        self.maximum, self.minimum = maximum, minimum
        self.pressure = pressure
        self.grow_every_s, self.halve_every_s = grow_every_s, halve_every_s
        self.clock = clock
        self.value = maximum  #: the cap now (read by /metrics)
        self._changed_at = clock()

    def current(self) -> int:
        """The cap, after this look's step: halve under pressure, else grow once its time has come."""
        now = self.clock()
        if self.pressure() > 0:
            if now - self._changed_at >= self.halve_every_s:
                self.value = max(self.minimum, self.value // 2)
                self._changed_at = now
        elif now - self._changed_at >= self.grow_every_s:
            self.value = min(self.maximum, self.value + 1)
            self._changed_at = now
        return self.value

    def back_off(self) -> int:
        """Halve now, whatever the pressure (the gateway refused job work: saturated or not ready)."""
        self.value = max(self.minimum, self.value // 2)
        return self.value

    def set_maximum(self, maximum: int) -> None:
        """A new ceiling; the cap starts there (benchmarks try several)."""
        if maximum < self.minimum:
            raise ValueError(f"maximum {maximum} is below the minimum {self.minimum}")
        self.maximum = self.value = maximum

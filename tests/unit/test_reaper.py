"""The reaper stops the engine's processes when the gateway dies without closing it (SIGKILL), and leaves them
alone on a clean close. Real processes stand in for vLLM's engine core and worker: a "gateway" process starts two
sleepers (one with a child of its own, as the engine core has its worker), one of which ignores SIGTERM, and hands
them to a Reaper. The engine-backed check is tests/integration/test_engine_death.py.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil

from batchmt_server.engines.reaper import _watched

GATEWAY = r"""
import json, subprocess, sys, time
import psutil
from batchmt_server.engines.reaper import Reaper, descendant_pids, spawned_since

before = descendant_pids()
stubborn = "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); time.sleep(300)"
parent = (
    "import subprocess, sys, time; "
    "subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(300)']); time.sleep(300)"
)
a = subprocess.Popen([sys.executable, "-c", stubborn])
b = subprocess.Popen([sys.executable, "-c", parent])
deadline = time.monotonic() + 20
while len(psutil.Process(b.pid).children()) < 1 and time.monotonic() < deadline:
    time.sleep(0.05)
engine = spawned_since(before)
reaper = Reaper(engine, grace_s=0.5)
print(json.dumps({"engine": sorted(p.pid for p in engine), "reaper": reaper.pid}), flush=True)
if sys.argv[1] == "close":
    reaper.close()
    print("closed", flush=True)
time.sleep(300)
"""


def _gone(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _start(mode: str) -> tuple[subprocess.Popen, dict]:
    proc = subprocess.Popen([sys.executable, "-c", GATEWAY, mode], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    info = json.loads(proc.stdout.readline())
    return proc, info


def test_sigkilled_gateway_takes_its_engine_processes_along():
    proc, info = _start("keep")
    try:
        engine = info["engine"]
        assert len(engine) == 3  # two sleepers and the child of one
        assert not any(_gone(pid) for pid in engine)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 15
        while not all(_gone(pid) for pid in engine) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert all(_gone(pid) for pid in engine), [pid for pid in engine if not _gone(pid)]  # the stubborn one too
        deadline = time.monotonic() + 5
        while not _gone(info["reaper"]) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _gone(info["reaper"])  # and the reaper left after its work
    finally:
        for pid in [proc.pid, *info.get("engine", [])]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_clean_close_leaves_the_processes_alone_and_the_reaper_exits():
    proc, info = _start("close")
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "closed"
        assert _gone(info["reaper"])
        os.kill(proc.pid, signal.SIGKILL)  # the gateway goes after a clean close: nothing may follow it
        proc.wait()
        time.sleep(1.5)
        assert not any(_gone(pid) for pid in info["engine"])
    finally:
        for pid in [proc.pid, *info["engine"]]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_a_reused_process_id_is_not_signalled():
    me = psutil.Process()
    assert [p.pid for p in _watched([f"{me.pid} {me.create_time()!r}"])] == [me.pid]
    assert _watched([f"{me.pid} {me.create_time() - 60!r}"]) == []  # same id, another start time: someone else
    assert _watched(["999999999 1.0"]) == []  # gone

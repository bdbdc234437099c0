"""Fixtures for the dashboard / cost / deploy tests.

``live_gateway`` is the session's real gateway (``gateway_url``: batchmt-server -> vLLM api_server) and
the URLs Prometheus scrapes. For development without loading engines, point the same tests at any
running gateway: ``BATCHMT_DASHBOARD_GATEWAY=http://127.0.0.1:PORT`` (e.g. ``--engine fake``); CI
leaves it unset. ``traffic`` keeps real translate requests flowing while a test runs.
"""

from __future__ import annotations

import os
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
ARTIFACTS = REPO / "test-artifacts"


def need_binary(name: str) -> str:
    """The path of a system tool the tests need; a clear failure (never a skip) when it is missing."""
    path = shutil.which(name)
    if path is None:
        pytest.fail(
            f"'{name}' is not installed: run `bash scripts/install-test-deps.sh` "
            "(apt-get install prometheus chromium chromium-driver); .ci/run does this before make test"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def source_sentences(limit: int = 2000) -> list[str]:
    root = Path(os.environ.get("BATCHMT_TEST_DATA", REPO.parent / "shared" / "data" / "newstest2021_ende"))
    path = root / "src.en"
    if not path.exists():
        pytest.fail(f"test data not found at {path}; set BATCHMT_TEST_DATA")
    lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    return [line for line in lines if line and len(line) < 400][:limit]


@dataclass
class Live:
    url: str  # the gateway
    scrape: list[tuple[str, str]] = field(default_factory=list)  # (job, host:port) for Prometheus
    real_engine: bool = True


@pytest.fixture(scope="session")
def live_gateway(request) -> Live:
    dev = os.environ.get("BATCHMT_DASHBOARD_GATEWAY")
    if dev:
        url = dev.rstrip("/")
        return Live(url, [("batchmt", url.split("://", 1)[1])], real_engine=False)
    gw = request.getfixturevalue("gateway_url")
    vllm = request.getfixturevalue("vllm_server")
    return Live(gw, [("batchmt", gw.split("://", 1)[1]), ("vllm", vllm.split("://", 1)[1])])


class Traffic:
    """Background callers: ``workers`` threads posting ``per_request`` sentences at a time, fresh ones
    first (the gateway's translation memory would answer repeats without engine work)."""

    def __init__(self, url: str, workers: int = 4, per_request: int = 3) -> None:
        self.url, self.workers, self.per_request = url, workers, per_request
        self.sentences = source_sentences()
        self._next = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self.ok = 0
        self.errors: list[str] = []
        self.usage_seen: list[dict] = []
        self._threads = [threading.Thread(target=self._run, daemon=True) for _ in range(workers)]

    def _batch(self) -> list[str]:
        with self._lock:
            i = self._next
            self._next += self.per_request
        n = len(self.sentences)
        return [self.sentences[(i + k) % n] for k in range(self.per_request)]

    def _run(self) -> None:
        with httpx.Client(timeout=300) as c:
            while not self._stop.is_set():
                try:
                    r = c.post(self.url + "/v1/translate", json={"sentences": self._batch()})
                    if r.status_code == 200:
                        self.ok += 1
                        self.usage_seen.append(r.json()["usage"])
                    else:
                        self.errors.append(f"{r.status_code} {r.text[:200]}")
                        time.sleep(0.5)
                except httpx.HTTPError as exc:
                    self.errors.append(repr(exc))
                    time.sleep(0.5)

    def start(self) -> Traffic:
        for t in self._threads:
            t.start()
        return self

    def wait_for(self, responses: int, timeout: float = 300) -> None:
        deadline = time.monotonic() + timeout
        while self.ok < responses:
            if time.monotonic() > deadline:
                pytest.fail(f"only {self.ok} translate responses in {timeout:.0f}s; errors: {self.errors[-3:]}")
            time.sleep(0.2)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=330)


@pytest.fixture
def traffic(live_gateway: Live):
    t = Traffic(live_gateway.url).start()
    yield t
    t.stop()


def wait_quiet(url: str, timeout: float = 120) -> None:
    """Until the gateway has nothing queued and nothing in flight (so its counters stand still)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        d = httpx.get(url + "/dashboard/data", timeout=10).json()
        if d["queue_depth"] == 0 and d["prompts_in_flight"] == 0:
            return
        time.sleep(0.2)
    pytest.fail("the gateway did not go quiet")

"""Small shared checks and helpers for the tests (no fixtures here)."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest

REPO = Path(__file__).resolve().parent.parent


def data_dir() -> Path:
    return Path(os.environ.get("BATCHMT_TEST_DATA", REPO.parent / "shared" / "data" / "newstest2021_ende"))


def read_lines(name: str, limit: int, skip: int = 0) -> list[str]:
    """``limit`` lines of the test set (read at run time: the data is not copied into the repo)."""
    path = data_dir() / name
    if not path.exists():
        pytest.fail(f"test data not found at {path}; set BATCHMT_TEST_DATA")
    with path.open(encoding="utf-8") as f:
        lines = [line.strip() for line in f]
    return [line for line in lines if line][skip : skip + limit]


_GERMAN = {
    "der",
    "die",
    "das",
    "und",
    "ist",
    "nicht",
    "ein",
    "eine",
    "mit",
    "von",
    "zu",
    "den",
    "dem",
    "auf",
    "für",
    "sich",
    "im",
    "es",
    "wir",
    "ich",
    "sie",
    "auch",
    "wird",
    "werden",
    "hat",
    "sind",
    "bei",
    "aus",
    "nach",
    "um",
    "noch",
    "wie",
    "dass",
    "einen",
    "einem",
    "zum",
    "zur",
    "vom",
    "ab",
    "am",
    "ihre",
    "sein",
}
_ENGLISH = {"the", "and", "is", "of", "to", "in", "that", "it", "with", "for", "was", "on", "are", "this", "have"}


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def looks_german(text: str) -> bool:
    """More German function words (or umlauts) than English ones."""
    w = words(text)
    de = sum(x in _GERMAN for x in w) + len(re.findall(r"[äöüß]", text.lower()))
    en = sum(x in _ENGLISH for x in w)
    return de > en


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (labels as written)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out


@asynccontextmanager
async def running_gateway(engine=None, *, wait_ready: bool = True, **settings) -> AsyncIterator[tuple]:
    """A gateway app on the fake engine (or ``engine``) with its lifespan running, and an httpx client on it:
    ``async with running_gateway(max_queue_sentences=2) as (client, app): ...``. Defaults suit unit tests:
    1 ms window, no warm-up prompt, no calibration."""
    from batchmt_server.app import create_app
    from batchmt_server.engines.fake import FakeEngine
    from batchmt_server.settings import Settings

    settings = {"max_wait_ms": 1, "warmup": False, "calibration": "off", **settings}
    app = create_app(Settings(engine="fake", **settings), engine=engine or FakeEngine())
    async with app.router.lifespan_context(app):
        if wait_ready:
            await asyncio.wait_for(app.state.gateway.ready.wait(), 10)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client, app

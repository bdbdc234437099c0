"""The dashboard's axes, legends and number formats in headless Chromium (issue 26: a hit-rate axis to 106%,
"p99 0.04" legends cut off, "12.3160k", "1.90e-4"), on the fake engine with prices set so that costs are tiny
non-zero amounts. The screenshot is kept in ``test-artifacts/dashboard-layout.png``. The real-engine test
(test_browser.py) runs the same layout checks."""

from __future__ import annotations

import threading
import time

import httpx
import pytest

from tests.helpers import GatewayProcess

from .conftest import ARTIFACTS
from .test_browser import CHARTS, STATE, WebDriver, browser, layout_problems  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]


@pytest.fixture
def priced_gateway(tmp_path):
    args = (
        "--data-dir",
        str(tmp_path / "data"),
        "--price-prompt-per-mtok",
        "0.15",
        "--price-cached-prompt-per-mtok",
        "0.015",
        "--price-completion-per-mtok",
        "0.6",
        "--fake-engine-delay-ms",
        "20",
    )
    with GatewayProcess(*args, log=tmp_path / "gateway.log") as gw:
        stop = threading.Event()

        def traffic() -> None:
            n = 0
            with httpx.Client(base_url=gw.url, timeout=30) as c:
                while not stop.is_set():
                    texts = [f"Sentence {n} of the dashboard test. It has two parts {k}." for k in range(3)]
                    c.post("/v1/translate", json={"texts": texts})
                    n += 1

        threads = [threading.Thread(target=traffic, daemon=True) for _ in range(3)]
        for t in threads:
            t.start()
        try:
            yield gw
        finally:
            stop.set()
            for t in threads:
                t.join(10)


def test_formats_axes_and_legends(browser: WebDriver, priced_gateway: GatewayProcess):  # noqa: F811
    browser.get(priced_gateway.url + "/dashboard?interval=0.5&window=4")
    deadline = time.monotonic() + 120
    state = None
    while time.monotonic() < deadline:
        state = browser.js(STATE, CHARTS)
        if state and state["state"] == "live" and state["samples"] >= 8:
            break
        time.sleep(0.5)
    assert state and state["state"] == "live", state
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard-layout.png").write_bytes(browser.screenshot())
    assert layout_problems(browser) == []
    f = "return window.batchmtDashboard.format"
    assert browser.js(f + ".fmt(12316)") == "12.3k"
    assert browser.js(f + ".fmt(1234567)") == "1.23M"
    assert browser.js(f + ".fmt(0.00004)") == "0.00004"
    assert browser.js(f + ".money(0.00019, 'USD')") == "0.00019 USD"
    assert browser.js(f + ".money(1.5, 'USD')") == "1.50 USD"
    assert browser.js(f + ".axisMax(0.93, 1)") == 1 and browser.js(f + ".axisMax(1.0, 1)") == 1
    assert browser.js(f + ".axisMax(0.043)") == 0.05
    # the tiles after real traffic: a cost in fixed notation, a hit rate at most 100%
    tiles = state["tiles"]
    assert "e-" not in tiles["t-cost"] and tiles["t-cost"].endswith(" USD") and tiles["t-cost"] != "0 USD"
    assert float(tiles["t-hit"].rstrip("%")) <= 100

"""The built-in dashboard in a real headless Chromium (Debian ``chromium`` + ``chromium-driver``,
driven over the W3C WebDriver protocol): after real traffic every chart draws data, the tiles show
the same totals as ``/v1/usage``, and a screenshot is kept in ``test-artifacts/dashboard.png``."""

from __future__ import annotations

import base64
import subprocess
import time

import httpx
import pytest

from .conftest import ARTIFACTS, Live, free_port, need_binary

pytestmark = [pytest.mark.engine, pytest.mark.timeout(900)]

CHARTS = ["c-throughput", "c-latency", "c-cost1k", "c-cost", "c-hit", "c-queue", "c-wait", "c-pack"]
CHROME_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--window-size=1600,1000",
]


class WebDriver:
    """Just enough of the W3C WebDriver protocol (no selenium dependency)."""

    def __init__(self, url: str, user_data_dir: str) -> None:
        self.http = httpx.Client(base_url=url, timeout=60)
        caps = {
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "goog:chromeOptions": {
                        "binary": need_binary("chromium"),
                        "args": [*CHROME_ARGS, f"--user-data-dir={user_data_dir}"],
                    },
                }
            }
        }
        r = self.http.post("/session", json=caps)
        assert r.status_code == 200, r.text
        self.session = f"/session/{r.json()['value']['sessionId']}"

    def _cmd(self, method: str, path: str, body: dict | None = None):
        r = self.http.request(method, self.session + path, json=body)
        assert r.status_code == 200, f"{path}: {r.text[:500]}"
        return r.json()["value"]

    def get(self, url: str) -> None:
        self._cmd("POST", "/url", {"url": url})

    def js(self, script: str, *args):
        return self._cmd("POST", "/execute/sync", {"script": script, "args": list(args)})

    def screenshot(self) -> bytes:
        return base64.b64decode(self._cmd("GET", "/screenshot"))

    def quit(self) -> None:
        try:
            self.http.delete(self.session)
        finally:
            self.http.close()


@pytest.fixture
def browser(tmp_path):
    driver_bin = need_binary("chromedriver")
    need_binary("chromium")
    port = free_port()
    ARTIFACTS.mkdir(exist_ok=True)
    log = (ARTIFACTS / "chromedriver.log").open("w")
    proc = subprocess.Popen(
        [driver_bin, f"--port={port}", "--allowed-ips=127.0.0.1"], stdout=log, stderr=subprocess.STDOUT
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            if httpx.get(url + "/status", timeout=2).json()["value"]["ready"]:
                break
        except (httpx.HTTPError, ValueError, KeyError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            pytest.fail("chromedriver did not start; see test-artifacts/chromedriver.log")
        time.sleep(0.2)
    driver = WebDriver(url, str(tmp_path / "chrome-profile"))
    try:
        yield driver
    finally:
        driver.quit()
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()


STATE = """
const d = window.batchmtDashboard;
if (!d) return null;
const charts = {};
for (const id of arguments[0]) {
  const svg = document.querySelector('#' + id + ' svg');
  charts[id] = svg ? {points: +svg.getAttribute('data-points'),
                      paths: [...svg.querySelectorAll('path.series')]
                               .map(p => [p.dataset.series, +p.dataset.points, p.getAttribute('d').length])}
                   : null;
}
const tiles = {};
for (const e of document.querySelectorAll('.tile .value')) tiles[e.id] = e.textContent;
return {state: document.body.dataset.state, samples: d.samples.length, errors: d.errors, charts, tiles,
        last_usage: d.samples.length ? d.samples[d.samples.length - 1].usage : null};
"""


def test_dashboard_draws_live_charts_in_headless_chromium(browser: WebDriver, live_gateway: Live, traffic):
    traffic.wait_for(2)
    browser.get(live_gateway.url + "/dashboard?interval=1&window=15")
    deadline = time.monotonic() + 240
    state = None
    while time.monotonic() < deadline:
        state = browser.js(STATE, CHARTS)
        if (
            state
            and state["state"] == "live"
            and state["samples"] >= 12
            and all(c and all(n >= 2 for _, n, _ in c["paths"]) for c in state["charts"].values())
        ):
            break
        time.sleep(1)
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "dashboard.png").write_bytes(browser.screenshot())
    assert state is not None, "the dashboard script did not run"
    assert state["state"] == "live" and state["errors"] == 0, state
    for chart_id, chart in state["charts"].items():
        assert chart is not None, f"{chart_id}: no SVG drawn"
        for series, points, d_len in chart["paths"]:
            assert points >= 2 and d_len > 10, f"{chart_id}/{series}: {points} points drawn ({state['charts']})"
    # the tiles show the same totals as /v1/usage (read by the page at its last poll)
    u = state["last_usage"]
    assert u["sentences"] > 0 and u["prompt_tokens"] > 0
    assert state["tiles"]["t-sentences"].replace("k", "") not in ("", "–", "0")
    assert u["currency"] in state["tiles"]["t-cost"]
    now = httpx.get(live_gateway.url + "/v1/usage", timeout=30).json()
    assert now["sentences"] >= u["sentences"] and now["cost"] >= u["cost"]
    png = (ARTIFACTS / "dashboard.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 20_000
    assert layout_problems(browser) == []


LAYOUT = r"""
const problems = [];
for (const box of document.querySelectorAll('.chart')) {
  const b = box.getBoundingClientRect();
  const items = [...box.querySelectorAll('.legend')];
  if (!items.length) problems.push(box.id + ': no legend');
  for (const e of items) {
    const r = e.getBoundingClientRect();
    if (r.left < b.left - 1 || r.right > b.right + 1 || r.top < b.top - 1 || r.bottom > b.bottom + 1)
      problems.push(box.id + ': legend "' + e.textContent + '" outside its chart');
  }
  for (let i = 1; i < items.length; i++) {
    const p = items[i - 1].getBoundingClientRect(), r = items[i].getBoundingClientRect();
    if (r.top < p.bottom - 1 && r.left < p.right - 1) problems.push(box.id + ': legends overlap');
  }
}
for (const t of document.querySelectorAll('#c-hit svg text')) {
  const m = t.textContent.match(/^([0-9.]+)%$/);
  if (m && parseFloat(m[1]) > 100) problems.push('hit-rate axis at ' + t.textContent);
}
for (const e of document.querySelectorAll('.tile .value, .chart text, .chart .legend')) {
  if (/[0-9]e[-+]?[0-9]/.test(e.textContent)) problems.push('exponent in "' + e.textContent + '"');
  if (/[0-9]\.[0-9]*0k/.test(e.textContent)) problems.push('trailing zeros in "' + e.textContent + '"');
}
return problems;
"""


def layout_problems(browser: WebDriver) -> list[str]:
    """What a reader of the screenshot would trip over: legends outside their chart or on top of each other, a
    hit-rate axis above 100%, numbers in exponent form ("1.90e-4") or with trailing zeros ("12.3160k")."""
    return browser.js(LAYOUT)


def test_dashboard_is_self_contained(live_gateway: Live):
    """No CDN: the page loads only files the gateway serves itself."""
    html = httpx.get(live_gateway.url + "/dashboard", timeout=30)
    assert html.status_code == 200 and "text/html" in html.headers["content-type"]
    assert "http://" not in html.text and "https://" not in html.text
    for asset in ("/dashboard/static/dashboard.js", "/dashboard/static/dashboard.css"):
        r = httpx.get(live_gateway.url + asset, timeout=30)
        assert r.status_code == 200 and len(r.text) > 500, asset
        assert "https://" not in r.text.replace("http://www.w3.org/2000/svg", "")

"""``/docs`` (Swagger UI 5) and ``/redoc`` render the gateway's OpenAPI 3.1 in a real headless Chromium.

Swagger UI 4 (the old swagger-ui-bundle package) answered FastAPI's 3.1 document with "Unable to render this
definition". Here both pages must show the operations and load nothing from another host (offline). Fake
engine: the pages need no model. Screenshots in ``test-artifacts/docs.png`` / ``redoc.png``."""

from __future__ import annotations

import time

import pytest

from tests.helpers import GatewayProcess

from .conftest import ARTIFACTS
from .test_browser import WebDriver, browser  # noqa: F401 (the fixture)

pytestmark = [pytest.mark.system, pytest.mark.timeout(300)]

PAGE_STATE = """
const text = document.body ? document.body.innerText : '';
const resources = performance.getEntriesByType('resource').map(e => [e.name, e.responseStatus]);
return {
  text: text.slice(0, 4000),
  swagger_ops: [...document.querySelectorAll('.opblock-summary-path')].map(e => e.innerText.trim()),
  redoc_ops: [...document.querySelectorAll('[data-section-id^="operation/"]')].length,
  // the whole page's text, not the 4000-character excerpt: the operations' docs grow
  translate_path: text.includes('/v1/translate'),
  resources: resources,
};
"""


@pytest.fixture
def gateway(tmp_path):
    with GatewayProcess("--data-dir", str(tmp_path / "data"), log=tmp_path / "gateway.log") as gw:
        yield gw


def _poll(driver: WebDriver, until, timeout: float = 60) -> dict:
    deadline = time.monotonic() + timeout
    state: dict = {}
    while time.monotonic() < deadline:
        state = driver.js(PAGE_STATE)
        if until(state):
            break
        time.sleep(0.5)
    return state


def _same_origin(state: dict, url: str, *, decorations: tuple[str, ...] = ()) -> None:
    """Everything the page loaded came from the gateway. ``decorations``: foreign URLs a bundle points at (ReDoc's
    "API docs by Redocly" logo) that the CSP (img-src 'self') must have blocked: never answered (status 0)."""
    loaded = [(name, status) for name, status in state["resources"] if name.startswith(url)]
    assert any(name.endswith(("swagger-ui-bundle.js", "redoc.standalone.js")) for name, _ in loaded), loaded
    foreign = [(name, status) for name, status in state["resources"] if not name.startswith(url)]
    assert all(name in decorations and status == 0 for name, status in foreign), f"not offline: {foreign}"


def test_swagger_ui_renders_the_openapi_31_operations(browser: WebDriver, gateway: GatewayProcess):  # noqa: F811
    browser.get(gateway.url + "/docs")
    state = _poll(browser, lambda s: "/v1/translate" in s["swagger_ops"] or "Unable to render" in s["text"])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "docs.png").write_bytes(browser.screenshot())
    assert "Unable to render" not in state["text"], state["text"][:500]
    assert "/v1/translate" in state["swagger_ops"], state
    assert "/v1/batches" in state["swagger_ops"] and len(state["swagger_ops"]) >= 8, state["swagger_ops"]
    assert "OAS 3.1" in state["text"]  # Swagger UI 5 shows the version it read
    _same_origin(state, gateway.url)


def test_redoc_renders_the_operations(browser: WebDriver, gateway: GatewayProcess):  # noqa: F811
    browser.get(gateway.url + "/redoc")
    state = _poll(browser, lambda s: s["redoc_ops"] > 0 or "Something went wrong" in s["text"])
    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / "redoc.png").write_bytes(browser.screenshot())
    assert "Something went wrong" not in state["text"], state["text"][:500]
    assert state["redoc_ops"] >= 8, state
    assert state["translate_path"], state["text"][:500]
    _same_origin(state, gateway.url, decorations=("https://cdn.redoc.ly/redoc/logo-mini.svg",))

"""Fixtures of the client tests.

Fixture names are prefixed (fake_server, mt_client, ...) so that they never shadow fixtures of
tests/conftest.py (e.g. the gateway fixtures used by test_integration_gateway.py).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sdk_fakes import FakeServer

import batchmt
from helpers import GatewayProcess, gateway_env


@pytest.fixture(autouse=True)
def _no_env(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unit tests must not depend on the developer's BATCHMT_* variables (the engine tests may)."""
    if request.node.get_closest_marker("engine") is not None:
        return
    monkeypatch.delenv("BATCHMT_BASE_URL", raising=False)
    monkeypatch.delenv("BATCHMT_API_KEY", raising=False)


@pytest.fixture
def fake_server() -> FakeServer:
    return FakeServer()


@pytest.fixture
def recorded_sleeps() -> list[float]:
    return []


@pytest.fixture
def make_mt_client(fake_server: FakeServer, recorded_sleeps: list[float]) -> Iterator[Callable[..., batchmt.Client]]:
    clients: list[batchmt.Client] = []

    def make(**kwargs: Any) -> batchmt.Client:
        kwargs.setdefault("base_url", "http://test")
        client = batchmt.Client(transport=fake_server.transport(), **kwargs)
        client._sleep = recorded_sleeps.append  # never really sleep
        clients.append(client)
        return client

    yield make
    for c in clients:
        c.close()


@pytest.fixture
def mt_client(make_mt_client: Callable[..., batchmt.Client]) -> batchmt.Client:
    return make_mt_client()


@pytest.fixture
def make_async_mt_client(fake_server: FakeServer, recorded_sleeps: list[float]) -> Callable[..., batchmt.AsyncClient]:
    def make(**kwargs: Any) -> batchmt.AsyncClient:
        kwargs.setdefault("base_url", "http://test")
        client = batchmt.AsyncClient(transport=fake_server.async_transport(), **kwargs)

        async def fake_sleep(seconds: float) -> None:
            recorded_sleeps.append(seconds)

        client._sleep = fake_sleep
        return client

    return make


@pytest.fixture(scope="module")
def fake_gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real ``batchmt-server`` process on the server's fake engine (``[de] <sentence>``), on loopback, with a
    store of its own (no translation memory from other runs); one per test module."""
    log = tmp_path_factory.mktemp("fake-gateway") / "server.log"
    store = tmp_path_factory.mktemp("store")
    with GatewayProcess("--data-dir", str(store), log=log, env=gateway_env()) as gw:
        yield gw.url

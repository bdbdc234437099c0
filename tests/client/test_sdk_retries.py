"""Which failures are retried, how often, and how long the client waits."""

from __future__ import annotations

import email.utils
import time

import httpx
import pytest
from sdk_fakes import error_response

import batchmt
from batchmt._base_client import MAX_RETRY_AFTER, parse_retry_after


@pytest.mark.parametrize("status", [408, 429, 500, 502, 503, 504])
def test_retryable_statuses_are_retried_then_succeed(fake_server, make_mt_client, recorded_sleeps, status):
    fake_server.script("/v1/translate", error_response(status, "x"), error_response(status, "x"))
    result = make_mt_client(max_retries=3).translate(["Hi."])
    assert result.texts == ["DE<Hi.>"]
    assert fake_server.paths().count("/v1/translate") == 3
    assert len(recorded_sleeps) == 2


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 413, 415, 422, 456])
def test_other_4xx_are_never_retried(fake_server, make_mt_client, recorded_sleeps, status):
    fake_server.script("/v1/translate", error_response(status, "x"))
    with pytest.raises(batchmt.APIError) as info:
        make_mt_client(max_retries=5).translate(["Hi."])
    assert info.value.status == status
    assert fake_server.paths().count("/v1/translate") == 1
    assert recorded_sleeps == []


def test_gives_up_after_max_retries_with_last_error(fake_server, make_mt_client, recorded_sleeps):
    fake_server.script("/v1/translate", *[error_response(503, "engine_unavailable") for _ in range(10)])
    with pytest.raises(batchmt.ServiceUnavailableError) as info:
        make_mt_client(max_retries=2).translate(["Hi."])
    assert info.value.code == "engine_unavailable"
    assert fake_server.paths().count("/v1/translate") == 3  # 1 + 2 retries
    assert len(recorded_sleeps) == 2


def test_max_retries_zero_sends_once(fake_server, make_mt_client, recorded_sleeps):
    fake_server.script("/v1/translate", error_response(500, "x"))
    with pytest.raises(batchmt.InternalServerError):
        make_mt_client(max_retries=0).translate(["Hi."])
    assert fake_server.paths().count("/v1/translate") == 1 and recorded_sleeps == []


@pytest.mark.parametrize(
    "exc",
    [
        httpx.ConnectError("refused"),
        httpx.ReadError("reset"),
        httpx.RemoteProtocolError("eof"),
        httpx.ReadTimeout("slow"),
        httpx.ConnectTimeout("slow"),
    ],
)
def test_connection_errors_and_timeouts_are_retried(fake_server, make_mt_client, recorded_sleeps, exc):
    fake_server.script("/v1/translate", exc)
    assert make_mt_client(max_retries=1).translate(["Hi."]).texts == ["DE<Hi.>"]
    assert fake_server.paths().count("/v1/translate") == 2
    assert len(recorded_sleeps) == 1


def test_unsupported_protocol_is_not_retried(fake_server, make_mt_client, recorded_sleeps):
    fake_server.script("/v1/translate", httpx.UnsupportedProtocol("nope"))
    with pytest.raises(batchmt.APIConnectionError):
        make_mt_client(max_retries=3).translate(["Hi."])
    assert recorded_sleeps == []


def test_retry_after_seconds_is_honoured(fake_server, make_mt_client, recorded_sleeps):
    fake_server.script("/v1/translate", error_response(429, "queue_full", headers={"Retry-After": "7"}))
    make_mt_client().translate(["Hi."])
    assert recorded_sleeps == [7.0]


def test_retry_after_http_date_is_honoured(fake_server, make_mt_client, recorded_sleeps):
    when = email.utils.formatdate(time.time() + 30, usegmt=True)
    fake_server.script("/v1/translate", error_response(503, "not_ready", headers={"Retry-After": when}))
    make_mt_client().translate(["Hi."])
    assert len(recorded_sleeps) == 1 and 27 <= recorded_sleeps[0] <= 30


def test_retry_after_is_capped(fake_server, make_mt_client, recorded_sleeps):
    fake_server.script("/v1/translate", error_response(429, "queue_full", headers={"Retry-After": "3600"}))
    make_mt_client().translate(["Hi."])
    assert recorded_sleeps == [MAX_RETRY_AFTER]


def test_retry_after_on_a_4xx_does_not_make_it_retryable(fake_server, make_mt_client, recorded_sleeps):
    fake_server.script("/v1/translate", error_response(422, "empty_sentence", headers={"Retry-After": "1"}))
    with pytest.raises(batchmt.UnprocessableEntityError):
        make_mt_client().translate(["Hi."])
    assert recorded_sleeps == []


def test_parse_retry_after_variants():
    assert parse_retry_after({"retry-after": "2.5"}) == 2.5
    assert parse_retry_after({"retry-after": "-3"}) == 0.0
    assert parse_retry_after({"retry-after-ms": "1500", "retry-after": "9"}) == 1.5
    assert parse_retry_after({"retry-after": "soon"}) is None
    assert parse_retry_after({}) is None
    past = email.utils.formatdate(time.time() - 100, usegmt=True)
    assert parse_retry_after({"retry-after": past}) == 0.0
    now = 1_000_000_000.0
    date = email.utils.formatdate(now + 12, usegmt=True)
    assert parse_retry_after({"retry-after": date}, now=now) == pytest.approx(12, abs=1)


def test_backoff_is_exponential_with_full_jitter_and_capped(fake_server, make_mt_client, recorded_sleeps):
    fake_server.script("/v1/translate", *[error_response(500, "x") for _ in range(7)])
    client = make_mt_client(max_retries=7)
    client._random = lambda: 0.999999  # upper edge of the jitter
    client.translate(["Hi."])
    assert recorded_sleeps == pytest.approx([0.5, 1, 2, 4, 8, 8, 8], rel=1e-4)

    recorded_sleeps.clear()
    fake_server.script("/v1/translate", *[error_response(500, "x") for _ in range(3)])
    client._random = lambda: 0.0  # full jitter reaches down to zero
    client.translate(["Hi."])
    assert recorded_sleeps == [0.0, 0.0, 0.0]


def test_backoff_jitter_stays_within_bounds(make_mt_client):
    client = make_mt_client()
    for attempt in range(8):
        ceiling = min(8.0, 0.5 * 2**attempt)
        delays = [client._backoff(attempt) for _ in range(200)]
        assert all(0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling / 2  # it is random, not constant zero


async def test_async_retries_honour_retry_after(fake_server, make_async_mt_client, recorded_sleeps):
    fake_server.script(
        "/v1/translate", error_response(429, "queue_full", headers={"Retry-After": "3"}), httpx.ConnectError("refused")
    )
    async with make_async_mt_client(max_retries=2) as client:
        result = await client.translate(["Hi."])
    assert result.texts == ["DE<Hi.>"]
    assert fake_server.paths().count("/v1/translate") == 3
    assert recorded_sleeps[0] == 3.0 and len(recorded_sleeps) == 2


async def test_async_does_not_retry_4xx(fake_server, make_async_mt_client, recorded_sleeps):
    fake_server.script("/v1/translate", error_response(401, "unauthorized"))
    async with make_async_mt_client(max_retries=3) as client:
        with pytest.raises(batchmt.AuthenticationError):
            await client.translate(["Hi."])
    assert recorded_sleeps == [] and fake_server.paths().count("/v1/translate") == 1


async def test_async_gives_up_with_connection_error(fake_server, make_async_mt_client, recorded_sleeps):
    fake_server.script("/v1/translate", *[httpx.ConnectError("refused") for _ in range(3)])
    async with make_async_mt_client(max_retries=2) as client:
        with pytest.raises(batchmt.APIConnectionError):
            await client.translate(["Hi."])
    assert fake_server.paths().count("/v1/translate") == 3 and len(recorded_sleeps) == 2


def test_a_409_batch_not_cancellable_is_not_retried_and_a_456_is_a_quota_error(
    fake_server, make_mt_client, recorded_sleeps
):
    fake_server.script("/v1/batches/batch_1/cancel", error_response(409, "batch_not_cancellable", "completed"))
    with pytest.raises(batchmt.ConflictError) as conflict:
        make_mt_client(max_retries=5).batches.cancel("batch_1")
    assert conflict.value.code == "batch_not_cancellable"
    assert fake_server.paths().count("/v1/batches/batch_1/cancel") == 1 and recorded_sleeps == []
    fake_server.script("/v1/translate", error_response(456, "quota_exceeded", "the daily quota is used up"))
    with pytest.raises(batchmt.QuotaExceededError) as quota:
        make_mt_client(max_retries=5).translate(["Hi."])
    assert quota.value.status == 456 and isinstance(quota.value, batchmt.APIError)
    assert fake_server.paths().count("/v1/translate") == 1 and recorded_sleeps == []

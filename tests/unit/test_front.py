"""The HTTP front (middleware.py) over the fake engine: auth before the body, body limits while reading,
request ids in responses and logs, security headers, redirects that stay on this host (issue 13: 2, 3, 11)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import logging
import time
from contextlib import asynccontextmanager

import httpx
import pytest

from batchmt_server.auth.keys import InProcessKeyStore, KeyRecord, KeyRing, file_key_id, hash_key, read_key_file
from batchmt_server.engines.fake import FakeEngine
from batchmt_server.http.app import create_app
from batchmt_server.http.middleware import json_depth_exceeds
from batchmt_server.settings import Settings
from batchmt_server.telemetry.observability import setup_logging
from helpers import parse_metrics

KEY = "test-key-0123456789abcdef"
USER_KEY = "user-key-0123456789abcdef"
DASH_KEY = "dash-key-0123456789abcdef"


@asynccontextmanager
async def front(keys: KeyRing | None = None, **settings):
    settings.setdefault("max_wait_ms", 1)
    settings.setdefault("warmup", False)
    settings.setdefault("calibration", "off")
    s = Settings(engine="fake", **settings)
    app = create_app(s, engine=FakeEngine(), keys=keys or KeyRing.from_settings(s))
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.gateway.ready.wait(), 5)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client, app


def ring() -> KeyRing:
    store = InProcessKeyStore()
    store._keys["k1"] = KeyRecord(id="k1", name="alice", key_hash=hash_key(USER_KEY), role="user")
    return KeyRing(
        store,
        [
            KeyRecord(id="env", name="env", key_hash=hash_key(KEY), role="admin", source="env"),
            KeyRecord(id="dash", name="dash", key_hash=hash_key(DASH_KEY), role="dashboard"),
        ],
        refresh_s=0.0,
    )


def auth(key: str, scheme: str = "Bearer") -> dict:
    return {"authorization": f"{scheme} {key}"}


async def test_without_a_key_every_endpoint_but_health_is_401_before_the_body_and_nothing_is_counted():
    async with front(ring()) as (c, app):
        for path in ("/v1/info", "/v1/usage", "/metrics", "/dashboard/data", "/docs", "/openapi.json", "/redoc"):
            r = await c.get(path)
            assert r.status_code == 401, path
            assert r.json() == {
                "error": {"code": "unauthorized", "message": "missing or invalid API key", "param": None}
            }
        # bad bodies get the same bare 401, not validation details
        for kwargs in (
            {"content": b"not json", "headers": {"content-type": "text/plain"}},
            {"content": b'{"sentences": [', "headers": {"content-type": "application/json"}},
            {"json": {"sentences": []}},
            {"json": {"sentences": ["Fine."]}},
        ):
            r = await c.post("/v1/translate", **kwargs)
            assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
            assert r.headers["connection"] == "close"
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/readyz")).status_code == 200
        usage = (await c.get("/v1/usage", headers=auth(KEY))).json()
        assert usage["requests"] == 0 and usage["characters"] == 0


async def test_bearer_is_case_insensitive_and_wrong_keys_fail():
    async with front(ring()) as (c, _):
        for scheme in ("Bearer", "bearer", "BEARER"):
            r = await c.post("/v1/translate", json={"sentences": ["Good morning."]}, headers=auth(KEY, scheme))
            assert r.status_code == 200, scheme
        for headers in (auth(KEY + "x"), auth(KEY[:-1]), auth(KEY, "Token"), {"authorization": KEY}):
            assert (await c.get("/v1/info", headers=headers)).status_code == 401


async def test_roles_user_key_not_metrics_dashboard_key_only_dashboard_metrics_token():
    async with front(ring(), metrics_token="scrape-token-0123") as (c, _):
        assert (await c.get("/v1/info", headers=auth(USER_KEY))).status_code == 200
        assert (await c.get("/metrics", headers=auth(USER_KEY))).status_code == 403
        assert (await c.get("/metrics", headers=auth("scrape-token-0123"))).status_code == 200
        assert (await c.get("/metrics", headers=auth(KEY))).status_code == 200
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/dashboard/data", headers=auth(DASH_KEY))).status_code == 200
        assert (await c.get("/v1/info", headers=auth(DASH_KEY))).status_code == 403
        # a browser sends the dashboard key as the password of Basic auth (asked for by WWW-Authenticate)
        r = await c.get("/dashboard/data")
        assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Basic")
        basic = base64.b64encode(f"anyone:{DASH_KEY}".encode()).decode()
        assert (await c.get("/dashboard/data", headers={"authorization": f"Basic {basic}"})).status_code == 200
        assert (await c.get("/v1/info", headers={"authorization": f"Basic {basic}"})).status_code == 403
        assert (await c.get("/dashboard/data", headers=auth(USER_KEY))).status_code == 403  # tenants: own usage only


async def test_metrics_token_alone_guards_metrics_without_keys():
    async with front(None, metrics_token="scrape-token-0123") as (c, _):
        assert (await c.get("/metrics")).status_code == 401
        assert (await c.get("/metrics", headers=auth("scrape-token-0123"))).status_code == 200
        assert (await c.post("/v1/translate", json={"sentences": ["Open."]})).status_code == 200


async def test_revoked_key_is_refused():
    keys = ring()
    async with front(keys) as (c, _):
        assert (await c.get("/v1/info", headers=auth(USER_KEY))).status_code == 200
        assert await keys.store.revoke_key("alice", time.time()) == 1
        assert (await c.get("/v1/info", headers=auth(USER_KEY))).status_code == 401


async def test_declared_oversized_body_is_413_before_reading_and_chunked_is_counted():
    async with front(max_body_bytes=4096) as (c, app):
        read = 0

        async def body():
            nonlocal read
            for _ in range(1000):
                read += 1
                yield b"x" * 1024

        r = await c.post("/v1/translate", content=b"x" * 5000, headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        r = await c.post("/v1/translate", content=body(), headers={"content-type": "application/json"})
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        assert read <= 6  # refused at the first chunk over the limit, not after 1000
        m = parse_metrics((await c.get("/metrics")).text)
        assert m.get('batchmt_requests_total{outcome="rejected"}', 0) == 0  # never reached the app


async def test_default_body_limit_fits_a_request_at_the_limits_in_escapes():
    async with front(max_sentences_per_request=4, max_text_chars=50) as (c, _):
        body = json.dumps({"sentences": ["\U0001f600" * 50] * 4}).encode()  # ensure_ascii: 12 bytes per char
        r = await c.post("/v1/translate", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 200, r.text
        r = await c.post("/v1/translate", content=body + b" " * 2048, headers={"content-type": "application/json"})
        assert r.status_code == 413


async def test_stalled_body_gets_408():
    async with front(body_timeout_s=0.3) as (c, _):

        async def stalled():
            yield b'{"sentences": ['
            await asyncio.sleep(5)
            yield b"]}"

        r = await asyncio.wait_for(
            c.post("/v1/translate", content=stalled(), headers={"content-type": "application/json"}), 3
        )
        assert r.status_code == 408 and r.json()["error"]["code"] == "request_timeout"


@pytest.mark.parametrize(
    "body,code",
    [
        (b'{"sentences": ["\xff\xfe broken"]}', "invalid_json"),
        (b'{"sentences": ' + b"[" * 5000 + b"]" * 5000 + b"}", "json_too_deep"),
    ],
)
async def test_invalid_utf8_and_deep_nesting_get_the_error_shape(body, code):
    async with front() as (c, _):
        r = await c.post("/v1/translate", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 400
        assert r.json()["error"]["code"] == code and set(r.json()) == {"error"}


def test_json_depth_counts_structure_not_brackets_in_strings():
    assert not json_depth_exceeds(b'{"sentences": ["[[[[[[[[[[[[[[[[[[[[{{{{{{{{{{{{"]}', 4)
    assert not json_depth_exceeds(b'{"a": [[1], [2, [3]]]}', 4)
    assert json_depth_exceeds(b'{"a": [[1], [2, [[3]]]]}', 4)
    assert json_depth_exceeds(b"[" * 100 + b"]" * 100, 16)
    assert not json_depth_exceeds(b"[" * 16 + b"]" * 16, 16)
    assert json_depth_exceeds(b'[{"x\\"]": ' * 20 + b"1" + b"}]" * 20, 16)


async def test_request_id_is_returned_and_in_every_log_line():
    stream = io.StringIO()
    handler = setup_logging("debug", "json", stream)
    try:
        async with front() as (c, _):
            r = await c.post("/v1/translate", json={"sentences": ["Morning."]}, headers={"x-request-id": "req-42.a"})
            assert r.headers["x-request-id"] == "req-42.a"
            logging.getLogger("batchmt.test").info("inside")
            r2 = await c.get("/healthz", headers={"x-request-id": "bad id with spaces"})
            assert len(r2.headers["x-request-id"]) == 32 and r2.headers["x-request-id"] != "bad id with spaces"
            r3 = await c.get("/nope")
            rid = r3.headers["x-request-id"]
            logging.getLogger("batchmt.test").warning("after")
    finally:
        logging.getLogger().removeHandler(handler)
    lines = [json.loads(x) for x in stream.getvalue().splitlines()]
    assert all("request_id" in x and "level" in x for x in lines)
    assert rid != "req-42.a"


async def test_log_lines_inside_a_request_carry_its_id():
    stream = io.StringIO()
    handler = setup_logging("debug", "text", stream)
    seen = []

    class Spy(logging.Handler):
        def emit(self, record):
            seen.append(getattr(record, "request_id", None))

    spy = Spy()
    spy.addFilter(handler.filters[0])
    logging.getLogger("batchmt").addHandler(spy)
    try:
        async with front(max_body_bytes=2048) as (c, _):
            await c.post(
                "/v1/translate",
                content=b"x" * 4000,
                headers={"x-request-id": "rid-777", "content-type": "application/json"},
            )
    finally:
        logging.getLogger("batchmt").removeHandler(spy)
        logging.getLogger().removeHandler(handler)
    assert "rid-777" in seen  # the refusal's log line
    assert "[rid-777]" in stream.getvalue()


async def test_security_headers_csp_on_html_and_no_redirect_to_a_forged_host():
    async with front() as (c, _):
        r = await c.get("/dashboard")
        assert r.status_code == 200
        assert r.headers["x-content-type-options"] == "nosniff" and r.headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in r.headers["content-security-policy"]
        assert "server" not in r.headers
        r = await c.get("/healthz/", headers={"host": "evil.example"}, follow_redirects=False)
        assert r.status_code in (301, 307, 308)
        assert r.headers["location"] == "/healthz"
        r = await c.get("//evil.example/healthz/", follow_redirects=False)
        assert not r.headers.get("location", "/").startswith("//")


def test_key_file_parsing(tmp_path):
    p = tmp_path / "keys"
    p.write_text("# ops\nalice:alice-key-0123456789:user\n\nroot-key-0123456789abc\n", encoding="utf-8")
    recs = read_key_file(p)
    assert [(r.name, r.role) for r in recs] == [("alice", "user"), (file_key_id("root-key-0123456789abc"), "admin")]
    assert recs[0].key_hash == hash_key("alice-key-0123456789") and "alice-key" not in repr(recs[0].public())
    p.write_text("bob:short\n", encoding="utf-8")
    with pytest.raises(ValueError):
        read_key_file(p)


async def test_uploads_stream_through_counted_and_are_refused_at_the_limit():
    async with front(job_max_file_bytes=4096, body_timeout_s=0.3) as (c, _):
        sent = 0

        async def big():
            nonlocal sent
            yield b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\n\r\n'
            for _ in range(1000):
                sent += 1
                yield b"x" * 1024

        ctype = {"content-type": "multipart/form-data; boundary=b"}
        r = await c.post("/v1/files", content=big(), headers=ctype)
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"
        assert sent <= 70  # refused at the limit (file limit + 64 KiB of form framing), not after 1000 chunks

        async def stalled():
            yield b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
            await asyncio.sleep(5)
            yield b"--b--\r\n"

        r = await asyncio.wait_for(c.post("/v1/files", content=stalled(), headers=ctype), 3)
        assert r.status_code == 408
        r = await c.post(
            "/v1/files",
            data={"purpose": "batch"},
            files={
                "file": (
                    "ok.jsonl",
                    b'{"custom_id": "a", "method": "POST", "url": "/v1/translate", "body": {"texts": ["Hello."]}}\n',
                    "application/jsonl",
                )
            },
        )
        assert r.status_code == 200, r.text


async def test_a_keys_request_rate_is_429_with_retry_after_before_the_body_is_read():
    store = InProcessKeyStore()
    store._keys["k2"] = KeyRecord(id="k2", name="slow", key_hash=hash_key(USER_KEY), role="user", rate_requests=2)
    async with front(KeyRing(store, refresh_s=0.0)) as (c, _):
        codes = [
            (await c.post("/v1/translate", json={"sentences": ["Quick."]}, headers=auth(USER_KEY))).status_code
            for _ in range(2)
        ]
        r = await c.post("/v1/translate", content=b"not even json", headers=auth(USER_KEY))
        assert codes == [200, 200]
        assert r.status_code == 429 and r.json()["error"]["code"] == "rate_limited" and r.headers["retry-after"] == "1"
        await asyncio.sleep(0.6)
        assert (
            await c.post("/v1/translate", json={"sentences": ["Later."]}, headers=auth(USER_KEY))
        ).status_code == 200

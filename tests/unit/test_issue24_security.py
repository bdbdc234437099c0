"""Issue 24's security and durability defects, each with the check that failed before its fix (fake engine)."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

import httpx
import pytest

from batchmt_server.auth.keys import KeyRecord, KeyRing, MemoryKeyStore, hash_key, read_key_file
from batchmt_server.engines.fake import FakeEngine
from batchmt_server.http.app import create_app
from batchmt_server.settings import Settings

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef"


def as_(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}


def jsonl(rows: list) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


def line(cid: str, *texts: str, **body) -> dict:
    return {"custom_id": cid, "method": "POST", "url": "/v1/translate", "body": {"texts": list(texts), **body}}


async def upload(c, content: bytes, headers: dict | None = None):
    return await c.post(
        "/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", content)}, headers=headers or {}
    )


@asynccontextmanager
async def gateway(keys: KeyRing | None = None, engine: FakeEngine | None = None, **settings):
    s = Settings(engine="fake", **{"max_wait_ms": 1, "warmup": False, "calibration": "off", **settings})
    app = create_app(s, engine=engine or FakeEngine(), keys=keys or KeyRing.from_settings(s))
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.gateway.ready.wait(), 5)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client, app


# ---------------------------------------------------------------------------- D2: auth never falls open
async def test_revoking_the_last_store_key_keeps_authentication_on():
    store = MemoryKeyStore()
    store._keys["a"] = KeyRecord(id="a", name="alice", key_hash=hash_key(ALICE), role="user")
    async with gateway(KeyRing(store, [], refresh_s=0.0)) as (c, _):
        f = (await upload(c, jsonl([line("x", "Hello there.")]), as_(ALICE))).json()
        assert await store.revoke_key("alice", time.time()) == 1
        for path in ("/v1/files", f"/v1/files/{f['id']}/content", "/v1/usage/keys", "/metrics", "/v1/info"):
            r = await c.get(path)
            assert r.status_code == 401, (path, r.text)  # was 200: anyone read alice's files
        assert (await c.post("/v1/translate", json={"texts": ["Hi."]})).status_code == 401
        assert (await c.get("/v1/files", headers=as_(ALICE))).status_code == 401
        assert (await c.get("/healthz")).status_code == 200


async def test_a_store_holding_only_revoked_keys_starts_with_authentication_on():
    """A restart after the last key was revoked: the revoked key still counts."""
    store = MemoryKeyStore()
    store._keys["a"] = KeyRecord(id="a", name="alice", key_hash=hash_key(ALICE), role="user", revoked_at=1.0)
    async with gateway(KeyRing(store, [], refresh_s=0.0)) as (c, _):
        assert (await c.get("/v1/info")).status_code == 401


async def test_require_api_key_turns_keys_on_before_any_key_exists():
    async with gateway(require_api_key=True) as (c, _):
        assert (await c.post("/v1/translate", json={"texts": ["Hi."]})).status_code == 401
        assert (await c.get("/readyz")).status_code == 200
    async with gateway() as (c, _):  # the default without any key: open, as before
        assert (await c.post("/v1/translate", json={"texts": ["Hi."]})).status_code == 200


# ---------------------------------------------------------------------------- D3: stable file-key ids
def test_file_key_ids_do_not_move_when_a_line_is_removed(tmp_path):
    p = tmp_path / "keys"
    p.write_text(f"alice:{ALICE}:user\nbob:{BOB}:user\n", encoding="utf-8")
    before = {r.name: r.id for r in read_key_file(p)}
    p.write_text(f"# alice dropped\nbob:{BOB}:user\n", encoding="utf-8")
    after = {r.name: r.id for r in read_key_file(p)}
    assert after["bob"] == before["bob"] and after["bob"] != before["alice"]
    p.write_text(f"{BOB}\n{ALICE}\n", encoding="utf-8")  # bare keys: the same ids as the named lines
    assert {r.id for r in read_key_file(p)} == set(before.values())
    p.write_text(f"a:{ALICE}\nb:{ALICE}\n", encoding="utf-8")
    with pytest.raises(ValueError, match="already"):
        read_key_file(p)


async def test_removing_a_key_file_line_does_not_hand_its_files_to_the_next_key(tmp_path):
    p = tmp_path / "keys"
    p.write_text(f"alice:{ALICE}:user\nbob:{BOB}:user\n", encoding="utf-8")
    data = tmp_path / "data"
    async with gateway(api_key_file=p, data_dir=data) as (c, _):
        f = (await upload(c, jsonl([line("x", "Alice's secret.")]), as_(ALICE))).json()
    p.write_text(f"bob:{BOB}:user\n", encoding="utf-8")  # alice's key dropped, as an operator drops a key
    async with gateway(api_key_file=p, data_dir=data) as (c, _):
        assert (await c.get(f"/v1/files/{f['id']}/content", headers=as_(BOB))).status_code == 404
        assert (await c.get("/v1/files", headers=as_(BOB))).json()["data"] == []

"""Issue 24's security and durability defects, each with the check that failed before its fix (fake engine)."""

from __future__ import annotations

import asyncio
import json
import time
from contextlib import asynccontextmanager

import httpx
import pytest

from batchmt_server.auth.keys import InProcessKeyStore, KeyRecord, KeyRing, hash_key, read_key_file
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
async def gateway(
    keys: KeyRing | None = None, engine: FakeEngine | None = None, *, store_keys: bool = False, **settings
):
    """``store_keys``: keys and usage in the gateway's own store (as ``batchmt-server`` runs), not in memory."""
    from batchmt_server.stores.keys import open_key_store

    s = Settings(engine="fake", **{"max_wait_ms": 1, "warmup": False, "calibration": "off", **settings})
    keys = keys or KeyRing.from_settings(s, open_key_store(s) if store_keys else None)
    app = create_app(s, engine=engine or FakeEngine(), keys=keys)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.gateway.ready.wait(), 5)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client, app


# ---------------------------------------------------------------------------- D2: auth never falls open
async def test_revoking_the_last_store_key_keeps_authentication_on():
    store = InProcessKeyStore()
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
    store = InProcessKeyStore()
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


# ---------------------------------------------------------------------------- D4, D5: charge what runs, once
def quota_ring(**limits) -> tuple[KeyRing, InProcessKeyStore]:
    store = InProcessKeyStore()
    store._keys["a"] = KeyRecord(id="a", name="alice", key_hash=hash_key(ALICE), role="user", **limits)
    return KeyRing(store, [], refresh_s=0.0), store


async def test_a_request_refused_with_queue_full_is_not_charged():
    keys, _ = quota_ring(chars_per_day=1000)
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    async with gateway(keys, eng, max_queue_sentences=2, max_prompts_in_flight=1, max_sentences_per_prompt=1) as (
        c,
        _,
    ):
        first = asyncio.create_task(
            c.post("/v1/translate", json={"texts": ["One is here.", "Two is here."]}, headers=as_(ALICE))
        )
        while not eng.prompts:
            await asyncio.sleep(0.005)
        for _ in range(5):  # an SDK retrying its 429s
            r = await c.post("/v1/translate", json={"texts": ["Four is here.", "Five is here."]}, headers=as_(ALICE))
            assert r.status_code == 429 and r.json()["error"]["code"] == "queue_full"
        eng.gate.set()
        assert (await first).status_code == 200
        today = (await c.get("/v1/usage", headers=as_(ALICE))).json()["today"]
        assert today == {"characters": 24, "sentences": 2, "requests": 1}  # the first request only


async def test_a_request_lost_with_the_engine_is_refunded():
    keys, _ = quota_ring(chars_per_day=1000)
    eng = FakeEngine()
    async with gateway(keys, eng) as (c, _):
        eng.dead = True
        r = await c.post("/v1/translate", json={"texts": ["Hello there."]}, headers=as_(ALICE))
        assert r.status_code == 503 and r.json()["error"]["code"] == "engine_unavailable"
        assert (await c.get("/v1/usage", headers=as_(ALICE))).json()["today"]["characters"] == 0


@pytest.mark.parametrize(("quality", "rounds"), [("fast", 1), ("balanced", 3), ("best", 5)])
async def test_batch_lines_are_charged_like_translate_requests(quality, rounds):
    keys, _ = quota_ring(chars_per_day=10_000)
    async with gateway(keys) as (c, _):
        r = await c.post("/v1/translate", json={"texts": ["x" * 40], "quality": quality}, headers=as_(ALICE))
        assert r.status_code == 200
        direct = (await c.get("/v1/usage", headers=as_(ALICE))).json()["today"]["characters"]
        f = (await upload(c, jsonl([line("a", "y" * 40, quality=quality)]), as_(ALICE))).json()
        r = await c.post(
            "/v1/batches",
            json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"},
            headers=as_(ALICE),
        )
        assert r.status_code == 200, r.text
        total = (await c.get("/v1/usage", headers=as_(ALICE))).json()["today"]["characters"]
        assert direct == 40 * rounds and total - direct == direct


# ---------------------------------------------------------------------------- D6, D11: the JSONL reader
def test_jsonl_lines_split_only_at_newline_and_a_bom_is_not_line_one():
    from batchmt_server.jobs.serving import validate_lines

    texts = ["a\u2028b", "c\u2029d", "e\x85f", "g\x1ch\x1di\x1ej", "k\x0bl\x0cm"]
    rows = [
        json.dumps(
            {"custom_id": f"c{i}", "method": "POST", "url": "/v1/translate", "body": {"texts": [t]}}, ensure_ascii=False
        )
        for i, t in enumerate(texts)
    ]
    content = ("\ufeff" + "\r\n".join(rows) + "\n").encode("utf-8")  # a BOM, CRLF line ends, separators raw
    out = validate_lines(content, Settings())
    assert [(ln.line_no, ln.custom_id, ln.error_output) for ln in out] == [(i + 1, f"c{i}", None) for i in range(5)]
    assert [json.loads(ln.body)["texts"] for ln in out] == [[t] for t in texts]


# ---------------------------------------------------------------------------- an engine bug stays in its prompt
class BuggyEngine(FakeEngine):
    """Raises a plain exception (an engine bug, not an EngineError) on every prompt holding "BOOM"."""

    async def generate(self, prompt, params):
        if "BOOM" in prompt.rsplit("\n\n", 1)[-1] or any("BOOM" in s for s in self.query_sources(prompt)):
            raise AssertionError("engine bug")
        return await super().generate(prompt, params)


@pytest.mark.parametrize("quality", ["fast", "best"])
async def test_an_engine_exception_that_is_not_an_engine_error_fails_only_its_own_slot(quality):
    async with gateway(engine=BuggyEngine()) as (c, _):
        texts = ["Hello there, friend.", "The BOOM sentence is here.", "It rains today in town."]
        r = await c.post("/v1/translate", json={"texts": texts, "quality": quality})
        assert r.status_code == 200, r.text  # was 500 on the ensemble path
        got = r.json()["translations"]
        assert [t["status"] for t in got] == ["ok", "failed", "ok"]
        assert got[0]["text"] == "[de] Hello there, friend." and got[2]["text"] == "[de] It rains today in town."
        assert got[1]["error"]["code"] == "engine_error"


# ---------------------------------------------------------------------------- D8: slow uploads
async def _trickle(c, stop: asyncio.Event, headers: dict | None = None):
    async def body():
        yield b'--b\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n'
        yield b'--b\r\nContent-Disposition: form-data; name="file"; filename="x.jsonl"\r\n\r\n'
        while not stop.is_set():
            yield b"{"  # one byte at a time, each well within the idle timeout
            await asyncio.sleep(0.05)
        yield b"\r\n--b--\r\n"

    return await c.post(
        "/v1/files", content=body(), headers={"content-type": "multipart/form-data; boundary=b", **(headers or {})}
    )


async def test_an_upload_trickled_byte_by_byte_is_cut_at_the_whole_body_deadline():
    async with gateway(body_timeout_s=1.0, upload_timeout_s=0.6) as (c, _):
        t0 = time.monotonic()
        r = await asyncio.wait_for(_trickle(c, asyncio.Event()), 5)  # never ends by itself
        assert r.status_code == 408 and r.json()["error"]["code"] == "request_timeout", r.text
        assert "did not arrive within" in r.json()["error"]["message"]
        assert time.monotonic() - t0 < 2.0


async def test_concurrent_uploads_per_key_are_capped():
    store = InProcessKeyStore()
    store._keys["a"] = KeyRecord(id="a", name="alice", key_hash=hash_key(ALICE), role="user")
    store._keys["b"] = KeyRecord(id="b", name="bob", key_hash=hash_key(BOB), role="user")
    async with gateway(KeyRing(store, [], refresh_s=0.0), max_concurrent_uploads=2) as (c, _):
        stop = asyncio.Event()
        slow = [asyncio.ensure_future(_trickle(c, stop, as_(ALICE))) for _ in range(2)]
        await asyncio.sleep(0.2)
        r = await upload(c, jsonl([line("x", "Hello there.")]), as_(ALICE))
        assert r.status_code == 429 and r.json()["error"]["code"] == "too_many_uploads"
        assert (await upload(c, jsonl([line("x", "Hello there.")]), as_(BOB))).status_code == 200  # others unaffected
        stop.set()
        await asyncio.gather(*slow)
        assert (await upload(c, jsonl([line("x", "Hello there.")]), as_(ALICE))).status_code == 200  # places freed


# ---------------------------------------------------------------------------- D9: the memory is per tenant
async def test_memory_hits_never_reveal_another_tenants_sentences(tmp_path):
    store = InProcessKeyStore()
    store._keys["a"] = KeyRecord(id="a", name="alice", key_hash=hash_key(ALICE), role="user")
    store._keys["b"] = KeyRecord(id="b", name="bob", key_hash=hash_key(BOB), role="user")
    eng = FakeEngine()
    async with gateway(KeyRing(store, [], refresh_s=0.0), eng, data_dir=tmp_path) as (c, _):
        body = {"texts": ["The merger with the harbour company is agreed."]}
        assert (await c.post("/v1/translate", json=body, headers=as_(ALICE))).json()["usage"]["memory_hits"] == 0
        r = (await c.post("/v1/translate", json=body, headers=as_(BOB))).json()
        assert r["usage"]["memory_hits"] == 0  # was 1: bob learnt that someone had translated it
        assert r["translations"][0]["status"] == "ok"
        again = (await c.post("/v1/translate", json=body, headers=as_(ALICE))).json()
        assert again["usage"]["memory_hits"] == 1  # alice's own memory still works
        assert len(eng.prompts) == 2


# ---------------------------------------------------------------------------- D10: literal masks in the input
@pytest.mark.parametrize("preserve", [True, False])
async def test_a_literal_tag_mask_in_html_input_translates(preserve):
    async with gateway() as (c, _):
        for text in ("<p>See [TAG_1] and <b>this</b> here.</p>", "<p>Keep [TAG_2] [PH_1] and <i>that</i> too.</p>"):
            r = await c.post(
                "/v1/translate", json={"texts": [text], "tag_handling": "html", "preserve_placeholders": preserve}
            )
            got = r.json()["translations"][0]
            assert got["status"] == "ok", got  # was failed (placeholder_damaged) without placeholder detection
            assert got["text"] == text.replace("<p>", "<p>[de] ")


# ---------------------------------------------------------------------------- D12: the batch's model
async def test_the_batch_object_names_the_engines_real_model():
    async with gateway(engine=FakeEngine(model_name="fake-model-7")) as (c, _):
        f = (await upload(c, jsonl([line("a", "Hello there.")]))).json()
        r = await c.post(
            "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
        )
        assert r.json()["model"] == "fake-model-7"
        assert (await c.get(f"/v1/batches/{r.json()['id']}")).json()["model"] == "fake-model-7"


def test_the_docs_prose_gives_the_job_line_cap_the_setting_has():
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "api.md").read_text(encoding="utf-8")
    default = Settings.model_fields["job_max_lines_in_flight"].default
    assert f"`--job-max-lines-in-flight` lines ({default})" in text


# ---------------------------------------------------------------------------- D7: storage as a managed resource
async def test_the_openai_package_deletes_a_file():
    import openai

    async with gateway() as (c, app):
        f = (await upload(c, jsonl([line("a", "Hello there.")]))).json()
        client = openai.AsyncOpenAI(
            base_url="http://t/v1",
            api_key="unused",
            max_retries=0,
            http_client=httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t"),
        )
        gone = await client.files.delete(f["id"])  # was 405: the method was not there
        assert gone.id == f["id"] and gone.deleted is True
        with pytest.raises(openai.NotFoundError):
            await client.files.retrieve(f["id"])
        with pytest.raises(openai.NotFoundError):
            await client.files.delete(f["id"])
        assert (await c.get("/v1/files")).json()["data"] == []


async def test_deleting_a_batchs_files_deletes_its_lines_and_another_tenant_cannot_delete():
    store = InProcessKeyStore()
    store._keys["a"] = KeyRecord(id="a", name="alice", key_hash=hash_key(ALICE), role="user")
    store._keys["b"] = KeyRecord(id="b", name="bob", key_hash=hash_key(BOB), role="user")
    async with gateway(KeyRing(store, [], refresh_s=0.0)) as (c, app):
        f = (await upload(c, jsonl([line("a", "Hello there."), {"custom_id": "bad"}]), as_(ALICE))).json()
        assert (await c.delete(f"/v1/files/{f['id']}", headers=as_(BOB))).status_code == 404
        b = (
            await c.post(
                "/v1/batches",
                json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"},
                headers=as_(ALICE),
            )
        ).json()
        assert (await c.delete(f"/v1/files/{f['id']}", headers=as_(ALICE))).json()["deleted"] is True
        for _ in range(200):  # the batch runs on: its lines were taken when it was created
            b = (await c.get(f"/v1/batches/{b['id']}", headers=as_(ALICE))).json()
            if b["status"] == "completed":
                break
            await asyncio.sleep(0.05)
        assert b["status"] == "completed" and b["request_counts"] == {"total": 2, "completed": 1, "failed": 1}
        st = app.state.jobs.store
        assert sum((await st.open_lines(b["id"])).values()) == 2
        for fid in (b["output_file_id"], b["error_file_id"]):
            assert (await c.delete(f"/v1/files/{fid}", headers=as_(ALICE))).status_code == 200
        assert await st.open_lines(b["id"]) == {}  # the lines went with the last of its files


async def test_a_keys_storage_limit_holds_and_deleting_frees_it():
    keys, _ = quota_ring()
    async with gateway(keys, max_storage_bytes_per_key=400) as (c, _):
        content = jsonl([line("a", "x" * 100)])  # ~150 bytes
        first = (await upload(c, content, as_(ALICE))).json()
        assert (await upload(c, content, as_(ALICE))).status_code == 200
        r = await upload(c, content, as_(ALICE))
        assert r.status_code == 413 and r.json()["error"]["code"] == "storage_limit_exceeded"
        await c.delete(f"/v1/files/{first['id']}", headers=as_(ALICE))
        assert (await upload(c, content, as_(ALICE))).status_code == 200


async def test_files_and_batch_outputs_expire_and_the_sweep_deletes_them():
    async with gateway(retention_sweep_s=0.05) as (c, app):
        r = await c.post(
            "/v1/files",
            data={"purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": "3600"},
            files={"file": ("in.jsonl", jsonl([line("a", "Hello there.")]))},
        )
        f = r.json()
        assert f["expires_at"] == f["created_at"] + 3600
        bad = await c.post(
            "/v1/files",
            data={"purpose": "batch", "expires_after[anchor]": "created_at", "expires_after[seconds]": "10"},
            files={"file": ("in.jsonl", jsonl([line("a", "Hello there.")]))},
        )
        assert bad.status_code == 422 and bad.json()["error"]["code"] == "invalid_expires_after"
        default = (await upload(c, jsonl([line("a", "Hi.")]))).json()
        assert default["expires_at"] == default["created_at"] + 30 * 86400  # OpenAI's default for batch files
        b = (
            await c.post(
                "/v1/batches",
                json={
                    "input_file_id": f["id"],
                    "endpoint": "/v1/translate",
                    "completion_window": "24h",
                    "output_expires_after": {"anchor": "created_at", "seconds": 7200},
                },
            )
        ).json()
        for _ in range(200):
            b = (await c.get(f"/v1/batches/{b['id']}")).json()
            if b["status"] == "completed":
                break
            await asyncio.sleep(0.05)
        out = (await c.get(f"/v1/files/{b['output_file_id']}")).json()
        assert out["expires_at"] == out["created_at"] + 7200
        st = app.state.jobs.store
        assert await st.delete_expired_files(f["created_at"] + 3600) == 1  # the upload; the output lives on
        assert (await c.get(f"/v1/files/{f['id']}")).status_code == 404
        assert (await c.get(f"/v1/files/{b['output_file_id']}/content")).status_code == 200
        # the sweep task runs on its own: a file already expired goes within a few sweeps
        from batchmt_server.stores import FileRecord

        await st.put_file(FileRecord("file-old", "batch", "old.jsonl", 3, 1, expires_at=2), b"{}\n")
        for _ in range(100):
            if await st.get_file("file-old") is None:
                break
            await asyncio.sleep(0.02)
        assert await st.get_file("file-old") is None


@pytest.fixture
def small_fs(tmp_path):
    """A 24 MiB filesystem of its own (tmpfs; the tests run as root, as CI does)."""
    import subprocess

    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mnt)], check=True)
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(path, chunk: int = 256 * 1024) -> int:
    """Write ``path`` until the disk is full; bytes written."""
    n = 0
    with open(path, "wb") as f:
        try:
            while True:
                f.write(b"\0" * chunk)
                f.flush()
                n += chunk
        except OSError:
            pass
    return n


async def test_uploads_stop_at_the_disk_reserve_and_keyed_requests_go_on(small_fs, tmp_path):
    keyfile = tmp_path / "keys"
    keyfile.write_text(f"alice:{ALICE}:user\n", encoding="utf-8")
    async with gateway(
        api_key_file=keyfile,
        data_dir=small_fs,
        min_free_disk_bytes=8 * 1024**2,
        job_max_file_bytes=4 * 1024**2,
        store_keys=True,
    ) as (c, _):
        big = jsonl([line(str(i), "x" * 900) for i in range(3000)])  # ~3.3 MB
        codes = [(await upload(c, big, as_(ALICE))).status_code for _ in range(8)]
        assert 200 in codes and codes[-1] == 507, codes  # refused before a byte is written, not a disk error
        r = await upload(c, big, as_(ALICE))
        assert r.json()["error"]["code"] == "storage_full" and "retry-after" in r.headers
        r = await c.post("/v1/translate", json={"texts": ["Hello there."]}, headers=as_(ALICE))
        assert r.status_code == 200, r.text  # keyed requests (usage writes) still have room


async def test_a_full_disk_gives_507_turns_readyz_not_ready_and_loses_nothing(small_fs, tmp_path):
    keyfile = tmp_path / "keys"
    keyfile.write_text(f"alice:{ALICE}:user\n", encoding="utf-8")
    async with gateway(api_key_file=keyfile, data_dir=small_fs, min_free_disk_bytes=0, store_keys=True) as (c, _):
        content = jsonl([line("a", "Keep this one safe.")])
        f = (await upload(c, content, as_(ALICE))).json()
        assert (await c.post("/v1/translate", json={"texts": ["Hi."]}, headers=as_(ALICE))).status_code == 200
        filler = small_fs / "filler"
        _fill(filler)
        codes = []
        for i in range(200):  # the store's log may still have room for a few writes: until it has none
            r = await c.post("/v1/translate", json={"texts": [f"Hello there, number {i}."]}, headers=as_(ALICE))
            codes.append(r.status_code)
            if r.status_code != 200:
                break
        assert r.status_code == 507, (codes, r.text)  # was a plain-text 500 (database or disk is full)
        assert r.json()["error"]["code"] == "storage_full"
        delivered = len(codes) - 1
        r = await upload(c, jsonl([line("b", "y" * 5000)]), as_(ALICE))
        assert r.status_code == 507 and r.json()["error"]["code"] == "storage_full"  # the real error, not a rollback's
        ready = await c.get("/readyz")
        assert ready.status_code == 503 and ready.json()["error"]["code"] == "not_ready"  # was 200
        filler.unlink()
        assert (await c.get("/readyz")).status_code == 200
        assert (await c.post("/v1/translate", json={"texts": ["Hello there."]}, headers=as_(ALICE))).status_code == 200
        got = await c.get(f"/v1/files/{f['id']}/content", headers=as_(ALICE))
        assert got.content == content  # nothing acknowledged was lost
        usage = (await c.get("/v1/usage", headers=as_(ALICE))).json()["today"]
        assert usage["requests"] == 2 + delivered  # the refused request was not counted


# ---------------------------------------------------------------------------- revocation stops a tenant's work
async def test_revoking_a_key_cancels_its_running_batches():
    admin = "admin-key-0123456789abcdef"
    store = InProcessKeyStore()
    store._keys["a"] = KeyRecord(id="a", name="alice", key_hash=hash_key(ALICE), role="user")
    store._keys["b"] = KeyRecord(id="b", name="bob", key_hash=hash_key(BOB), role="user")
    ring = KeyRing(
        store, [KeyRecord(id="adm", name="admin", key_hash=hash_key(admin), role="admin", source="env")], refresh_s=0.1
    )
    eng = FakeEngine()
    eng.gate = asyncio.Event()  # nothing finishes: the batches stay in progress
    async with gateway(ring, eng) as (c, _):
        batches = {}
        for who in (ALICE, BOB):
            f = (await upload(c, jsonl([line(str(i), f"Sentence number {i}.") for i in range(20)]), as_(who))).json()
            create = {"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
            batches[who] = (await c.post("/v1/batches", json=create, headers=as_(who))).json()["id"]
        assert await store.revoke_key("alice", time.time()) == 1  # as `batchmt-server keys revoke alice` does
        status = {}
        for _ in range(100):  # no request from anyone needed: the gateway notices by itself
            status = {
                w: (await c.get(f"/v1/batches/{b}", headers=as_(admin))).json()["status"] for w, b in batches.items()
            }
            if status[ALICE] in ("cancelling", "cancelled"):
                break
            await asyncio.sleep(0.05)
        assert status[ALICE] in ("cancelling", "cancelled") and status[BOB] == "in_progress", status
        eng.gate.set()


# ---------------------------------------------------------------------------- packing and sharing across tenants
def two_tenants() -> KeyRing:
    store = InProcessKeyStore()
    store._keys["a"] = KeyRecord(id="a", name="alice", key_hash=hash_key(ALICE), role="user")
    store._keys["b"] = KeyRecord(id="b", name="bob", key_hash=hash_key(BOB), role="user")
    return KeyRing(store, [], refresh_s=0.0)


async def test_an_identical_sentence_in_flight_is_not_shared_across_tenants():
    """Coalescing two tenants' identical sentence gave the second zero usage: it learnt the other had sent it."""
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    async with gateway(two_tenants(), eng) as (c, _):
        body = {"texts": ["The board approved the secret merger today."], "translation_memory": False}
        first = asyncio.ensure_future(c.post("/v1/translate", json=body, headers=as_(ALICE)))
        while not eng.prompts:
            await asyncio.sleep(0.005)
        second = asyncio.ensure_future(c.post("/v1/translate", json=body, headers=as_(BOB)))
        await asyncio.sleep(0.1)
        eng.gate.set()
        a, b = (await first).json(), (await second).json()
        assert a["usage"]["prompt_tokens"] > 0 and b["usage"]["prompt_tokens"] > 0  # bob's was 0 (coalesced)
        assert sum(body["texts"][0] in p for p in eng.prompts) == 2


@pytest.mark.parametrize("cross", [True, False])
async def test_cross_tenant_packing_is_a_setting(cross):
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    async with gateway(two_tenants(), eng, cross_tenant_packing=cross, max_prompts_in_flight=1) as (c, _):
        hold = asyncio.ensure_future(c.post("/v1/translate", json={"texts": ["Wait here."]}, headers=as_(ALICE)))
        while not eng.prompts:
            await asyncio.sleep(0.005)
        mine = {ALICE: [f"Alice says thing {i}." for i in range(3)], BOB: [f"Bob says thing {i}." for i in range(3)]}
        calls = [
            asyncio.ensure_future(c.post("/v1/translate", json={"texts": t}, headers=as_(k))) for k, t in mine.items()
        ]
        await asyncio.sleep(0.1)  # both queued behind the held prompt
        eng.gate.set()
        for r in [await hold, *[await x for x in calls]]:
            assert r.status_code == 200 and all(t["status"] == "ok" for t in r.json()["translations"])
        mixed = [p for p in eng.prompts if any(s in mine[ALICE] for s in p) and any(s in mine[BOB] for s in p)]
        assert bool(mixed) == cross, eng.prompts


async def test_the_sqlite_store_keeps_the_retention_contract(tmp_path):
    from batchmt_server.stores.sqlite import SQLiteStore
    from helpers import check_retention

    store = SQLiteStore(tmp_path / "s.sqlite3")
    await store.open()
    try:
        await check_retention(store)
    finally:
        await store.close()

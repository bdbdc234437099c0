"""The translation memory as a product (issue 27 item 4, issue 23): TMX/TSV import, TMX export, purge, human entries
pinned and preferred, per-key scopes, limits; the store's side on SQLite (tests/deploy/test_postgres_store.py has
PostgreSQL's). Fake engine: a sentence the engine translates comes back as ``[de] <English>``."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from contextlib import asynccontextmanager
from pathlib import Path

import httpx
import pytest
from lxml import etree

from batchmt_server.auth.keys import InProcessKeyStore, KeyRecord, KeyRing, hash_key
from batchmt_server.engines.fake import FakeEngine
from batchmt_server.http.app import create_app
from batchmt_server.memory.formats import parse_tmx, parse_tsv
from batchmt_server.memory.serving import mask_pair
from batchmt_server.pipeline.memory import TranslationMemory
from batchmt_server.settings import Settings
from batchmt_server.stores.base import migrations
from batchmt_server.stores.sqlite import SQLiteStore, _statements
from helpers import check_memory_store

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "memory_sample.tmx"
ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef"
ADMIN = "admin-key-0123456789abcdef"
XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"

LIGHTHOUSE = "Our lighthouse tours start at the blue gate every morning."
TICKET = "Please keep your ticket until the ferry has docked."
SAVE = "Press Save before you close the harbour map."
CABIN = "Hello {name}, your cabin is ready."


def as_(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}


@asynccontextmanager
async def gateway(keys: KeyRing | None = None, engine: FakeEngine | None = None, **settings):
    s = Settings(engine="fake", **{"max_wait_ms": 1, "warmup": False, "calibration": "off", **settings})
    app = create_app(s, engine=engine or FakeEngine(), keys=keys or KeyRing.from_settings(s))
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.gateway.ready.wait(), 60)  # a loaded machine: generous
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
            yield client, app


def keyring() -> KeyRing:
    store = InProcessKeyStore()
    store._keys["a"] = KeyRecord(id="a", name="alice", key_hash=hash_key(ALICE), role="user")
    store._keys["b"] = KeyRecord(id="b", name="bob", key_hash=hash_key(BOB), role="user")
    store._keys["root"] = KeyRecord(id="root", name="admin", key_hash=hash_key(ADMIN), role="admin")
    return KeyRing(store, [], refresh_s=0.0)


async def import_file(c, content: bytes, name: str = "tm.tmx", headers: dict | None = None, **fields):
    return await c.post("/v1/memory/import", files={"file": (name, content)}, data=fields, headers=headers or {})


async def translate(c, texts: list[str], headers: dict | None = None, **body) -> dict:
    r = await c.post("/v1/translate", json={"texts": texts, **body}, headers=headers or {})
    assert r.status_code == 200, r.text
    return r.json()


def tmx_pairs(text: str) -> list[tuple[str, str, str]]:
    """(origin, English, German) of every unit of an exported TMX."""
    root = etree.fromstring(text.encode())
    out = []
    for tu in root.find("body").iterfind("tu"):
        origin = next(p.text for p in tu.iterfind("prop") if p.get("type") == "x-batchmt-origin")
        en, de = (tuv.find("seg").text for tuv in tu.iterfind("tuv"))
        out.append((origin, en, de))
    return out


# ---------------------------------------------------------------------------- formats
def test_tmx_reads_the_english_and_german_variants_and_skips_units_without_them():
    parsed = parse_tmx(SAMPLE.read_bytes())
    assert parsed.pairs[0] == (LIGHTHOUSE, "Unsere Leuchtturmführungen beginnen jeden Morgen am blauen Tor.")
    assert parsed.pairs[1][1] == "Bitte behalten Sie Ihr Ticket, bis die Fähre angelegt hat."  # de, not the fr one
    assert parsed.pairs[2] == (SAVE, "Drücken Sie Speichern, bevor Sie die Hafenkarte schließen.")  # codes left out
    assert len(parsed.pairs) == 4 and parsed.skipped == {"no_language_pair": 1}  # the unit with en and es only


def test_tsv_reads_two_columns_without_quoting():
    parsed = parse_tsv(b'"Quoted," she said.\t"Zitiert", sagte sie.\n\nEmpty German.\t \n')
    assert parsed.pairs == [('"Quoted," she said.', '"Zitiert", sagte sie.')] and parsed.skipped == {"empty": 1}


def test_an_imported_pair_is_masked_like_a_translated_segment():
    assert mask_pair(CABIN, "Hallo {name}, Ihre Kabine ist bereit.") == (
        "Hello [PH_1], your cabin is ready.",
        "Hallo [PH_1], Ihre Kabine ist bereit.",
    )
    assert mask_pair("Mail {a} or {b}.", "Schreiben Sie {b} oder {a}.") == (
        "Mail [PH_1] or [PH_2].",
        "Schreiben Sie [PH_2] oder [PH_1].",
    )
    assert mask_pair("Hello {name}.", "Hallo.") is None  # the German lost the placeholder


# ---------------------------------------------------------------------------- the round trip
async def test_tmx_import_then_translate_from_memory_then_export_round_trips(tmp_path):
    eng = FakeEngine()
    async with gateway(None, eng, data_dir=tmp_path) as (c, _):
        r = await import_file(c, SAMPLE.read_bytes(), "sample.tmx")
        assert r.status_code == 200, r.text
        assert r.json() == {
            "object": "memory.import",
            "format": "tmx",
            "imported": 4,
            "new": 4,
            "skipped": {"no_language_pair": 1},
        }
        fresh = "The ferry timetable changes in October."
        out = await translate(c, [LIGHTHOUSE, TICKET, SAVE, "Hello {guest}, your cabin is ready.", fresh])
        assert len(eng.prompts) == 1 and fresh in eng.prompts[0] and LIGHTHOUSE not in eng.prompts[0]
        texts = [t["text"] for t in out["translations"]]
        assert texts[0] == "Unsere Leuchtturmführungen beginnen jeden Morgen am blauen Tor."
        assert texts[3] == "Hallo {guest}, Ihre Kabine ist bereit."  # the placeholder's value put back
        assert texts[4] == f"[de] {fresh}"
        assert [t["memory"] for t in out["translations"]] == ["human"] * 4 + [None]
        assert out["usage"]["memory_hits"] == 4 and out["usage"]["human_memory_hits"] == 4
        assert out["signature"].endswith("|tm:human")
        again = await translate(c, [fresh])  # the model's answer is remembered too, as 'model'
        assert again["translations"][0]["memory"] == "model" and not again["signature"].endswith("|tm:human")

        r = await c.get("/v1/memory/export")
        assert r.status_code == 200 and r.headers["content-type"].startswith("application/x-tmx+xml")
        root = etree.fromstring(r.content)
        header = root.find("header")
        assert root.get("version") == "1.4" and header.get("srclang") == "en" and header.get("o-tmf")
        units = tmx_pairs(r.text)
        assert ("human", LIGHTHOUSE, "Unsere Leuchtturmführungen beginnen jeden Morgen am blauen Tor.") in units
        assert ("human", "Hello [PH_1], your cabin is ready.", "Hallo [PH_1], Ihre Kabine ist bereit.") in units
        assert ("model", fresh, f"[de] {fresh}") in units and len(units) == 5
        assert [tuv.get(XML_LANG) for tuv in root.find("body").find("tu").iterfind("tuv")] == ["en", "de"]
        human = await c.get("/v1/memory/export", params={"origin": "human"})
        assert len(tmx_pairs(human.text)) == 4
        # the export imports again (into a fresh gateway: same entries)
    async with gateway(None, FakeEngine(), data_dir=tmp_path / "second") as (c2, _):
        r = await import_file(c2, human.content, "export.tmx")
        assert r.json()["imported"] == 4
        assert (await translate(c2, [TICKET]))["translations"][0]["memory"] == "human"


async def test_tsv_import_and_an_explicit_format_field(tmp_path):
    async with gateway(None, FakeEngine(), data_dir=tmp_path) as (c, _):
        body = b"The pier is closed today.\tDer Steg ist heute gesperrt.\n"
        r = await import_file(c, body, "upload.bin", format="tsv")
        assert r.status_code == 200 and r.json()["format"] == "tsv" and r.json()["imported"] == 1
        out = await translate(c, ["The pier is  closed today."])  # normalised like any lookup
        assert out["translations"][0]["text"] == "Der Steg ist heute gesperrt."


# ---------------------------------------------------------------------------- human entries win, are pinned
async def test_a_human_entry_wins_over_the_models_and_survives_eviction(tmp_path):
    eng = FakeEngine()
    async with gateway(None, eng, data_dir=tmp_path, translation_memory_size=2) as (c, app):
        first = await translate(c, [TICKET])
        assert first["translations"][0]["text"] == f"[de] {TICKET}"
        await app.state.gateway.memory.flush()
        assert (await translate(c, [TICKET]))["translations"][0]["memory"] == "model"
        await import_file(c, f"{TICKET}\tBitte das Ticket bis zum Anlegen behalten.\n".encode(), "t.tsv")
        out = await translate(c, [TICKET])  # the human entry replaces the model's answer at once
        assert out["translations"][0] == {
            **out["translations"][0],
            "text": "Bitte das Ticket bis zum Anlegen behalten.",
        }
        assert out["translations"][0]["memory"] == "human"
        # many new model entries: the bound (2) evicts model entries, never the human one
        for i in range(6):
            await translate(c, [f"Sentence number {i} about the harbour."])
            await app.state.gateway.memory.flush()
        store = app.state.jobs.store
        assert await store.tm_size() == 2 and await store.tm_count(origin="human") == 1
        sent = len(eng.prompts)
        assert (await translate(c, [TICKET]))["translations"][0]["memory"] == "human" and len(eng.prompts) == sent
        await translate(c, ["Sentence number 0 about the harbour."])  # evicted: the engine again
        assert len(eng.prompts) == sent + 1


async def test_a_flagged_answer_is_never_remembered(tmp_path):
    eng = FakeEngine(responder=lambda srcs: list(srcs))  # the model copies the English: flagged, suspect
    async with gateway(None, eng, data_dir=tmp_path, max_sentences_per_prompt=1) as (c, app):
        out = await translate(c, ["The lantern room is open on Sundays."])
        assert out["translations"][0]["status"] == "suspect"
        await app.state.gateway.memory.flush()
        assert await app.state.jobs.store.tm_count() == 0


# ---------------------------------------------------------------------------- scopes
async def test_one_keys_imports_and_answers_are_not_anothers(tmp_path):
    eng = FakeEngine()
    async with gateway(keyring(), eng, data_dir=tmp_path) as (c, app):
        assert (await import_file(c, SAMPLE.read_bytes(), headers=as_(ALICE))).status_code == 200
        mine = await translate(c, [LIGHTHOUSE], as_(ALICE))
        theirs = await translate(c, [LIGHTHOUSE], as_(BOB))
        assert mine["translations"][0]["memory"] == "human"
        assert theirs["translations"][0]["memory"] is None and theirs["usage"]["memory_hits"] == 0
        assert theirs["translations"][0]["text"] == f"[de] {LIGHTHOUSE}"
        await app.state.gateway.memory.flush()
        bob = await c.get("/v1/memory/export", headers=as_(BOB))
        assert [u[1] for u in tmx_pairs(bob.text)] == [LIGHTHOUSE] and tmx_pairs(bob.text)[0][0] == "model"
        assert (await c.get("/v1/memory", headers=as_(ALICE))).json()["human_entries"] == 4
        assert (await c.get("/v1/memory", headers=as_(BOB))).json()["human_entries"] == 0
        # another key's memory: an admin's only
        r = await c.delete("/v1/memory", params={"key": "a"}, headers=as_(BOB))
        assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"
        assert (await c.get("/v1/memory/export", params={"key": "a"}, headers=as_(BOB))).status_code == 403
        r = await c.delete("/v1/memory", params={"key": "a", "origin": "human"}, headers=as_(ADMIN))
        assert r.json() == {"object": "memory.purge", "deleted": 4}
        assert (await translate(c, [TICKET], as_(ALICE)))["translations"][0]["memory"] is None
        assert (await c.get("/v1/memory", headers=as_(BOB))).json()["model_entries"] == 1  # bob's untouched


async def test_a_batch_job_reads_its_owners_memory(tmp_path):
    eng = FakeEngine()
    async with gateway(keyring(), eng, data_dir=tmp_path) as (c, _):
        await import_file(c, SAMPLE.read_bytes(), headers=as_(ALICE))
        lines = [{"custom_id": "x", "method": "POST", "url": "/v1/translate", "body": {"texts": [LIGHTHOUSE]}}]
        results = {}
        for who in (ALICE, BOB):
            content = "".join(json.dumps(x) + "\n" for x in lines).encode()
            f = await c.post(
                "/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", content)}, headers=as_(who)
            )
            f = f.json()
            body = {"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
            job = (await c.post("/v1/batches", json=body, headers=as_(who))).json()
            for _ in range(1200):  # up to a minute on a loaded machine
                job = (await c.get(f"/v1/batches/{job['id']}", headers=as_(who))).json()
                if job["status"] == "completed":
                    break
                await asyncio.sleep(0.05)
            out = (await c.get(f"/v1/files/{job['output_file_id']}/content", headers=as_(who))).text
            results[who] = json.loads(out)["response"]["body"]["translations"][0]
        assert results[ALICE]["memory"] == "human" and results[BOB]["memory"] is None


# ---------------------------------------------------------------------------- purge
async def test_purge_by_source_by_origin_and_all(tmp_path):
    eng = FakeEngine()
    async with gateway(None, eng, data_dir=tmp_path) as (c, app):
        await translate(c, ["The beacon turns every ten seconds.", "Gulls nest on the old crane."])
        await import_file(c, SAMPLE.read_bytes())
        await app.state.gateway.memory.flush()
        r = await c.delete("/v1/memory", params={"source": "The beacon  turns every ten seconds."})
        assert r.json()["deleted"] == 1
        sent = len(eng.prompts)
        again = await translate(c, ["The beacon turns every ten seconds.", "Gulls nest on the old crane."])
        assert len(eng.prompts) == sent + 1 and [t["memory"] for t in again["translations"]] == [None, "model"]
        await app.state.gateway.memory.flush()
        r = await c.delete("/v1/memory", params={"source": "Hello {x}, your cabin is ready."})  # masked like a lookup
        assert r.json()["deleted"] == 1
        assert (await c.delete("/v1/memory", params={"origin": "model"})).json()["deleted"] == 2
        assert (await c.get("/v1/memory")).json() | {"max_import_bytes": 0} == {
            "object": "memory",
            "enabled": True,
            "human_entries": 3,
            "model_entries": 0,
            "max_human_entries": 100_000,
            "max_import_bytes": 0,
        }
        assert (await c.delete("/v1/memory")).json()["deleted"] == 3
        assert (await translate(c, [LIGHTHOUSE]))["translations"][0]["memory"] is None
        r = await c.delete("/v1/memory", params={"origin": "robot"})
        assert r.status_code == 422


async def test_a_purge_drops_what_is_not_written_yet_and_the_hot_tier(tmp_path):
    store = SQLiteStore(tmp_path / "m.db")
    await store.open()
    try:
        memory = TranslationMemory(store, 100, flush_s=60)
        await memory.remember("", "sig", [("Wrong answer here.", "Falsch.")])
        assert (await memory.lookup("", "sig", ["Wrong answer here."]))["Wrong answer here."].target == "Falsch."
        await memory.purge("", source="Wrong answer here.")
        assert await memory.lookup("", "sig", ["Wrong answer here."]) == {}  # neither the hot tier nor the store
        await memory.flush()
        assert await store.tm_count() == 0  # the pending write went with it
    finally:
        await store.close()


# ---------------------------------------------------------------------------- limits and bad input
@pytest.mark.parametrize(
    ("content", "name", "status", "code"),
    [
        (b"<tmx version='1.4'><body><tu>", "broken.tmx", 400, "invalid_tmx"),
        (b"<html><body>not a memory</body></html>", "page.tmx", 400, "invalid_tmx"),
        (b"<tmx version='1.4'><header/></tmx>", "nobody.tmx", 400, "invalid_tmx"),
        (b"<tmx><body><tu><tuv xml:lang='en'/></tu></body></tmx>", "noseg.tmx", 400, "invalid_tmx"),
        (b"one\ttwo\tthree\n", "wide.tsv", 400, "invalid_tsv"),
        (b"caf\xe9\tCaf\xe9\n", "latin1.tsv", 400, "invalid_encoding"),
        (b"   \n", "empty.tsv", 422, "empty_file"),
        (b"Hello {name}.\tHallo.\n", "lost.tsv", 422, "no_entries"),
    ],
)
async def test_bad_files_are_refused_with_a_code_and_nothing_is_stored(tmp_path, content, name, status, code):
    async with gateway(None, FakeEngine(), data_dir=tmp_path) as (c, app):
        good = b"Good line one.\tGute Zeile eins.\n"
        r = await import_file(c, content + (good if name.endswith(".tsv") and code == "invalid_tsv" else b""), name)
        assert (r.status_code, r.json()["error"]["code"]) == (status, code), r.text
        assert await app.state.jobs.store.tm_count() == 0


async def test_entity_expansion_is_not_followed():
    bomb = (
        b'<?xml version="1.0"?><!DOCTYPE tmx [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
        b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY ext SYSTEM "file:///etc/passwd">]>'
        b"<tmx><body><tu><tuv xml:lang='en'><seg>x &c; &ext;</seg></tuv><tuv xml:lang='de'><seg>y</seg></tuv></tu>"
        b"</body></tmx>"
    )
    parsed = parse_tmx(bomb)
    assert parsed.pairs == [("x  ", "y")]  # the entities are neither expanded nor read


async def test_limits_file_size_entries_per_key_and_segment_length(tmp_path):
    settings = {"memory_import_max_bytes": 400, "memory_max_human_entries": 3, "max_sentence_chars": 60}
    async with gateway(None, FakeEngine(), data_dir=tmp_path, **settings) as (c, app):
        r = await import_file(c, b"x" * 401 + b"\ty\n", "big.tsv")
        assert (r.status_code, r.json()["error"]["code"]) == (413, "file_too_large")
        r = await import_file(c, "".join(f"Line {i}.\tZeile {i}.\n" for i in range(4)).encode(), "many.tsv")
        assert (r.status_code, r.json()["error"]["code"]) == (413, "too_many_entries")
        r = await import_file(c, b"A" * 61 + b"\tB\n", "long.tsv")
        assert (r.status_code, r.json()["error"]["code"]) == (422, "segment_too_long")
        assert (await import_file(c, b"One.\tEins.\nTwo.\tZwei.\n", "a.tsv")).json()["new"] == 2
        r = await import_file(c, b"Two.\tZwei!\nThree.\tDrei.\nFour.\tVier.\n", "b.tsv")  # 2 new: 4 > 3
        assert (r.status_code, r.json()["error"]["code"]) == (413, "memory_full")
        assert await app.state.jobs.store.tm_count(origin="human") == 2  # nothing of the refused file stored
        r = await import_file(c, b"Two.\tZwei!\nThree.\tDrei.\n", "c.tsv")  # re-importing Two counts once
        assert r.json() == {**r.json(), "imported": 2, "new": 1}
        r = await c.post("/v1/memory/import", content=b"One.\tEins.\n", headers={"content-type": "text/plain"})
        assert r.status_code == 415


async def test_the_memory_api_says_when_the_memory_is_off(tmp_path):
    async with gateway(None, FakeEngine(), data_dir=tmp_path, translation_memory_size=0) as (c, _):
        r = await import_file(c, SAMPLE.read_bytes())
        assert (r.status_code, r.json()["error"]["code"]) == (409, "memory_off")
        assert (await c.get("/v1/memory/export")).status_code == 409
        assert (await c.get("/v1/memory")).json()["enabled"] is False


# ---------------------------------------------------------------------------- the store (SQLite)
async def test_store_scopes_origins_pinning_and_purge(tmp_path):
    store = SQLiteStore(tmp_path / "m.db")
    await store.open()
    try:
        await check_memory_store(store)
    finally:
        await store.close()


async def test_the_migration_moves_each_keys_old_entries_to_its_scope(tmp_path):
    path = tmp_path / "old.db"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL)")
    for m in migrations("sqlite"):
        if m.version < 4:
            for statement in _statements(m.sql):
                db.execute(statement)
            db.execute("INSERT INTO schema_migrations VALUES (?, ?, 0)", (m.version, m.name))
    db.execute("INSERT INTO translation_memory VALUES ('tmpl:x|batchmt:1|tenant:k1', 'a', 'A', 3, 1, 2)")
    db.execute("INSERT INTO translation_memory VALUES ('tmpl:x|batchmt:1', 'b', 'B', 0, 1, 2)")
    db.commit()
    db.close()
    store = SQLiteStore(path)
    await store.open()
    try:
        assert (await store.tm_get("k1", "tmpl:x|batchmt:1", ["a"], 5.0))["a"].target == "A"
        assert (await store.tm_get("", "tmpl:x|batchmt:1", ["b"], 5.0))["b"].target == "B"
        assert await store.tm_get("", "tmpl:x|batchmt:1", ["a"], 5.0) == {}
    finally:
        await store.close()


async def test_another_gateways_purge_is_seen_once_the_hot_entry_expires(tmp_path):
    """Two gateways on one store: a purge on one is seen by the other's hot tier within ``hot_ttl_s``."""
    store = SQLiteStore(tmp_path / "m.db")
    await store.open()
    try:
        here, there = TranslationMemory(store, 100, hot_ttl_s=0.2), TranslationMemory(store, 100)
        await store.tm_put("", "sig", [("A wrong answer.", "Falsch.")], 1.0, 100)
        assert "A wrong answer." in await here.lookup("", "sig", ["A wrong answer."])  # now hot here
        assert await there.purge("", source="A wrong answer.") == 1
        assert "A wrong answer." in await here.lookup("", "sig", ["A wrong answer."])  # still hot: within the TTL
        await asyncio.sleep(0.25)
        assert await here.lookup("", "sig", ["A wrong answer."]) == {}  # expired: the store says it is gone
    finally:
        await store.close()

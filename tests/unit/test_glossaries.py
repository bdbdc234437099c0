"""Glossaries and formality (issue 27) over the fake engine: the API, its limits and 404s, tenant isolation, how a
glossary and a formality steer the prompt (the cached prefix byte-identical), the checks after generation, the
memory key, batch-job lines and ensembles."""

from __future__ import annotations

import asyncio
import json
import re
import time

import pytest

from batchmt_server.auth.keys import InProcessKeyStore, KeyRecord, KeyRing, hash_key
from batchmt_server.engines.fake import FakeEngine
from batchmt_server.glossaries.terms import Limits, TermIndex, check_entries, mask_terms, parse_entries, parse_tmx
from batchmt_server.prompting.steer import Steer, register, steered_template, term_found, wrong_register
from batchmt_server.prompting.template import Template
from batchmt_server.protocol.errors import APIError
from helpers import running_gateway

ALICE = "alice-key-0123456789abcdef"
BOB = "bob-key-0123456789abcdef"
TSV = "invoice\tRechnung\ncloud storage\tCloud-Speicher\nsupport ticket\tSupportanfrage\n"


def as_(key: str) -> dict:
    return {"authorization": f"Bearer {key}"}


def two_tenants() -> KeyRing:
    store = InProcessKeyStore()
    store._keys["a"] = KeyRecord(id="a", name="alice", key_hash=hash_key(ALICE), role="user")
    store._keys["b"] = KeyRecord(id="b", name="bob", key_hash=hash_key(BOB), role="user")
    return KeyRing(store, [], refresh_s=0.0)


class PromptEngine(FakeEngine):
    """The fake engine, keeping every full prompt it was sent."""

    def __init__(self, *a, **kw) -> None:
        super().__init__(*a, **kw)
        self.full: list[str] = []

    async def generate(self, prompt, params):
        self.full.append(prompt)
        return await super().generate(prompt, params)


def glossary_following(sources: list[str]) -> list[str]:
    """A model that uses the glossary's German terms (and nothing else)."""
    out = []
    for s in sources:
        t = s.replace("cloud storage", "Cloud-Speicher").replace("invoice", "Rechnung")
        out.append(f"[de] {t}")
    return out


async def create(c, headers=None, entries=TSV, **body) -> dict:
    r = await c.post(
        "/v1/glossaries",
        json={"name": "Billing", "source_lang": "en", "target_lang": "de", "entries": entries, **body},
        headers=headers or {},
    )
    assert r.status_code == 201, r.text
    return r.json()


# ---------------------------------------------------------------------------- reading and matching terms
def test_term_index_finds_whole_words_longest_first_case_insensitive():
    idx = TermIndex([("cloud", "Wolke"), ("cloud storage", "Cloud-Speicher"), ("API", "Schnittstelle")])
    found = idx.find("Your Cloud Storage and the cloud, via the api; not apis or cloudy.")
    assert [(m.source, m.target) for m in found] == [
        ("cloud storage", "Cloud-Speicher"),
        ("cloud", "Wolke"),
        ("API", "Schnittstelle"),
    ]
    text, back = mask_terms(
        "Send [PH_1] the invoice.", TermIndex([("invoice", "Rechnung")]).find("Send [PH_1] the invoice.")
    )
    assert text == "Send [PH_1] the [PH_2]." and back == {"[PH_2]": "Rechnung"}


def test_entries_parse_tsv_csv_and_refuse_bad_ones_with_codes():
    lim = Limits(max_entries=5, max_term_chars=20)
    assert parse_entries('a b,"x, y"\nc,d,en,de\n', "csv", lim) == [("a b", "x, y"), ("c", "d")]
    assert parse_entries("a\tb\n\nc\td\n", "tsv", lim) == [("a", "b"), ("c", "d")]
    cases = [
        (lambda: parse_entries("a\tb\tc\n", "tsv", lim), 422, "invalid_glossary_entry"),
        (lambda: parse_entries("a,b,fr,de\n", "csv", lim), 422, "invalid_glossary_entry"),
        (lambda: parse_entries("".join(f"t{i}\tu{i}\n" for i in range(6)), "tsv", lim), 413, "glossary_too_large"),
        (lambda: check_entries([("a", "b"), ("A", "c")], lim), 422, "duplicate_glossary_entry"),
        (lambda: check_entries([("a", " b")], lim), 422, "invalid_glossary_entry"),
        (lambda: check_entries([("a", "b" * 21)], lim), 413, "glossary_term_too_long"),
        (lambda: check_entries([], lim), 422, "empty_glossary"),
        (lambda: parse_entries("a\tb", "xlsx", lim), 422, "invalid_entries_format"),
    ]
    for fn, status, code in cases:
        with pytest.raises(APIError) as exc:
            fn()
        assert (exc.value.status, exc.value.code) == (status, code)


TMX = b"""<?xml version="1.0" encoding="UTF-8"?>
<tmx version="1.4"><header srclang="en" datatype="plaintext" segtype="phrase" adminlang="en"
 creationtool="t" creationtoolversion="1" o-tmf="t"/>
<body>
<tu><tuv xml:lang="en-GB"><seg>invoice</seg></tuv><tuv xml:lang="de-DE"><seg>Rechnung</seg></tuv></tu>
<tu><tuv xml:lang="en"><seg>dashboard</seg></tuv><tuv xml:lang="fr"><seg>tableau</seg></tuv></tu>
<tu><tuv xml:lang="en"><seg>support <b>ticket</b></seg></tuv><tuv xml:lang="de"><seg>Supportanfrage</seg></tuv></tu>
</body></tmx>"""


def test_tmx_is_read_with_lxml_and_entities_are_not_expanded():
    lim = Limits(100, 100)
    assert parse_tmx(TMX, lim) == [("invoice", "Rechnung"), ("support ticket", "Supportanfrage")]
    xxe = (
        b'<?xml version="1.0"?><!DOCTYPE tmx [<!ENTITY x SYSTEM "file:///etc/passwd">]>'
        b'<tmx version="1.4"><header/><body><tu><tuv xml:lang="en"><seg>a&x;</seg></tuv>'
        b'<tuv xml:lang="de"><seg>b</seg></tuv></tu></body></tmx>'
    )
    ((src, tgt),) = parse_tmx(xxe, lim)
    assert src in ("a", "a&x;") and "root" not in src and tgt == "b"  # the entity is not resolved (no file read)
    for bad in (b"<tmx><body><tu>", b"<xliff/>", b'<tmx version="1.4"><header/><body/></tmx>'):
        with pytest.raises(APIError) as exc:
            parse_tmx(bad, lim)
        assert exc.value.code == "invalid_tmx"


def test_register_and_terms_by_rule():
    assert register("Können Sie mir Ihre Adresse schicken?") == "formal"
    assert register("Kannst du mir deine Adresse schicken?") == "informal"
    assert register("Sie hat das Buch gelesen.") == "none"  # sentence-initial "Sie": she/they
    assert register("Danke, ich schicke es Ihnen und dir.") == "mixed"
    assert wrong_register("more", "Hast du Zeit?") and not wrong_register("prefer_more", "Hast du Zeit?")
    assert wrong_register("less", "Haben Sie Zeit?") and not wrong_register("less", "Danke!")
    # "less": a sentence-initial Sie/Ihr (you, or she/they/her) is never delivered as ok
    assert (
        register("Sie sollten mehr trinken.") == "none"
        and register("Sie sollten mehr trinken.", strict=True) == "formal"
    )
    assert wrong_register("less", "Sie sollten mehr trinken.") and not wrong_register(
        "more", "Sie sollten mehr trinken."
    )
    assert term_found("Rechnung", "Die Rechnungen sind da.") and term_found("Cloud-Speicher", "im cloud speicher")
    assert not term_found("Rechnung", "Die Quittung ist da.")
    assert Steer(required=("Rechnung",)).check("Die Quittung.") == "glossary"
    assert Steer(formality="less").check("Haben Sie Zeit?") == "formality"


def test_formality_variants_keep_their_own_prefix_byte_identical():
    base = Template.load("en-de-packed")
    more, less = steered_template(base, "more", False), steered_template(base, "less", False)
    assert steered_template(base, "default", False) is base
    assert more.prefix.startswith(base.instruction) and "Sie" in more.instruction and "du" in less.instruction
    assert more.prefix != less.prefix != base.prefix and more.ref != base.ref
    hinted = steered_template(base, "default", True)
    p1 = hinted.render(["Pay the invoice."], (("invoice", "Rechnung"),))
    p2 = hinted.render(["Check the cloud storage."], (("cloud storage", "Cloud-Speicher"),))
    assert p1.startswith(hinted.prefix) and p2.startswith(hinted.prefix)
    assert p1[len(hinted.prefix) :].startswith("Glossary: invoice = Rechnung\nSentences:\n1. Pay the invoice.")


# ---------------------------------------------------------------------------- the API
async def test_create_get_list_entries_delete_round_trip():
    async with running_gateway() as (c, _):
        g = await create(c)
        assert g["entry_count"] == 3 and g["ready"] and g["glossary_id"].startswith("gl-") and len(g["version"]) == 10
        assert (await c.get(f"/v1/glossaries/{g['glossary_id']}")).json() == g
        assert (await c.get("/v1/glossaries")).json() == {"glossaries": [g]}
        r = await c.get(f"/v1/glossaries/{g['glossary_id']}/entries")
        assert r.headers["content-type"].startswith("text/tab-separated-values")
        assert r.text == "cloud storage\tCloud-Speicher\ninvoice\tRechnung\nsupport ticket\tSupportanfrage\n"
        assert (await c.delete(f"/v1/glossaries/{g['glossary_id']}")).status_code == 204
        for r in (
            await c.get(f"/v1/glossaries/{g['glossary_id']}"),
            await c.delete(f"/v1/glossaries/{g['glossary_id']}"),
        ):
            assert r.status_code == 404 and r.json()["error"]["code"] == "glossary_not_found"
        assert (await c.get("/v1/glossaries")).json() == {"glossaries": []}


async def test_tmx_upload_and_csv_form_create_glossaries():
    async with running_gateway() as (c, _):
        r = await c.post(
            "/v1/glossaries", data={"name": "From TMX"}, files={"file": ("terms.tmx", TMX, "application/x-tmx+xml")}
        )
        assert r.status_code == 201 and r.json()["entry_count"] == 2, r.text
        r = await c.post("/v1/glossaries", data={"name": "csv", "entries": "a,b\n", "entries_format": "csv"})
        assert r.status_code == 201 and r.json()["entry_count"] == 1, r.text
        r = await c.post("/v1/glossaries", data={"name": "bad"}, files={"file": ("t.tmx", b"<tmx><body>", "text/xml")})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_tmx"
        r = await c.post("/v1/glossaries", content=b"name=x", headers={"content-type": "text/plain"})
        assert r.status_code == 415
        assert len((await c.get("/v1/glossaries")).json()["glossaries"]) == 2


@pytest.mark.parametrize(
    "body,status,code",
    [
        ({"entries": "".join(f"term{i}\tBegriff{i}\n" for i in range(11))}, 413, "glossary_too_large"),
        ({"entries": "a\t" + "b" * 41 + "\n"}, 413, "glossary_term_too_long"),
        ({"entries": "a\tb\nA\tc\n"}, 422, "duplicate_glossary_entry"),
        ({"entries": ""}, 422, "empty_glossary"),
        ({"entries": "a\tb", "target_lang": "fr"}, 422, "unsupported_language_pair"),
        ({"entries": "a\tb", "entries_format": "xml"}, 422, "invalid_request"),
        ({"entries": "a\tb", "name": ""}, 422, "invalid_request"),
    ],
)
async def test_limits_and_bad_entries_are_refused_before_anything_is_stored(body, status, code):
    async with running_gateway(glossary_max_entries=10, glossary_max_term_chars=40) as (c, _):
        r = await c.post("/v1/glossaries", json={"name": "x", "source_lang": "en", "target_lang": "de", **body})
        assert r.status_code == status, r.text
        assert r.json()["error"]["code"] == code and r.json()["error"]["message"]
        assert (await c.get("/v1/glossaries")).json() == {"glossaries": []}


async def test_a_million_entry_glossary_is_a_413_with_a_code():
    entries = "".join(f"t{i}\tu{i}\n" for i in range(1_000_000))
    async with running_gateway() as (c, _):
        r = await c.post("/v1/glossaries", json={"name": "huge", "entries": entries})
        assert r.status_code == 413 and r.json()["error"]["code"] in ("body_too_large", "glossary_too_large")
        # under the body limit the entry count is what refuses it
        many = "".join(f"t{i}\tu{i}\n" for i in range(10_001))
        r = await c.post("/v1/glossaries", json={"name": "many", "entries": many})
        assert r.status_code == 413 and r.json()["error"]["code"] == "glossary_too_large"
        assert (await c.get("/v1/glossaries")).json() == {"glossaries": []}


async def test_glossaries_per_key_are_limited():
    async with running_gateway(glossary_max_per_key=2) as (c, _):
        await create(c)
        await create(c)
        r = await c.post("/v1/glossaries", json={"name": "third", "entries": TSV})
        assert r.status_code == 409 and r.json()["error"]["code"] == "too_many_glossaries"


async def test_another_tenants_glossary_is_a_404_everywhere():
    async with _keyed() as (c, _):
        g = await create(c, as_(ALICE))
        gid = g["glossary_id"]
        assert (await c.get("/v1/glossaries", headers=as_(BOB))).json() == {"glossaries": []}
        for r in (
            await c.get(f"/v1/glossaries/{gid}", headers=as_(BOB)),
            await c.get(f"/v1/glossaries/{gid}/entries", headers=as_(BOB)),
            await c.delete(f"/v1/glossaries/{gid}", headers=as_(BOB)),
            await c.post("/v1/translate", json={"texts": ["Pay the invoice."], "glossary_id": gid}, headers=as_(BOB)),
            await c.post("/v1/translate", json={"texts": ["Pay it."], "glossary_id": "gl-nope"}, headers=as_(ALICE)),
        ):
            assert r.status_code == 404 and r.json()["error"]["code"] == "glossary_not_found", r.text
        r = await c.post("/v1/translate", json={"texts": ["Pay the invoice."], "glossary_id": gid}, headers=as_(ALICE))
        assert r.status_code == 200 and f"|glossary:{gid}@{g['version']}" in r.json()["signature"]


def _keyed():
    from contextlib import asynccontextmanager

    import httpx

    from batchmt_server.http.app import create_app
    from batchmt_server.settings import Settings

    @asynccontextmanager
    async def gw():
        s = Settings(engine="fake", max_wait_ms=1, warmup=False, calibration="off")
        app = create_app(s, engine=FakeEngine(glossary_following), keys=two_tenants())
        async with app.router.lifespan_context(app):
            await asyncio.wait_for(app.state.gateway.ready.wait(), 5)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as client:
                yield client, app

    return gw()


# ---------------------------------------------------------------------------- enforcement
async def test_hints_go_after_the_cached_prefix_and_a_followed_glossary_is_ok():
    eng = PromptEngine(glossary_following)
    async with running_gateway(eng, glossary_method="hints") as (c, app):
        g = await create(c)
        r = await c.post(
            "/v1/translate",
            json={
                "texts": ["Pay the invoice today.", "Your cloud storage is full.", "Good night."],
                "glossary_id": g["glossary_id"],
            },
        )
        body = r.json()
        assert [t["status"] for t in body["translations"]] == ["ok", "ok", "ok"], body
        assert body["translations"][0]["text"] == "[de] Pay the Rechnung today."
        hinted = steered_template(app.state.gateway.template, "default", True)
        with_hints = [p for p in eng.full if "\nGlossary: " in p[len(hinted.prefix) - 1 :]]
        assert with_hints and all(p.startswith(hinted.prefix) for p in with_hints)
        assert any("Glossary: invoice = Rechnung" in p[len(hinted.prefix) :] for p in with_hints)
        # the sentence without a term is sent as any other (the default prefix, no hint line)
        plain = [p for p in eng.full if "Good night." in p]
        assert plain and all(p.startswith(app.state.gateway.template.prefix) and "Glossary:" not in p for p in plain)


async def test_a_missing_term_is_re_sent_once_then_suspect_glossary():
    eng = PromptEngine()  # echoes the English: never the German term
    async with running_gateway(eng, glossary_method="hints") as (c, _):
        g = await create(c)
        r = await c.post("/v1/translate", json={"texts": ["Pay the invoice today."], "glossary_id": g["glossary_id"]})
        t = r.json()["translations"][0]
        assert t["status"] == "suspect" and t["suspect_segments"] == [{"index": 0, "reason": "glossary"}]
        assert sum("Pay the invoice today." in p[-200:] for p in eng.full) == 2  # sent, re-sent once
        assert r.json()["usage"]["retries"] == 1
        # never remembered: the next request goes to the engine again
        r2 = await c.post("/v1/translate", json={"texts": ["Pay the invoice today."], "glossary_id": g["glossary_id"]})
        assert r2.json()["usage"]["memory_hits"] == 0


async def test_mask_method_puts_the_target_term_in_place():
    eng = PromptEngine()
    async with running_gateway(eng) as (c, _):  # the default method (measured best: docs/glossaries.md)
        g = await create(c)
        r = await c.post(
            "/v1/translate",
            json={"texts": ["Pay the invoice for your cloud storage."], "glossary_id": g["glossary_id"]},
        )
        t = r.json()["translations"][0]
        assert t["status"] == "ok" and t["text"] == "[de] Pay the Rechnung for your Cloud-Speicher."
        assert any("Pay the [PH_1] for your [PH_2]." in p for p in eng.full)
        assert "|gmethod:mask" in r.json()["signature"]


async def test_formality_more_never_delivers_du_as_ok_but_prefer_more_may():
    eng = PromptEngine(lambda srcs: ["Hast du deine Schlüssel?" for _ in srcs])
    async with running_gateway(eng) as (c, app):
        r = await c.post("/v1/translate", json={"texts": ["Do you have your keys?"], "formality": "more"})
        t = r.json()["translations"][0]
        assert t["status"] == "suspect" and t["suspect_segments"] == [{"index": 0, "reason": "formality"}]
        assert len(eng.full) == 2 and "|formality:more" in r.json()["signature"]
        more = steered_template(app.state.gateway.template, "more", False)
        assert all(p.startswith(more.prefix) for p in eng.full)
        r = await c.post("/v1/translate", json={"texts": ["Do you have your keys?"], "formality": "prefer_more"})
        assert r.json()["translations"][0]["status"] == "ok"
        r = await c.post("/v1/translate", json={"texts": ["Do you have your keys?"], "formality": "less"})
        assert r.json()["translations"][0]["status"] == "ok"
        r = await c.post("/v1/translate", json={"texts": ["Hi."], "formality": "polite"})
        assert r.status_code == 422 and r.json()["error"]["param"] == "formality"


async def test_the_memory_never_serves_a_du_answer_for_sie():
    eng = PromptEngine(lambda srcs: [("Hast du Zeit?" if "du" in eng.full[-1][:600] else "[de] " + s) for s in srcs])
    eng.responder = lambda srcs: ["Hast du Zeit?" if "informally" in eng.full[-1] else "Haben Sie Zeit?" for _ in srcs]
    async with running_gateway(eng) as (c, _):
        ask = {"texts": ["Do you have time?"]}
        a = (await c.post("/v1/translate", json={**ask, "formality": "less"})).json()
        b = (await c.post("/v1/translate", json={**ask, "formality": "more"})).json()
        a2 = (await c.post("/v1/translate", json={**ask, "formality": "less"})).json()
        await asyncio.sleep(0.1)  # the memory writes in batches
    assert a["translations"][0]["text"] == "Hast du Zeit?" and b["translations"][0]["text"] == "Haben Sie Zeit?"
    assert b["usage"]["memory_hits"] == 0 and b["translations"][0]["status"] == "ok"
    assert a2["usage"]["memory_hits"] == 1 and a2["translations"][0]["text"] == "Hast du Zeit?"
    assert a["signature"] != b["signature"]


def test_the_batcher_keys_coalescing_and_its_memory_on_the_steer():
    from batchmt_server.pipeline.batcher import Item

    a = Item("Do you?", 3, 1, [], steer=Steer(formality="more"))
    b = Item("Do you?", 3, 1, [], steer=Steer(formality="less"))
    assert a.key != b.key and a.variant != b.variant


async def test_sentences_of_different_formality_never_share_a_prompt():
    eng = PromptEngine()
    eng.gate = asyncio.Event()
    async with running_gateway(eng, max_sentences_per_prompt=8, pack_policy="fixed", max_wait_ms=50) as (c, _):
        reqs = [
            asyncio.ensure_future(c.post("/v1/translate", json={"texts": [f"Sentence {i} here."], "formality": f}))
            for i, f in enumerate(["more", "less", "more", "less", "default"])
        ]
        await asyncio.sleep(0.2)
        eng.gate.set()
        await asyncio.gather(*reqs)
    for prompt_sources in eng.prompts:
        nums = {int(re.search(r"\d", s).group()) for s in prompt_sources}
        assert nums <= {0, 2} or nums <= {1, 3} or nums <= {4}, eng.prompts


async def test_job_lines_honour_glossary_and_formality_and_an_unknown_glossary_fails_its_line():
    eng = PromptEngine(glossary_following)
    async with running_gateway(eng, glossary_method="hints") as (c, _):
        g = await create(c)
        rows = [
            {
                "custom_id": "a",
                "method": "POST",
                "url": "/v1/translate",
                "body": {"texts": ["Pay the invoice now."], "glossary_id": g["glossary_id"], "formality": "less"},
            },
            {
                "custom_id": "b",
                "method": "POST",
                "url": "/v1/translate",
                "body": {"texts": ["Pay it now."], "glossary_id": "gl-unknown"},
            },
        ]
        content = "".join(json.dumps(r) + "\n" for r in rows).encode()
        f = (await c.post("/v1/files", data={"purpose": "batch"}, files={"file": ("in.jsonl", content)})).json()
        b = (
            await c.post(
                "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
            )
        ).json()
        assert b["request_counts"]["failed"] == 1  # the unknown glossary's line failed at creation, before any work
        deadline = time.monotonic() + 20
        while b["status"] not in ("completed", "failed") and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
            b = (await c.get(f"/v1/batches/{b['id']}")).json()
        out = [json.loads(x) for x in (await c.get(f"/v1/files/{b['output_file_id']}/content")).text.splitlines()]
        err = [json.loads(x) for x in (await c.get(f"/v1/files/{b['error_file_id']}/content")).text.splitlines()]
    body = out[0]["response"]["body"]
    assert body["translations"][0]["text"] == "[de] Pay the Rechnung now."
    assert "|formality:less" in body["signature"] and f"|glossary:{g['glossary_id']}" in body["signature"]
    assert any("Glossary: invoice = Rechnung" in p and "informally" in p for p in eng.full)
    assert [e["custom_id"] for e in err] == ["b"] and "glossary" in json.dumps(err[0])


async def test_ensembles_honour_glossary_and_formality():
    eng = PromptEngine(glossary_following)
    async with running_gateway(eng, glossary_method="hints") as (c, _):
        g = await create(c)
        r = await c.post(
            "/v1/translate",
            json={
                "texts": ["Pay the invoice.", "Open the cloud storage."],
                "quality": "balanced",
                "glossary_id": g["glossary_id"],
                "formality": "prefer_less",
            },
        )
    body = r.json()
    assert [t["status"] for t in body["translations"]] == ["ok", "ok"]
    assert body["translations"][0]["text"] == "[de] Pay the Rechnung."
    assert "|quality:balanced" in body["signature"] and "|formality:prefer_less" in body["signature"]
    assert eng.full and all("Glossary:" in p and "informally" in p for p in eng.full)


async def test_an_imported_du_entry_is_not_served_for_formality_more():
    """Imported human memory entries answer under every signature: under formality more/less (and a glossary's
    required terms) they must pass the same check as the model's answers, or the engine translates instead."""
    eng = PromptEngine(lambda srcs: ["Haben Sie Zeit?" for _ in srcs])
    async with running_gateway(eng) as (c, _):
        r = await c.post(
            "/v1/memory/import", files={"file": ("tm.tsv", b"Do you have time?\tHast du Zeit?\n")}, data={}
        )
        assert r.status_code == 200, r.text
        plain = (await c.post("/v1/translate", json={"texts": ["Do you have time?"]})).json()
        more = (await c.post("/v1/translate", json={"texts": ["Do you have time?"], "formality": "more"})).json()
        less = (await c.post("/v1/translate", json={"texts": ["Do you have time?"], "formality": "less"})).json()
    assert plain["translations"][0]["text"] == "Hast du Zeit?" and plain["usage"]["memory_hits"] == 1
    assert more["translations"][0]["text"] == "Haben Sie Zeit?" and more["usage"]["memory_hits"] == 0
    assert less["translations"][0]["text"] == "Hast du Zeit?" and less["usage"]["memory_hits"] == 1

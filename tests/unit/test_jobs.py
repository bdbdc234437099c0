"""Batch jobs in process (fake engine): the API shapes, validation into the error file, cancel, expiry, limits,
spare-capacity scheduling in the batcher, and the persistent translation memory."""

from __future__ import annotations

import asyncio
import json
import time

import pytest

from batchmt_server.engines.fake import FakeEngine
from helpers import running_gateway


def jsonl(rows: list) -> bytes:
    return "".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows).encode()


def line(cid: str, *sentences: str, **body) -> dict:
    return {"custom_id": cid, "method": "POST", "url": "/v1/translate", "body": {"sentences": list(sentences), **body}}


async def upload(c, content: bytes, name: str = "in.jsonl"):
    return await c.post("/v1/files", data={"purpose": "batch"}, files={"file": (name, content, "application/jsonl")})


async def wait_status(c, batch_id: str, statuses: set[str], timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        b = (await c.get(f"/v1/batches/{batch_id}")).json()
        if b["status"] in statuses:
            return b
        await asyncio.sleep(0.05)
    raise AssertionError(f"batch {batch_id} still {b['status']}")


async def content(c, file_id: str) -> list[dict]:
    r = await c.get(f"/v1/files/{file_id}/content")
    assert r.status_code == 200
    return [json.loads(x) for x in r.text.splitlines()]


async def test_job_runs_to_completion_with_bad_lines_in_the_error_file():
    rows = [
        line("a", "The museum is closed on Mondays."),
        "{not json",
        line("b", "I have lost my keys again.", "Hi."),
        {"custom_id": "c", "method": "POST", "url": "/v1/chat", "body": {}},
        line("a", "A duplicate id."),
        line("d", ""),
        line("e", "x" * 60),
        {"method": "POST", "url": "/v1/translate", "body": {"sentences": ["x"]}},
        "",
        line("f", "Fine again."),
    ]
    async with running_gateway(max_text_chars=50) as (c, app):
        f = (await upload(c, jsonl(rows))).json()
        assert f["object"] == "file" and f["purpose"] == "batch" and f["bytes"] == len(jsonl(rows))
        r = await c.post(
            "/v1/batches",
            json={
                "input_file_id": f["id"],
                "endpoint": "/v1/translate",
                "completion_window": "24h",
                "metadata": {"project": "t"},
            },
        )
        assert r.status_code == 200, r.text
        b = r.json()
        assert b["object"] == "batch" and b["metadata"] == {"project": "t"}
        assert b["request_counts"] == {"total": 9, "completed": 0, "failed": 6}
        b = await wait_status(c, b["id"], {"completed"})
        assert b["request_counts"] == {"total": 9, "completed": 3, "failed": 6}
        assert b["completed_at"] and b["finalizing_at"] and b["output_file_id"] and b["error_file_id"]
        out = await content(c, b["output_file_id"])
        assert [o["custom_id"] for o in out] == ["a", "b", "f"]
        body = out[1]["response"]["body"]
        assert out[1]["response"]["status_code"] == 200 and out[1]["error"] is None
        assert [t["text"] for t in body["translations"]] == ["[de] I have lost my keys again.", "[de] Hi."]
        direct = (
            await c.post(
                "/v1/translate", json={"sentences": ["I have lost my keys again.", "Hi."], "translation_memory": False}
            )
        ).json()
        assert body["signature"] == direct["signature"] and body["translations"] == direct["translations"]
        again = (await c.post("/v1/translate", json={"sentences": ["I have lost my keys again.", "Hi."]})).json()
        assert again["usage"]["memory_hits"] == 2  # the job's translations went into the translation memory
        assert [t["text"] for t in again["translations"]] == [t["text"] for t in direct["translations"]]
        errs = {e["error"]["line"]: e for e in await content(c, b["error_file_id"])}
        assert {n: e["error"]["code"] for n, e in errs.items()} == {
            2: "invalid_json",
            4: "invalid_url",
            5: "duplicate_custom_id",
            6: "empty_sentence",
            7: "text_too_long",
            8: "invalid_custom_id",
        }
        assert errs[4]["custom_id"] == "c" and errs[2]["custom_id"] is None
        assert errs[7]["response"]["status_code"] == 413
        assert b["usage"]["sentences"] == 4 and b["usage"]["input_tokens"] > 0
        usage = (await c.get("/v1/usage")).json()
        assert usage["jobs"]["jobs"] == 1 and usage["jobs"]["sentences"] == 4
        m = (await c.get("/metrics")).text
        assert 'batchmt_job_lines_total{outcome="completed"} 3.0' in m and "batchmt_job_prompts_cap " in m


async def test_empty_file_oversized_file_and_bad_batch_requests_are_refused_before_any_work():
    async with running_gateway(job_max_file_bytes=1000) as (c, app):
        empty = (await upload(c, b"\n\n")).json()
        r = await c.post(
            "/v1/batches", json={"input_file_id": empty["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
        )
        assert r.status_code == 422 and r.json()["error"]["code"] == "empty_file"
        big = await upload(c, jsonl([line(str(i), "A sentence of some length.") for i in range(30)]))
        assert big.status_code == 413 and big.json()["error"]["code"] == "file_too_large"
        assert (await c.get("/v1/files")).json()["data"] == [empty]  # nothing of the big one was stored
        ok = (await upload(c, jsonl([line("a", "Hello there.")]))).json()
        for body, code in [
            ({"endpoint": "/v1/chat/completions"}, "unsupported_endpoint"),
            ({"completion_window": "soon"}, "invalid_completion_window"),
            ({"input_file_id": "file-nope"}, "file_not_found"),
            ({"metadata": {"k" * 65: "v"}}, "invalid_metadata"),
        ]:
            r = await c.post(
                "/v1/batches",
                json={"input_file_id": ok["id"], "endpoint": "/v1/translate", "completion_window": "24h", **body},
            )
            assert r.json()["error"]["code"] == code, r.text
        r = await c.post("/v1/files", data={"purpose": "fine-tune"}, files={"file": ("x", b"{}", "text/plain")})
        assert r.status_code == 422 and r.json()["error"]["code"] == "invalid_purpose"
        assert (await c.get("/v1/batches")).json()["data"] == []


async def test_cancel_mid_job_keeps_what_is_done_and_drops_the_rest():
    eng = FakeEngine(delay=0.02)
    async with running_gateway(eng, job_max_lines_in_flight=2) as (c, app):
        f = (await upload(c, jsonl([line(f"r{i}", f"Sentence number {i}.") for i in range(200)]))).json()
        b = (
            await c.post(
                "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
            )
        ).json()
        while (await c.get(f"/v1/batches/{b['id']}")).json()["request_counts"]["completed"] < 5:
            await asyncio.sleep(0.02)
        r = await c.post(f"/v1/batches/{b['id']}/cancel")
        assert r.status_code == 200 and r.json()["status"] in ("cancelling", "cancelled")
        b = await wait_status(c, b["id"], {"cancelled"})
        done = b["request_counts"]["completed"]
        assert 5 <= done < 200 and b["cancelled_at"] and b["cancelling_at"]
        out = await content(c, b["output_file_id"])
        assert len(out) == done and len({o["custom_id"] for o in out}) == done
        again = await c.post(f"/v1/batches/{b['id']}/cancel")
        assert again.status_code == 200 and again.json()["status"] == "cancelled"
        sent = len(eng.prompts)
        await asyncio.sleep(0.3)
        assert len(eng.prompts) == sent  # nothing more goes to the engine


async def test_expired_job_writes_its_open_lines_to_the_error_file():
    eng = FakeEngine()
    eng.gate = asyncio.Event()  # the engine never answers
    async with running_gateway(eng, job_max_lines_in_flight=1, request_timeout_s=60) as (c, app):
        f = (await upload(c, jsonl([line(f"r{i}", f"Line {i}.") for i in range(3)]))).json()
        b = (
            await c.post(
                "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "1s"}
            )
        ).json()
        assert b["expires_at"] == b["created_at"] + 1
        b = await wait_status(c, b["id"], {"expired"}, timeout=10)
        assert b["request_counts"] == {"total": 3, "completed": 0, "failed": 3} and b["output_file_id"] is None
        errs = await content(c, b["error_file_id"])
        assert [(e["custom_id"], e["error"]["code"]) for e in errs] == [(f"r{i}", "batch_expired") for i in range(3)]
        eng.gate.set()


async def test_list_paginates_and_unknown_ids_are_404():
    async with running_gateway() as (c, app):
        f = (await upload(c, jsonl([line("a", "Hello there.")]))).json()
        ids = []
        for _ in range(3):
            ids.append(
                (
                    await c.post(
                        "/v1/batches",
                        json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"},
                    )
                ).json()["id"]
            )
        p1 = (await c.get("/v1/batches", params={"limit": 2})).json()
        assert [b["id"] for b in p1["data"]] == ids[::-1][:2] and p1["has_more"] and p1["last_id"] == ids[1]
        p2 = (await c.get("/v1/batches", params={"limit": 2, "after": p1["last_id"]})).json()
        assert [b["id"] for b in p2["data"]] == [ids[0]] and not p2["has_more"]
        for path in ("/v1/batches/batch_x", "/v1/files/file-x", "/v1/files/file-x/content"):
            r = await c.get(path)
            assert r.status_code == 404 and r.json()["error"]["code"] in ("batch_not_found", "file_not_found")
        assert (await c.post("/v1/batches/batch_x/cancel")).status_code == 404


async def test_job_sentences_never_cause_an_interactive_429_and_wait_behind_interactive_ones():
    """A job's sentences have their own queue: with the interactive queue limit at 4 and a job of 60 sentences
    queued, an interactive request of 4 sentences is admitted and sent before the job's remaining sentences."""
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    async with running_gateway(
        eng, max_queue_sentences=4, max_prompts_in_flight=1, max_sentences_per_prompt=1, job_max_lines_in_flight=3
    ) as (c, app):
        f = (await upload(c, jsonl([line(f"r{i}", *[f"Job {i} s{k}." for k in range(4)]) for i in range(15)]))).json()
        b = (
            await c.post(
                "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
            )
        ).json()
        while not eng.prompts:
            await asyncio.sleep(0.01)
        task = asyncio.create_task(c.post("/v1/translate", json={"sentences": [f"Mine {k}." for k in range(4)]}))
        await asyncio.sleep(0.1)
        eng.gate.set()
        r = await task
        assert r.status_code == 200
        order = [p[0] for p in eng.prompts]
        first_mine = order.index("Mine 0.")
        assert order[first_mine : first_mine + 4] == [f"Mine {k}." for k in range(4)]  # none of the job's in between
        assert first_mine <= 2  # at most the job prompt(s) already in flight went first
        b = await wait_status(c, b["id"], {"completed"})
        assert b["request_counts"]["completed"] == 15


async def test_persistent_memory_survives_restart_and_is_bypassable(tmp_path):
    eng = FakeEngine()
    async with running_gateway(eng, data_dir=str(tmp_path)) as (c, app):
        await c.post("/v1/translate", json={"sentences": ["The museum is closed on Mondays."]})
    assert len(eng.prompts) == 1
    eng2 = FakeEngine()
    async with running_gateway(eng2, data_dir=str(tmp_path)) as (c, app):
        r = (await c.post("/v1/translate", json={"sentences": ["The  museum is closed on Mondays. "]})).json()
        # the text's own trailing space is layout: it stays
        assert r["translations"][0]["text"] == "[de] The museum is closed on Mondays. " and eng2.prompts == []
        assert r["usage"]["memory_hits"] == 1
        m = (await c.get("/metrics")).text
        assert 'batchmt_reused_sentences_total{kind="memory"} 1.0' in m
        r2 = (
            await c.post(
                "/v1/translate", json={"sentences": ["The museum is closed on Mondays."], "translation_memory": False}
            )
        ).json()
        assert r2["translations"][0]["status"] == "ok" and len(eng2.prompts) == 1


async def test_flagged_slot_is_never_remembered(tmp_path):
    eng = FakeEngine(responder=lambda srcs: list(srcs))  # the model copies its input: a flagged 'copy' slot
    async with running_gateway(eng, data_dir=str(tmp_path), max_sentences_per_prompt=1) as (c, app):
        r = (await c.post("/v1/translate", json={"sentences": ["Copy me please now."]})).json()
        t = r["translations"][0]  # kept as the model's own answer (alone in its prompt): delivered, flagged
        assert t["status"] in ("ok", "suspect") and t["text"] == "Copy me please now."
        await app.state.gateway.memory.flush()
        assert await app.state.jobs.store.tm_size() == 0
        n = len(eng.prompts)
        await c.post("/v1/translate", json={"sentences": ["Copy me please now."]})
        assert len(eng.prompts) > n  # not served from the memory


async def test_memory_bound_holds_through_the_api(tmp_path):
    async with running_gateway(data_dir=str(tmp_path), translation_memory_size=5) as (c, app):
        for i in range(4):
            await c.post("/v1/translate", json={"sentences": [f"Sentence {i}{k} is here." for k in range(3)]})
            await app.state.gateway.memory.flush()
        assert await app.state.jobs.store.tm_size() == 5


@pytest.mark.parametrize("quality", ["best"])
async def test_ensemble_results_are_remembered_under_their_own_signature(tmp_path, quality):
    async with running_gateway(data_dir=str(tmp_path)) as (c, app):
        fast = (await c.post("/v1/translate", json={"sentences": ["Good morning to you."]})).json()
        best = (await c.post("/v1/translate", json={"sentences": ["Good morning to you."], "quality": quality})).json()
        assert fast["signature"] != best["signature"]
        await app.state.gateway.memory.flush()
        store = app.state.jobs.store
        from batchmt_server.pipeline.memory import normalise

        assert await store.tm_get("", best["signature"], [normalise("Good morning to you.")], time.time())
        assert await store.tm_get("", fast["signature"], [normalise("Good morning to you.")], time.time())


async def test_job_prompt_cap_leaves_places_free_halves_under_interactive_load_and_grows_back():
    eng = FakeEngine()
    eng.gate = asyncio.Event()
    async with running_gateway(eng, max_prompts_in_flight=8, max_sentences_per_prompt=1) as (c, app):
        b = app.state.gateway.batcher
        assert b.job_capacity.maximum == 6  # a quarter of the places stay free for interactive prompts
        job = b.submit([f"Job sentence {i}." for i in range(20)], 1, priority=1)
        while len(eng.prompts) < 6:
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.05)
        assert len(eng.prompts) == 6  # the job holds at most 6 of the 8 places
        mine = asyncio.create_task(c.post("/v1/translate", json={"sentences": ["Mine goes first."]}))
        while ["Mine goes first."] not in eng.prompts:  # a free place: sent at once, not after a job prompt
            await asyncio.sleep(0.01)
        await asyncio.sleep(0.5)
        assert b.job_capacity.value == 1  # halved every 0.1 s while the interactive sentence was in flight
        eng.gate.set()
        assert (await mine).status_code == 200
        await asyncio.gather(*job)
        eng.delay = 0.05  # job work keeps waiting, so the cap has a reason to grow
        extra = b.submit([f"More job {i}." for i in range(60)], 2, priority=1)
        await asyncio.sleep(0.8)
        assert b.job_capacity.value >= 3  # grows back by one every 0.25 s without interactive work
        await asyncio.gather(*extra)


async def test_an_upload_larger_than_a_translate_body_passes_the_front_and_its_own_limit_holds():
    """The front's body limit fits translate requests; /v1/files has the file limit (job_max_file_bytes)."""
    async with running_gateway(max_body_bytes=20_000, job_max_file_bytes=200_000) as (c, app):
        rows = jsonl([line(f"r{i}", f"Sentence number {i} is here.") for i in range(1000)])
        assert 20_000 < len(rows) < 200_000
        r = await upload(c, rows)
        assert r.status_code == 200, r.text
        r = await upload(c, rows * 3)
        assert r.status_code == 413
        r = await c.post("/v1/translate", json={"sentences": ["x" * 300] * 100})  # 30 KB: over the body limit
        assert r.status_code == 413 and r.json()["error"]["code"] == "body_too_large"  # translate's rule unchanged


async def test_with_keys_on_files_and_batches_belong_to_their_key():
    import httpx

    from batchmt_server.auth.keys import InProcessKeyStore, KeyRecord, KeyRing, hash_key
    from batchmt_server.http.app import create_app
    from batchmt_server.settings import Settings

    alice, bob, admin = "alice-key-0123456789abcdef", "bob-key-0123456789abcdef", "admin-key-0123456789abcdef"
    store = InProcessKeyStore()
    store._keys["a"] = KeyRecord(id="a", name="alice", key_hash=hash_key(alice), role="user")
    store._keys["b"] = KeyRecord(id="b", name="bob", key_hash=hash_key(bob), role="user")
    keys = KeyRing(
        store, [KeyRecord(id="adm", name="admin", key_hash=hash_key(admin), role="admin", source="env")], refresh_s=0.0
    )
    s = Settings(engine="fake", max_wait_ms=1, warmup=False, calibration="off")
    app = create_app(s, engine=FakeEngine(), keys=keys)
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.gateway.ready.wait(), 5)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t") as c:

            def as_(key: str) -> dict:
                return {"authorization": f"Bearer {key}"}

            f = (
                await c.post(
                    "/v1/files",
                    data={"purpose": "batch"},
                    headers=as_(alice),
                    files={"file": ("a.jsonl", jsonl([line("x", "Hello there.")]))},
                )
            ).json()
            b = (
                await c.post(
                    "/v1/batches",
                    headers=as_(alice),
                    json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"},
                )
            ).json()
            assert b["status"] == "in_progress"
            for path in (f"/v1/files/{f['id']}", f"/v1/files/{f['id']}/content", f"/v1/batches/{b['id']}"):
                assert (await c.get(path, headers=as_(bob))).status_code == 404  # another tenant's: not there
                assert (await c.get(path, headers=as_(alice))).status_code == 200
                assert (await c.get(path, headers=as_(admin))).status_code == 200
            assert (await c.post(f"/v1/batches/{b['id']}/cancel", headers=as_(bob))).status_code == 404
            r = await c.post(
                "/v1/batches",
                headers=as_(bob),
                json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"},
            )
            assert r.status_code == 404  # bob cannot run alice's file
            assert (await c.get("/v1/batches", headers=as_(bob))).json()["data"] == []
            assert [x["id"] for x in (await c.get("/v1/batches", headers=as_(alice))).json()["data"]] == [b["id"]]
            assert [x["id"] for x in (await c.get("/v1/batches", headers=as_(admin))).json()["data"]] == [b["id"]]
            assert (await c.get("/v1/files", headers=as_(bob))).json()["data"] == []
            assert (await c.get("/v1/batches")).status_code == 401


async def test_a_batch_is_charged_to_its_keys_quota_when_created():
    import httpx

    from batchmt_server.auth.keys import InProcessKeyStore, KeyRecord, KeyRing, hash_key
    from batchmt_server.http.app import create_app
    from batchmt_server.settings import Settings

    key = "quota-key-0123456789abcdef"
    store = InProcessKeyStore()
    store._keys["q"] = KeyRecord(id="q", name="q", key_hash=hash_key(key), role="user", chars_per_day=100)
    s = Settings(engine="fake", max_wait_ms=1, warmup=False, calibration="off")
    app = create_app(s, engine=FakeEngine(), keys=KeyRing(store, [], refresh_s=0.0))
    async with app.router.lifespan_context(app):
        await asyncio.wait_for(app.state.gateway.ready.wait(), 5)
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://t", headers={"authorization": f"Bearer {key}"}
        ) as c:
            small = (await upload(c, jsonl([line("a", "x" * 30), line("b", "y" * 30)]))).json()
            big = (await upload(c, jsonl([line("c", "z" * 50)]))).json()
            create = {"endpoint": "/v1/translate", "completion_window": "24h"}
            assert (await c.post("/v1/batches", json={"input_file_id": small["id"], **create})).status_code == 200
            r = await c.post("/v1/batches", json={"input_file_id": big["id"], **create})  # 60 + 50 > 100 a day
            assert r.status_code == 456 and r.json()["error"]["code"] == "quota_exceeded"
            assert (await c.get("/v1/usage")).json()["today"]["characters"] == 60


async def test_a_jobs_ensemble_lines_go_to_the_engine_at_job_priority():
    eng = FakeEngine()
    async with running_gateway(eng) as (c, app):
        f = (await upload(c, jsonl([line("b", "Good morning to you.", quality="best")]))).json()
        b = (
            await c.post(
                "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
            )
        ).json()
        await wait_status(c, b["id"], {"completed"})
        await c.post("/v1/translate", json={"sentences": ["Good evening to you."], "quality": "best"})
    by_source = {}
    for sources, params in zip(eng.prompts, eng.params):
        by_source.setdefault(sources[0], set()).add(params.priority)
    assert by_source["Good morning to you."] == {1} and by_source["Good evening to you."] == {0}


BAD_BODIES = [
    {"texts": ["Hello there."], "target_lang": "fr"},  # unsupported_language_pair
    {"texts": []},  # empty_texts
    {"texts": ["   "]},  # empty_text
    {"texts": ["x" * 20_001]},  # text_too_long (max_text_chars 20000 below)
    {"texts": ["<p>Open <b>tag</p>"], "tag_handling": "xml"},  # invalid_markup
    {"sentences": ["ok", ""]},  # empty_sentence (the legacy field's code)
    {"texts": ["Hello."], "quality": "perfect"},  # a schema error
]


async def test_a_line_is_refused_exactly_as_translate_refuses_its_body():
    """Each line's body goes through the same validator as /v1/translate: same status, code and param."""
    async with running_gateway(max_text_chars=20_000) as (c, _):
        want = []
        for body in BAD_BODIES:
            r = await c.post("/v1/translate", json=body)
            assert r.status_code in (413, 422), (body, r.text)
            err = r.json()["error"]
            want.append((r.status_code, err["code"], err["param"]))
        f = (
            await upload(
                c,
                jsonl(
                    [
                        {"custom_id": f"b{i}", "method": "POST", "url": "/v1/translate", "body": b}
                        for i, b in enumerate(BAD_BODIES)
                    ]
                ),
            )
        ).json()
        b = (
            await c.post(
                "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "24h"}
            )
        ).json()
        assert b["request_counts"] == {"total": len(BAD_BODIES), "completed": 0, "failed": len(BAD_BODIES)}
        b = await wait_status(c, b["id"], {"completed"})
        errors = {e["custom_id"]: e for e in await content(c, b["error_file_id"])}
    for i, (status, code, param) in enumerate(want):
        e = errors[f"b{i}"]
        got = (e["response"]["status_code"], e["error"]["code"], e["error"]["param"])
        if code == "invalid_request":  # a schema error: the same code; the line's param says where in the body
            assert got[:2] == (status, code) and got[2].startswith("body"), (BAD_BODIES[i], got)
        else:
            assert got == (status, code, f"body.{param}"), (BAD_BODIES[i], got, want[i])


def test_validated_lines_carry_their_characters_and_texts():
    from batchmt_server.jobs.serving import validate_lines
    from batchmt_server.settings import Settings

    lines = validate_lines(jsonl([line("a", "Hello there.", "Bye."), "not json", line("b", "Four")]), Settings())
    assert [(ln.custom_id, ln.characters, ln.texts) for ln in lines] == [("a", 16, 2), (None, 0, 0), ("b", 4, 1)]
    assert lines[0].body is not None and json.loads(lines[0].body)["sentences"] == ["Hello there.", "Bye."]
    assert lines[1].body is None and json.loads(lines[1].error_output or "")["error"]["code"] == "invalid_json"

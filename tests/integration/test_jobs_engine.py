"""A small batch job on the real engine (embedded model, in-process vLLM with priority scheduling): its output
equals what /v1/translate returns for the same sentences, with the same signature."""

from __future__ import annotations

import asyncio
import json
import time

import httpx
import pytest

pytestmark = [pytest.mark.engine, pytest.mark.slow]

LINES = [
    ["The garden behind the house is full of roses.", "My sister works at the post office."],
    ["We will meet at the station at noon."],
]


async def test_job_output_equals_translate_for_the_same_sentences(gateway_app):
    transport = httpx.ASGITransport(app=gateway_app)
    async with httpx.AsyncClient(transport=transport, base_url="http://gateway", timeout=600) as c:
        # the memory is bypassed on both sides, so both really go through the engine
        rows = [
            {
                "custom_id": f"l{i}",
                "method": "POST",
                "url": "/v1/translate",
                "body": {"sentences": s, "translation_memory": False},
            }
            for i, s in enumerate(LINES)
        ]
        f = (
            await c.post(
                "/v1/files",
                data={"purpose": "batch"},
                files={"file": ("in.jsonl", "".join(json.dumps(r) + "\n" for r in rows))},
            )
        ).json()
        b = (
            await c.post(
                "/v1/batches", json={"input_file_id": f["id"], "endpoint": "/v1/translate", "completion_window": "1h"}
            )
        ).json()
        deadline = time.monotonic() + 300
        while (b := (await c.get(f"/v1/batches/{b['id']}")).json())["status"] != "completed":
            assert time.monotonic() < deadline, b
            await asyncio.sleep(0.5)
        assert b["request_counts"] == {"total": 2, "completed": 2, "failed": 0}
        assert b["usage"]["sentences"] == 3 and b["usage"]["output_tokens"] > 0
        out = {
            o["custom_id"]: o["response"]["body"]
            for o in map(json.loads, (await c.get(f"/v1/files/{b['output_file_id']}/content")).text.splitlines())
        }
        for i, sentences in enumerate(LINES):
            direct = (await c.post("/v1/translate", json={"sentences": sentences, "translation_memory": False})).json()
            job = out[f"l{i}"]
            assert job["signature"] == direct["signature"]
            assert [t["text"] for t in job["translations"]] == [t["text"] for t in direct["translations"]]
            assert all(t["status"] == "ok" and t["text"] for t in job["translations"])

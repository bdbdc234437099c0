"""Self-training's whole loop on a tiny random-weight Llama: Grow → reward → data → train → merge → serve.

The tiny model (2 layers, hidden 128, the embedded Gemma's tokenizer, random weights written with
``save_pretrained`` so that training has weights to change) writes noise that the parser rejects, so Grow runs
twice: once on the fake engine through the same stage code (``engine="fake"``: answers that parse, so Improve
keeps some and training gets data), and once, at the end, on the real vLLM engine serving the merged model, where
every candidate must come back recorded with the parser's reason. Two training steps, the merge, then the merged
folder is served by the real gateway and a request comes back whole in its own slots.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from batchmt_server.selftrain.grow import read_records
from batchmt_server.selftrain.pipeline import RoundConfig, grow_with_engine, run_round
from helpers import write_tiny_model

pytestmark = [pytest.mark.engine, pytest.mark.slow, pytest.mark.isolated]

# written for this test
SOURCES = [
    "The garden gate squeaks every time the wind blows.",
    "We ordered soup and fresh bread for lunch.",
    "The library closes early on Fridays in summer.",
    "My brother repairs old bicycles in his garage.",
    "The concert was postponed until next spring.",
    "Please switch off the lights when you leave the room.",
]


def _settings(root: Path, **kw):
    from batchmt_server.settings import Settings

    base = dict(
        template="en-de-packed",
        template_form="completion",
        dtype="float32",
        enforce_eager=True,
        max_model_len=2048,
        max_num_seqs=8,
        cpu_kvcache_gib=1,
        calibration="off",
        cache_dir=root / "cache",
        data_dir=root / "data",
        translation_memory_size=0,
        max_prompts_in_flight=8,
    )
    base.update(kw)
    return Settings(**base)


async def test_selftrain_round_on_a_tiny_model(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import load_file

    base = tmp_path / "tiny"
    write_tiny_model("llama", base, weights=True)  # the prompt form is set to completion below
    src = tmp_path / "en.txt"
    src.write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
    cfg = RoundConfig(
        work=tmp_path / "round",
        sources=src,
        limit=None,
        k=2,
        keep=0.5,
        reward="mbr",
        base_model=str(base),
        batch_tokens=400,
        epochs=1.0,
        max_pack=3,
        learning_rate=1e-2,
    )
    # Grow (+ round trip) through the stage code on the fake engine; then Improve, data, 2 training steps, merge
    out = await asyncio.to_thread(run_round, _settings(tmp_path, engine="fake"), cfg)
    grow = json.loads((cfg.work / "grow.done").read_text())
    assert grow["sources"] == len(SOURCES) and grow["candidates"] == 3 * len(SOURCES)
    improve = json.loads((cfg.work / "improve.done").read_text())
    assert improve["kept"] == len(SOURCES) // 2  # keep 0.5: ReST's threshold as a quantile
    train = json.loads((cfg.work / "train.done").read_text())
    assert train["steps"] >= 2 and train["target_tokens"] > 0 and train["tokens_per_second"] > 0
    # the merged folder is the base with changed weights, and carries its model card
    before = load_file(str(base / "model.safetensors"))
    after = load_file(str(out / "model.safetensors"))
    changed = [k for k in before if k in after and not torch.equal(before[k], after[k])]
    assert any("q_proj" in k for k in changed)
    assert "ReST" in (out / "README.md").read_text()
    card = json.loads((out / "batchmt-selftrain.json").read_text())
    assert card["improve"]["reward"] == "mbr" and card["train"]["steps"] == train["steps"]

    # a second run resumes: every stage is done, nothing is grown or trained again
    mtime = (out / "model.safetensors").stat().st_mtime
    assert await asyncio.to_thread(run_round, _settings(tmp_path, engine="fake"), cfg) == out
    assert (out / "model.safetensors").stat().st_mtime == mtime

    # serve the merged model on the real engine: Grow's real path, then the gateway
    await _serve_and_grow(tmp_path, out)


async def _serve_and_grow(tmp_path: Path, out: Path) -> None:
    from batchmt_server.engines import build_engine
    from batchmt_server.http.app import create_app

    settings = _settings(tmp_path, model=str(out), served_model_name="tiny-selftrained")
    engine = build_engine(settings)
    await engine.start()
    try:
        real = tmp_path / "real-grow.jsonl"
        info = await grow_with_engine(
            settings, list(enumerate(SOURCES[:3])), real, k=1, temperature=0.7, seed=1, engine=engine
        )
        recs = read_records(real.with_suffix(".rt.jsonl"))
        assert [r.index for r in sorted(recs, key=lambda r: r.index)] == [0, 1, 2]
        assert all(len(r.candidates) == 2 for r in recs)  # greedy + 1 sampled, each recorded
        assert all(c.ok or c.reason for r in recs for c in r.candidates)  # noise is flagged, never kept silently
        assert info["model"] == "tiny-selftrained"

        app = create_app(settings, engine=engine)
        async with app.router.lifespan_context(app):
            gw = app.state.gateway
            t0 = time.monotonic()
            while not gw.ready.is_set():
                assert not gw.boot_error, gw.boot_error
                assert time.monotonic() - t0 < 600
                await asyncio.sleep(0.5)
            async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://t", timeout=600) as c:
                r = await c.post("/v1/translate", json={"texts": SOURCES[:2]})
                assert r.status_code == 200, r.text
                body = r.json()
                assert len(body["translations"]) == 2  # every text back in its own slot, translated or failed
                assert "tiny-selftrained" in body["signature"]
    finally:
        await engine.close()

"""Self-training (ReST) without an engine: the rewards, the Improve filter, the data builder, Grow's resume."""

from __future__ import annotations

import json
import random
from pathlib import Path
from types import SimpleNamespace

import pytest

from batchmt_server.engines.fake import FakeEngine
from batchmt_server.pipeline.runner import PromptRunner
from batchmt_server.prompting.template import Template
from batchmt_server.selftrain.grow import Candidate, GrowRecord, grow, read_records, reverse_template
from batchmt_server.selftrain.improve import build_data, completion_for, improve, packs
from batchmt_server.selftrain.pipeline import load_sources
from batchmt_server.selftrain.reward import rank, score_records, select, spearman
from batchmt_server.telemetry.stats import Stats

# written for these tests
SOURCES = [
    "The ferry leaves the harbour every two hours.",
    "Our neighbours painted their fence bright green.",
    "The school library lends out board games.",
    "He fixed the leaking tap with an old towel.",
    "The bakery sells out of rye bread by noon.",
]


def _rec(i: int, source: str, *texts: str | None, reasons: tuple = ()) -> GrowRecord:
    cands = []
    for n, t in enumerate(texts):
        reason = reasons[n] if n < len(reasons) else None
        cands.append(Candidate(t, reason, -0.5 - n, 10, sampled=n > 0))
    return GrowRecord(i, source, cands)


def test_rank_and_spearman():
    assert rank([3.0, 1.0, 2.0, 2.0]) == [4.0, 1.0, 2.5, 2.5]
    assert spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    with pytest.raises(ValueError):
        spearman([1, 2], [1, 2])


def test_mbr_prefers_the_consensus_and_rejected_candidates_never_score():
    rec = _rec(
        0,
        "The ferry leaves the harbour every two hours.",
        "Die Fähre verlässt den Hafen alle zwei Stunden.",
        "Die Fähre fährt alle zwei Stunden aus dem Hafen.",
        "Die Fähre verlässt den Hafen alle zwei Stunden!",
        "Hund Katze Maus",
        "The ferry leaves the harbour every two hours.",
        reasons=(None, None, None, None, "copy"),
    )
    pool = score_records([rec])
    assert len(pool) == 4  # the copy has no score
    by_text = {s.text: s.scores["mbr"] for s in pool}
    assert by_text["Hund Katze Maus"] == min(by_text.values())
    assert max(by_text, key=by_text.__getitem__).startswith("Die Fähre verlässt")


def test_roundtrip_reward_uses_the_back_translation():
    rec = _rec(0, "The school library lends out board games.", "A", "B")
    rec.candidates[0].back = "The school library lends out board games."
    rec.candidates[1].back = "Something else entirely."
    pool = score_records([rec])
    assert pool[0].scores["roundtrip"] == 100.0
    assert pool[1].scores["roundtrip"] < 30


def test_select_keeps_the_best_per_source_above_a_rising_threshold():
    recs = [_rec(i, s, f"x{i}a", f"x{i}b") for i, s in enumerate(SOURCES)]
    pool = score_records(recs)
    for s in pool:  # a known reward: the source index, + 0.5 for the sampled candidate
        s.scores["r"] = s.record + (0.5 if s.candidate else 0.0)
    kept, threshold = select(pool, "r", 0.6)
    assert [s.record for s in kept] == [2, 3, 4]
    assert all(s.candidate == 1 for s in kept)
    assert threshold == 2.5
    kept_all, _ = select(pool, "r", 1.0)
    assert len(kept_all) == 5
    with pytest.raises(ValueError):
        select(pool, "r", 0)


def test_training_completions_parse_back_with_the_gateways_parser():
    """What the model is taught to write is exactly what the serving parser accepts, slot by slot."""
    t = Template.load("en-de-zero")
    pairs = [(s, f"Übersetzung {i}: {s[:10].strip()}") for i, s in enumerate(SOURCES)]
    for n in (1, 2, 5):
        chunk = pairs[:n]
        completion = completion_for(t, chunk)
        assert completion.endswith("\n\n")
        assert not t.prefix.count("German 1:")  # zero-shot: no examples in the prompt
        text = completion[: completion.index("\n\n")]  # the engine stops at the blank line
        slots = t.parse(text, [s for s, _ in chunk], "stop")
        assert [sl.text for sl in slots] == [tgt for _, tgt in chunk]
        assert all(sl.ok for sl in slots)


def test_packs_cover_every_pair_once_in_sizes_two_to_max():
    pairs = [(f"s{i}", f"t{i}") for i in range(41)]
    out = packs(pairs, 8, random.Random(1))
    assert sorted(p for pack in out for p in pack) == sorted(pairs)
    assert all(2 <= len(p) <= 9 for p in out)  # a single last one joins the pack before it


def test_improve_and_build_data(tmp_path: Path):
    recs = [_rec(i, s, f"Deutsch {i} eins", f"Deutsch {i} zwei") for i, s in enumerate(SOURCES)]
    info = improve(recs, "length", 1.0, tmp_path / "selected.jsonl")
    assert info["kept"] == 5
    cfg = SimpleNamespace(zero_template="en-de-zero", seed=3, packed_share=1.0, max_pack=4)
    settings = SimpleNamespace(prompts_dir=None)
    d = build_data(tmp_path / "selected.jsonl", tmp_path / "train.jsonl", settings, cfg)
    rows = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert d["zero_shot"] == 5 and d["packed_sentences"] == 5 and len(rows) == d["examples"]
    for r in rows:
        assert r["prompt"].startswith(Template.load("en-de-zero").instruction)
        assert r["prompt"].count("\n1. ") == 1


def test_load_sources_filters_dedupes_and_keeps_line_numbers(tmp_path: Path):
    f = tmp_path / "en.txt"
    f.write_text("short\n" + "\n".join(SOURCES) + "\n" + SOURCES[0] + "\n")
    rows = load_sources(f, None, seed=1)
    assert sorted(rows) == [(i + 1, s) for i, s in enumerate(SOURCES)]
    assert len(load_sources(f, 2, seed=1)) == 2


def test_reverse_template_swaps_languages():
    fwd = Template.load("en-de-packed")
    rev = reverse_template(fwd)
    assert (rev.source_label, rev.target_label) == ("German", "English")
    assert "Translate each German sentence into English" in rev.instruction
    assert rev.examples[0][0] == (fwd.examples[0][0][1], fwd.examples[0][0][0])


async def test_grow_through_the_runner_and_resume(tmp_path: Path):
    """Greedy + k sampled candidates per source through the gateway's runner and parser; a second run only grows
    what is missing (a kill mid-line is dropped and grown again)."""

    def respond(srcs: list[str]) -> list[str]:
        seed = engine.last_params.seed if engine.last_params else None
        if seed is None:
            return [f"Satz: {s}" for s in srcs]
        return [s if seed % 3 == 0 else f"Satz {seed % 7}: {s}" for s in srcs]  # some samples copy the source

    engine = FakeEngine(responder=respond)
    runner = PromptRunner(engine, Template.load("en-de-packed"), Stats(), max_in_flight=4)
    out = tmp_path / "grow.jsonl"
    first = list(enumerate(SOURCES[:3]))
    assert await grow(runner, first, out, k=3, seed=1) == 3
    with out.open("a") as f:
        f.write('{"index": 4, "source": "cut by a ki')  # a line a kill left half written
    assert await grow(runner, list(enumerate(SOURCES)), out, k=3, seed=1) == 2
    recs = read_records(out)
    assert sorted(r.index for r in recs) == [0, 1, 2, 3, 4]
    for r in recs:
        assert len(r.candidates) == 4 and not r.candidates[0].sampled
        assert r.candidates[0].ok and r.candidates[0].text == f"Satz: {r.source}"
        assert all(c.reason == "copy" for c in r.candidates if c.text == r.source)


def test_completion_loss_equals_the_models_own_loss_on_the_labels():
    """The training loss computes the output layer only at completion positions: the same number as transformers'."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    from batchmt_server.selftrain.train import batches, completion_loss

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=50,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(cfg)
    ids = torch.randint(0, 50, (2, 12))
    mask = torch.ones_like(ids)
    mask[1, 9:] = 0
    labels = ids.clone()
    labels[:, :6] = -100  # the prompt
    labels[1, 9:] = -100  # padding
    want = model(input_ids=ids, attention_mask=mask, labels=labels).loss
    assert torch.allclose(completion_loss(model, ids, mask, labels), want, atol=1e-5)
    # batches: similar lengths together within the token budget, every index once
    groups = batches([10, 200, 12, 190, 11], 400, random.Random(0))
    assert sorted(i for g in groups for i in g) == [0, 1, 2, 3, 4]
    assert all(max([10, 200, 12, 190, 11][i] for i in g) * len(g) <= 400 for g in groups)


def test_combined_rewards_average_ranks_and_unknown_names_are_refused():
    recs = [_rec(0, SOURCES[0], "Die Fähre fährt.", "Die Fähre fährt alle zwei Stunden ab.", "Fähre")]
    pool = score_records(recs, ["mbr+length"])
    r_mbr, r_len = rank([s.scores["mbr"] for s in pool]), rank([s.scores["length"] for s in pool])
    for i, s in enumerate(pool):
        assert s.scores["mbr+length"] == pytest.approx((r_mbr[i] + r_len[i]) / 2 / len(pool))
    assert "mbr+length" not in score_records(recs)[0].scores  # combinations only when asked for
    with pytest.raises(ValueError, match="unknown reward 'bleu'"):
        score_records(recs, ["mbr+bleu"])


def test_export_adapter_names_the_base_not_a_local_path(tmp_path: Path):
    from batchmt_server.selftrain.pipeline import RoundConfig, export_adapter

    work = tmp_path / "round"
    (work / "adapter").mkdir(parents=True)
    (work / "adapter" / "adapter_model.safetensors").write_bytes(b"weights")
    (work / "adapter" / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "/root/x", "r": 16}))
    (work / "improve.done").write_text(json.dumps({"reward": "mbr+logprob+length", "kept": 3}))
    cfg = RoundConfig(work=work, sources=tmp_path / "en.txt", base_model="embedded-base")
    dest = export_adapter(cfg, tmp_path / "shipped", {"scores": {"chrf": 1.0}})
    assert json.loads((dest / "adapter_config.json").read_text()) == {
        "base_model_name_or_path": "embedded-base",
        "r": 16,
    }
    card = json.loads((dest / "batchmt-selftrain.json").read_text())
    assert card["improve"]["kept"] == 3 and card["scores"] == {"chrf": 1.0} and "adapter" not in card
    assert (dest / "adapter_model.safetensors").read_bytes() == b"weights" and (dest / "README.md").exists()


async def test_the_store_s_traffic_becomes_grow_sources(tmp_path):
    """--sources store: translation-memory sources and the sentences of finished job lines, each once; lines
    still pending or failed are not read."""
    from batchmt_server.protocol.schemas import TranslateRequest
    from batchmt_server.selftrain.pipeline import store_sentences
    from batchmt_server.stores import LineResult, NewLine, build_store
    from helpers import job_record

    store = build_store(None, tmp_path)
    await store.open()
    try:
        await store.tm_put(
            "", "sig", [("the harbour was quiet that night", "der Hafen war still")], now=1.0, max_entries=10
        )
        body = {"texts": ["Our lab moved to the third floor. The old rooms are empty now."]}
        await store.create_job(
            job_record(),
            [
                NewLine(1, "c1", body=json.dumps(body)),
                NewLine(2, "c2", body=json.dumps({"texts": ["A line nobody finished yet."]})),
                # stored as the job path stores it: the validated request, both fields, the unused one null
                NewLine(3, "c3", body=TranslateRequest(sentences=["The ferry leaves at noon."]).model_dump_json()),
            ],
        )
        (c1, _, c3) = await store.claim_lines("A", 3, 10, now=0.0)
        await store.complete_lines("A", [LineResult("batch_1", c.line_no, True, "{}") for c in (c1, c3)])
        got = await store_sentences(store, 100)
    finally:
        await store.close()
    assert got == [
        "the harbour was quiet that night",
        "Our lab moved to the third floor.",
        "The old rooms are empty now.",
        "The ferry leaves at noon.",
    ]


def test_a_later_round_skips_the_earlier_rounds_sources(tmp_path):
    f = tmp_path / "en.txt"
    f.write_text("".join(f"This is source sentence number {i} here.\n" for i in range(50)))
    first = load_sources(f, 20, seed=7)
    second = load_sources(f, 20, seed=7, skip=20)
    assert len(first) == len(second) == 20
    assert not {i for i, _ in first} & {i for i, _ in second}


def test_a_later_round_s_model_card_carries_the_earlier_round(tmp_path):
    from batchmt_server.selftrain.pipeline import RoundConfig
    from batchmt_server.selftrain.train import _card_from_work

    earlier = tmp_path / "round1-adapter"
    earlier.mkdir()
    (earlier / "batchmt-selftrain.json").write_text(json.dumps({"improve": {"keep": 0.8}}))
    work = tmp_path / "round2"
    work.mkdir()
    (work / "improve.done").write_text(json.dumps({"keep": 0.7}))
    cfg = RoundConfig(work=work, sources=tmp_path / "en.txt", init_adapter=earlier)
    card = _card_from_work(cfg, "embedded-base", work / "adapter")
    assert card["improve"] == {"keep": 0.7}
    assert card["previous_round"] == {"improve": {"keep": 0.8}}

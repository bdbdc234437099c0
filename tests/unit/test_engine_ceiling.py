"""The engine-ceiling benchmark's arithmetic and report helpers (the runs themselves need an engine)."""

import math

from benchmarks.engine_ceiling import (
    ab_part_section,
    ab_tasks,
    best_config,
    fmt,
    md_table,
    median,
    mismatches,
    parse_grid,
    percentile,
    ratio,
    summarize_runs,
    sweep_conclusion,
    sweep_noise,
    warning_text,
    workload_rows,
)


def test_median_and_percentile():
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([1.0, 2.0, 3.0, 4.0]) == 2.5
    assert math.isnan(median([]))
    xs = [float(i) for i in range(1, 11)]
    assert percentile(xs, 0.5) == 6.0  # bench.py's nearest rank: sorted[int(0.5 * 10)]
    assert percentile(xs, 0.95) == 10.0
    assert math.isnan(percentile([], 0.5))


def test_summarize_runs_is_the_median_of_tokens_per_second():
    runs = [{"seconds": 2.0, "tokens": 100}, {"seconds": 1.0, "tokens": 100}, {"seconds": 4.0, "tokens": 100}]
    s = summarize_runs(runs)
    assert s["tok_s"] == 50.0
    assert s["tok_s_runs"] == [50.0, 100.0, 25.0]
    assert s["seconds"] == 2.0


def test_ratio_fmt_and_grid():
    assert ratio(1.0, 4.0) == 0.25
    assert ratio(1.0, 0.0) is None and ratio(None, 1.0) is None and ratio(1.0, float("nan")) is None
    assert fmt(None) == "–" and fmt(float("nan")) == "–" and fmt(3) == "3" and fmt(2.345, 2) == "2.35"
    assert parse_grid("default, 2048,8192") == [None, 2048, 8192]


def test_best_config_skips_errors():
    rows = [
        {"max_num_seqs": 32, "sent_s": 2.0},
        {"max_num_seqs": 64, "sent_s": 9.0, "error": "boom"},
        {"max_num_seqs": 128, "sent_s": 3.0},
        {"max_num_seqs": 256},
    ]
    best = best_config(rows)
    assert best is not None and best["max_num_seqs"] == 128
    assert best_config([{"error": "x", "sent_s": 1.0}]) is None


def test_mismatches_counts_only_outputs_both_sides_have():
    assert mismatches([[1, 2], [3], None], [[1, 2], [4], [5]]) == (1, 2)
    assert mismatches([[1]], [[1], [2]]) == (0, 1)


def test_workload_fractions_use_the_matching_concurrency():
    ceil = [
        {"concurrency": 8, "prefix": False, "tok_s": 50.0},
        {"concurrency": 64, "prefix": False, "tok_s": 200.0},
        {"concurrency": 256, "prefix": False, "tok_s": 400.0},
        {"concurrency": 64, "prefix": True, "tok_s": 100.0},
    ]
    rows = workload_rows(ceil, [{"in_flight": 256, "compl_tok_s": 100.0}, {"in_flight": 64, "compl_tok_s": 80.0}])
    assert rows[0]["ceiling_concurrency"] == 256 and rows[0]["fraction"] == 0.25 and rows[0]["fraction_prefix"] is None
    assert rows[1]["ceiling_concurrency"] == 64 and rows[1]["fraction"] == 0.4 and rows[1]["fraction_prefix"] == 0.8
    assert workload_rows([], [{"in_flight": 8, "compl_tok_s": 1.0}])[0]["fraction"] is None


def test_md_table():
    assert md_table(["a", "b"], [["1", "2"]]) == ["| a | b |", "|---|---|", "| 1 | 2 |"]


def test_warning_text_keeps_only_the_interesting_vllm_warnings():
    line = (
        "(Worker pid=1) WARNING 11-27 10:18:46 [cpu_worker.py:130] Speculative decoding on CPU without Intel "
        "OpenMP in LD_PRELOAD will cause significant performance loss."
    )
    assert warning_text(line) == (
        "Speculative decoding on CPU without Intel OpenMP in LD_PRELOAD will cause significant performance loss."
    )
    assert warning_text("(EngineCore pid=2) INFO 11-27 [core.py:1] Speculative config") is None
    assert warning_text("(Worker pid=1) WARNING 11-27 [x.py:1] something else") is None


def test_sweep_noise_from_rows_that_are_the_same_engine_in_effect():
    rows = [
        {"max_num_seqs": 32, "max_num_batched_tokens": 2048, "sent_s": 2.0},
        {"max_num_seqs": 128, "max_num_batched_tokens": 2048, "sent_s": 2.5},
        {"max_num_seqs": 256, "max_num_batched_tokens": 2048, "sent_s": 2.75},  # = 128 with 128 sentences
        {"max_num_seqs": 128, "max_num_batched_tokens": 8192, "sent_s": 2.6},
    ]
    assert abs(sweep_noise(rows, 128) - 0.1) < 1e-9
    assert sweep_noise(rows, 256) is None
    best = best_config(rows)
    assert best is not None
    text = " ".join(sweep_conclusion(rows, best, 128))
    assert "max_num_seqs=256" in text and "10%" in text and "spans 38%" in text and "clearly" not in text


def test_logprobs_section_reports_the_median_ratio_and_whether_every_run_was_slower():
    import argparse

    args = argparse.Namespace(logprobs_max_num_seqs=64, eager=True, sentences=4)

    def run(name: str, lp: int | None, sent_s: float) -> dict:
        return {
            "kind": "workload",
            "name": name,
            "logprobs": lp,
            "arm": "off" if lp is None else "on",
            "sent_s": sent_s,
            "compl_tok_s": 10 * sent_s,
            "completion_tokens": 40,
        }

    results: dict = {}
    res = {"tasks": [run("off-1", None, 4.0), run("on-1", 0, 3.6), run("on-2", 0, 3.8), run("off-2", None, 4.2)]}
    text = "\n".join(ab_part_section("logprobs", args, res, results))
    assert results["logprobs_summary"]["ratio"] == (3.7 / 4.1)
    assert (
        "**0.90×**" in text
        and "every run with logprobs slower" in text
        and "the same completion tokens per run" in text
    )
    res["tasks"].append(run("on-3", 0, 4.5))
    text = "\n".join(ab_part_section("logprobs", args, res, results))
    assert "the runs overlap" in text


def test_token_ids_section_reports_the_ratio_and_the_frontend_cpu_of_both_arms():
    import argparse

    args = argparse.Namespace(logprobs_max_num_seqs=64, eager=True, sentences=4)

    def run(name: str, ids: bool, sent_s: float, cpu: float, tokens: int = 40) -> dict:
        return {
            "kind": "workload",
            "name": name,
            "token_ids_input": ids,
            "arm": "on" if ids else "off",
            "sent_s": sent_s,
            "compl_tok_s": 10 * sent_s,
            "completion_tokens": tokens,
            "frontend_cpu_s": cpu,
        }

    results: dict = {}
    res = {"tasks": [run("off-1", False, 4.0, 1.6), run("on-1", True, 4.2, 1.1), run("off-2", False, 4.1, 1.8)]}
    res["tasks"].append(run("on-2", True, 4.3, 1.0, tokens=41))
    text = "\n".join(ab_part_section("token_ids", args, res, results))
    s = results["token_ids_summary"]
    assert math.isclose(s["ratio"], 4.25 / 4.05) and math.isclose(s["frontend_cpu_on_median"], 1.05)
    assert math.isclose(s["frontend_cpu_off_median"], 1.7)
    assert "every run as token ids faster than every run as text" in text
    assert "frontend CPU 1.05 s as token ids vs 1.70 s as text" in text and "40–41 completion tokens per run" in text


async def test_burn_spends_the_asked_cpu_on_the_event_loop_until_stopped():
    import asyncio
    import time

    from benchmarks.engine_ceiling import burn

    stop = asyncio.Event()
    cpu = time.process_time()
    task = asyncio.create_task(burn(5.0, stop, period_s=0.01))
    await asyncio.sleep(0.15)  # ~10 bursts of 5 ms
    stop.set()
    await asyncio.wait_for(task, 1.0)
    spent = time.process_time() - cpu
    assert 0.02 < spent < 0.15, spent


def test_ab_tasks_alternate_the_arms_and_set_the_part_s_task_key_only_in_the_on_arm():
    import argparse

    args = argparse.Namespace(logprobs_repeats=2, sentences=8, burn_ms=1.5)
    tasks = ab_tasks("frontend_cpu", args)
    assert [t["name"] for t in tasks] == [
        "frontend-cpu-off-1",
        "frontend-cpu-on-1",
        "frontend-cpu-on-2",
        "frontend-cpu-off-2",
    ]
    assert [t["burn_ms"] for t in tasks] == [None, 1.5, 1.5, None]
    assert all(t["kind"] == "workload" and t["sentences"] == 8 for t in tasks)
    assert [t["logprobs"] for t in ab_tasks("logprobs", args) if t["arm"] == "on"] == [0, 0]

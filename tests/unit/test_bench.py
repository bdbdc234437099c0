"""The benchmark's report arithmetic (the runs themselves need an engine: ``make bench-quick``)."""

from benchmarks.bench import Result, table


def _row(md: str, mode: str) -> list[str]:
    line = next(x for x in md.splitlines() if x.startswith(f"| {mode} |"))
    return [c.strip() for c in line.strip("|").split("|")]


def _header(md: str) -> list[str]:
    return [c.strip() for c in md.splitlines()[0].strip("|").split("|")]


def test_ratios_are_against_the_baseline_of_the_same_load():
    base = Result(
        "baseline",
        "saturation",
        100,
        50.0,
        latencies=[1.0] * 100,
        prompt_tokens=800 * 100,
        cached_prompt_tokens=700 * 100,
        completion_tokens=40 * 100,
        engine_prompts=100,
        chrf=30.0,
    )
    fast = Result(
        "default",
        "saturation",
        100,
        25.0,
        latencies=[0.5] * 100,
        prompt_tokens=800 * 100,
        cached_prompt_tokens=750 * 100,
        completion_tokens=40 * 100,
        engine_prompts=90,
        chrf=29.0,
    )
    md = table([base, fast], {"saturation": base})
    h, row = _header(md), _row(md, "default")
    assert row[h.index("sent./s")] == "4.00"
    assert row[h.index("× base")] == "2.00"  # first "× base" column: throughput
    assert row[h.index("Δ base")] == "-1.0"
    assert row[h.index("engine prompts /100")] == "90"
    assert row[h.index("billed tok/sent")] == "90"


def test_a_subset_mode_is_compared_with_the_baseline_on_the_same_sentences():
    base = Result("baseline", "saturation", 512, 100.0, latencies=[1.0], chrf=30.0)
    sub = Result("pack-8", "saturation", 128, 100.0, latencies=[1.0], chrf=25.0, base_chrf=27.5, engine_prompts=16)
    md = table([base, sub], {"saturation": base})
    h, row = _header(md), _row(md, "pack-8")
    assert row[h.index("Δ base")] == "-2.5"  # not 25.0 - 30.0
    assert row[h.index("engine prompts /100")] == "12"


def test_billed_tokens_are_compared_per_sentence():
    base = Result(
        "baseline",
        "saturation",
        512,
        100.0,
        latencies=[1.0],
        prompt_tokens=512 * 800,
        cached_prompt_tokens=512 * 700,
        completion_tokens=512 * 20,
        chrf=30.0,
    )
    sub = Result(
        "naive", "saturation", 64, 100.0, latencies=[1.0], prompt_tokens=64 * 800, completion_tokens=64 * 20, chrf=30.0
    )
    md = table([base, sub], {"saturation": base})
    h, row = _header(md), _row(md, "naive")
    billed = h.index("billed tok/sent")
    assert row[billed] == "820"
    assert row[billed + 1] == "6.83"  # 820 / 120 per sentence, not 64 sentences' total over 512's


def test_spearman_rank_correlation():
    from benchmarks.bench import spearman

    assert spearman([0.1, 0.5, 0.9, 0.7], [10, 30, 60, 50]) == 1.0  # same order
    assert spearman([0.1, 0.5, 0.9], [60, 30, 10]) == -1.0
    assert abs(spearman([1, 1, 2], [1, 2, 3]) - 0.866) < 1e-3  # ties share their rank
    assert spearman([1, 2], [1, 2]) is None and spearman([1, 1, 1], [1, 2, 3]) is None


def test_resent_among_the_last_answers():
    r = Result("default", "saturation", 4, 1.0)
    assert r.resent_among_last(10) == "–"  # no per-request data (the baseline)
    r.resent_by_request = [(1.0, 0), (5.0, 1), (2.0, 0), (4.0, 0), (3.0, 2)]
    assert r.resent_among_last(2) == "1 of 2"  # the two slowest: 5.0 (re-sent) and 4.0
    assert r.resent_among_last(3) == "2 of 3"


async def test_running_sequences_are_sampled_from_the_first_busy_sample_to_the_last():
    import asyncio

    from prometheus_client import CollectorRegistry, Gauge

    import benchmarks.bench as bench

    registry = CollectorRegistry()
    gauge = Gauge("vllm:num_requests_running", "running", ["engine"], registry=registry)
    queued = Gauge("vllm:num_requests_waiting", "waiting", ["engine"], registry=registry)
    assert bench.engine_gauge("vllm:num_requests_running", registry) is None  # no label set yet: no sample
    assert bench.engine_gauge("vllm:no_such_gauge", registry) is None
    stop, into, waiting = asyncio.Event(), list[float](), list[float]()
    task = asyncio.create_task(bench.sample_running(into, stop, period_s=0.01, registry=registry, waiting=waiting))
    await asyncio.sleep(0.05)  # idle before the run: dropped
    for v in (3, 64, 64, 10):
        gauge.labels("0").set(v)
        gauge.labels("1").set(1)  # summed over label sets
        queued.labels("0").set(100 - v)
        await asyncio.sleep(0.03)
    gauge.labels("0").set(0)
    gauge.labels("1").set(0)
    await asyncio.sleep(0.05)  # idle after: dropped
    stop.set()
    await task
    assert into and into[0] == 4 and into[-1] == 11 and 65 in into and 0 not in into
    assert len(waiting) == len(into) and waiting[0] == 97 and waiting[-1] == 90
    r = Result("default", "saturation", 4, 1.0)
    assert r.mean_running is None
    r.running = [4.0, 65.0]
    assert r.mean_running == 34.5


def test_profiles_group_a_modes_runs_and_leave_the_bench_plumbing_out(tmp_path):
    from benchmarks.bench import profiles_md

    run = "_run_module_as_main (<frozen runpy>:198);run (benchmarks/bench.py:600);_run_once (asyncio/base_events.py:1)"
    (tmp_path / "default-whole-lines-0.txt").write_text(f"{run};translate (batchmt_server/translator.py:9) 3\n")
    (tmp_path / "default-whole-lines-2.txt").write_text(f"{run};parse (batchmt_server/parsing.py:4) 1\n")
    (tmp_path / "baseline-1.txt").write_text(f"{run};generate (vllm/v1/engine/async_llm.py:7) 5\n")
    md = profiles_md(sorted(tmp_path.glob("*.txt")))
    assert "## default-whole-lines (2 runs, 4 samples)" in md and "## baseline (1 runs, 5 samples)" in md
    assert "| 75.0% translate (batchmt_server/translator.py) | 75.0% translate (batchmt_server/translator.py) |" in md
    assert "bench.py" not in md and "base_events" not in md and "runpy" not in md  # every sample's frames

"""Prometheus export of :class:`~batchmt_server.telemetry.stats.Stats` (prometheus-client, its own registry).

A custom collector takes one :meth:`Stats.snapshot` per scrape, so what ``/metrics`` shows and what
the API reports come from the same numbers. With the in-process engine, vLLM's ``vllm:*`` metrics (in
prometheus-client's default registry) are served on the same endpoint.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

from prometheus_client import REGISTRY, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric

from .cost import Prices, usage_totals
from .stats import HistogramSnapshot, Stats, StatsSnapshot

__all__ = ["StatsCollector", "make_registry", "render"]


def _hist(name: str, doc: str, h: HistogramSnapshot) -> HistogramMetricFamily:
    fam = HistogramMetricFamily(name, doc)
    fam.add_metric([], h.cumulative(), h.sum)
    return fam


def _counter(
    name: str, doc: str, label: str, values: Mapping[str, float], known: Iterable[str] = ()
) -> CounterMetricFamily:
    fam = CounterMetricFamily(name, doc, labels=[label])
    for key in sorted(set(known) | set(values)):
        fam.add_metric([key], values.get(key, 0))
    return fam


class StatsCollector:
    def __init__(self, stats: Stats, prices: Prices, info: Callable[[], dict[str, str]]) -> None:
        self.stats = stats
        self.prices = prices
        self.info = info

    def describe(self) -> list[Metric]:
        return []  # unchecked collector: families are produced at scrape time

    def collect(self) -> Iterable[Metric]:
        s = self.stats.snapshot()
        labels = self.info()
        info = GaugeMetricFamily(
            "batchmt_build_info", "Version, model and prompt template of this gateway", labels=sorted(labels)
        )
        info.add_metric([labels[k] for k in sorted(labels)], 1)
        yield info
        yield _counter(
            "batchmt_requests",
            "Translate requests by outcome",
            "outcome",
            s.requests,
            ("ok", "partial", "failed", "rejected", "cancelled"),
        )
        yield _counter(
            "batchmt_sentences", "Sentences by outcome", "outcome", s.sentences, ("translated", "failed", "cancelled")
        )
        yield CounterMetricFamily("batchmt_source_characters", "Source characters accepted", value=s.characters)
        yield _hist("batchmt_request_duration_seconds", "Time from request to response", s.request_seconds)
        yield _hist(
            "batchmt_queue_wait_seconds", "Time a sentence waited before its prompt was sent", s.queue_wait_seconds
        )
        yield _hist("batchmt_engine_duration_seconds", "Time of one engine call", s.engine_seconds)
        yield _hist("batchmt_sentences_per_prompt", "Sentences packed into one engine prompt", s.sentences_per_prompt)
        yield _counter("batchmt_engine_prompts", "Engine prompts by outcome", "outcome", s.prompts, ("ok", "error"))
        yield CounterMetricFamily(
            "batchmt_multi_request_prompts",
            "Engine prompts carrying sentences of more than one request",
            value=s.multi_request_prompts,
        )
        yield CounterMetricFamily("batchmt_prompt_tokens", "Prompt tokens sent to the engine", value=s.prompt_tokens)
        yield CounterMetricFamily(
            "batchmt_cached_prompt_tokens",
            "Prompt tokens served from the engine's prefix cache",
            value=s.cached_prompt_tokens,
        )
        yield CounterMetricFamily("batchmt_completion_tokens", "Completion tokens generated", value=s.completion_tokens)
        yield _counter("batchmt_repairs", "Output slots flagged by the parser, by reason", "reason", s.flagged_slots)
        yield _counter(
            "batchmt_retries", "Sentences re-sent in a smaller prompt, by reason", "reason", s.resent_sentences
        )
        yield _counter(
            "batchmt_reused_sentences",
            "Sentences answered without engine work: from the translation memory "
            "or by sharing an identical sentence in flight",
            "kind",
            s.reused,
            ("memory", "coalesced"),
        )
        yield _counter(
            "batchmt_suspect_sentences",
            "Sentences delivered with status 'suspect': still a copy of the "
            "source, a loop or a run-on after a sampled second try",
            "reason",
            s.suspect,
            ("copy", "loop", "run_on"),
        )
        yield CounterMetricFamily(
            "batchmt_ensemble_rounds",
            "Ensemble permutation rounds run (quality balanced/best)",
            value=s.ensemble_rounds,
        )
        yield CounterMetricFamily(
            "batchmt_ensemble_sentence_sends",
            "Sentences sent in ensemble rounds, summed over rounds",
            value=s.ensemble_sentence_sends,
        )
        yield CounterMetricFamily(
            "batchmt_early_stopped_sentences",
            "Sentences that left the ensemble rounds early: two consecutive rounds agreed with high confidence",
            value=s.early_stopped_sentences,
        )
        yield GaugeMetricFamily("batchmt_queue_depth", "Sentences waiting in the queue", value=s.queue_depth)
        yield GaugeMetricFamily("batchmt_prompts_in_flight", "Engine prompts in flight", value=s.prompts_in_flight)
        yield GaugeMetricFamily(
            "batchmt_pack_limit",
            "Pack size cap in force: the setting, never beyond the calibrated limit",
            value=s.pack_cap,
        )
        yield GaugeMetricFamily("batchmt_engine_ready", "1 once the engine answers", value=1 if s.engine_ready else 0)
        yield from _cost_families(s, self.prices)


def _cost_families(s: StatsSnapshot, prices: Prices) -> Iterable[Metric]:
    """Cost accounting (cost.py): the same numbers as ``GET /v1/usage``, from the same function."""
    u = usage_totals(s, prices)
    cur = u["currency"]
    info = GaugeMetricFamily(
        "batchmt_price_info",
        "Prices in force (per 1M tokens, per engine-hour) and their currency",
        labels=["currency", "model"],
    )
    info.add_metric([cur, u["prices"]["model"]], 1)
    yield info
    yield CounterMetricFamily(
        "batchmt_engine_busy_seconds",
        "Engine busy time: wall-clock seconds with at least one prompt in flight (what engine-hour pricing charges)",
        value=u["engine_busy_seconds"],
    )
    yield CounterMetricFamily(
        "batchmt_cost",
        f"Estimated cost of the engine work, in {cur} (token prices plus engine-hour price times engine busy time)",
        value=u["cost"],
    )
    yield CounterMetricFamily(
        "batchmt_baseline_cost",
        f"Estimated cost, in {cur}, of the translated sentences sent one "
        "per prompt without a prefix cache (saving = baseline - cost)",
        value=u["baseline_cost"],
    )
    yield CounterMetricFamily(
        "batchmt_baseline_prompts",
        "Prompts the translated sentences would take one per prompt",
        value=u["baseline_prompts"],
    )
    yield CounterMetricFamily(
        "batchmt_baseline_prompt_tokens",
        "Prompt tokens of the translated sentences one per prompt (whole prefix each time, none cached)",
        value=u["baseline_prompt_tokens"],
    )
    yield CounterMetricFamily(
        "batchmt_baseline_completion_tokens",
        "Completion tokens of the translated sentences one per prompt",
        value=u["baseline_completion_tokens"],
    )
    yield CounterMetricFamily(
        "batchmt_baseline_engine_seconds",
        "Estimated engine busy time of the translated sentences "
        "one per prompt, uncached (at the measured seconds per computed token)",
        value=u["baseline_engine_seconds"],
    )


def make_registry(collector: StatsCollector) -> CollectorRegistry:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    return registry


def render(registry: CollectorRegistry, include_default: bool) -> bytes:
    """Our metrics, then (for the in-process engine) the default registry's: ``vllm:*`` and process."""
    out = generate_latest(registry)
    if include_default:
        out += generate_latest(REGISTRY)
    return out

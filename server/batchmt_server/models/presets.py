"""Typed model presets: the engine arguments that serve one model well, by name (``--preset llama-8b``).

A preset names the model, its prompt form (``chat`` for instruct models, ``completion`` for base models) and
the vLLM engine arguments: ``tensor_parallel_size``, ``max_model_len``, ``gpu_memory_utilization``,
``max_num_seqs``, ``dtype`` and any other ``AsyncEngineArgs`` field in ``extra``. Every engine argument a
preset sets reaches vLLM (:meth:`Preset.engine_args`; the same as ``vllm serve`` flags in
:meth:`Preset.cli_args`), and any engine argument can be given on the command line as well
(``--engine-arg load_format=dummy``, repeatable), which wins over the preset.

Only the two embedded presets have run for real (on this project's 2-core CPU machine); the GPU presets are
checked by the unit tests (vLLM's own argument parser and config classes accept them) but were never loaded
here: there is no GPU.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, Literal

__all__ = [
    "PRESETS",
    "Preset",
    "check_engine_args",
    "get_preset",
    "parse_engine_arg",
    "preset_engine_args",
    "preset_settings",
]

Dtype = Literal["auto", "float32", "bfloat16", "float16"]


@dataclass(frozen=True)
class Preset:
    name: str
    model: str  #: a Hugging Face model id, or an embedded model's name (``embedded``, ``smollm2``)
    template_form: Literal["completion", "chat"]
    tensor_parallel_size: int
    max_model_len: int
    max_num_seqs: int
    dtype: Dtype
    #: share of each GPU's memory vLLM may take (weights + KV cache); None on the CPU (VLLM_CPU_KVCACHE_SPACE)
    gpu_memory_utilization: float | None
    device: Literal["cpu", "gpu"]
    ran_for_real: bool
    note: str
    #: any other vLLM ``AsyncEngineArgs`` field
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def gpus(self) -> int:
        return self.tensor_parallel_size if self.device == "gpu" else 0

    def engine_args(self) -> dict[str, Any]:
        """Keyword arguments of vLLM's ``AsyncEngineArgs`` (without ``model``): every one is passed on."""
        args: dict[str, Any] = {
            "tensor_parallel_size": self.tensor_parallel_size,
            "max_model_len": self.max_model_len,
            "max_num_seqs": self.max_num_seqs,
            "dtype": self.dtype,
            "enable_prefix_caching": True,
        }
        if self.gpu_memory_utilization is not None:
            args["gpu_memory_utilization"] = self.gpu_memory_utilization
        args.update(self.extra)
        return args

    def cli_args(self) -> list[str]:
        """The same as ``vllm serve`` arguments (an HTTP engine started by hand, compose files)."""
        out = [self.model]
        for key, value in self.engine_args().items():
            flag = "--" + key.replace("_", "-")
            if value is True:
                out.append(flag)
            elif value is False:
                out.append("--no-" + key.replace("_", "-"))
            else:
                out.append(f"{flag}={json.dumps(value) if isinstance(value, (dict, list)) else value}")
        return out


_GPU: dict[str, Any] = dict(device="gpu", ran_for_real=False)
_CPU: dict[str, Any] = dict(
    device="cpu", gpu_memory_utilization=None, ran_for_real=True, tensor_parallel_size=1, extra={"block_size": 32}
)  # whole 32-token blocks of the few-shot prefix are cached

PRESETS: dict[str, Preset] = {
    p.name: p
    for p in (
        Preset(
            "gemma-270m",
            "embedded",
            "completion",
            max_model_len=2048,
            max_num_seqs=128,
            dtype="float32",
            note="embedded default: Gemma-3-270M base, vLLM-CPU",
            **_CPU,
        ),
        Preset(
            "smollm2",
            "smollm2",
            "chat",
            max_model_len=2048,
            max_num_seqs=128,
            dtype="float32",
            note="embedded: SmolLM2-135M-Instruct (Llama architecture), vLLM-CPU",
            **_CPU,
        ),
        Preset(
            "llama-8b",
            "meta-llama/Llama-3.1-8B-Instruct",
            "chat",
            tensor_parallel_size=1,
            max_model_len=4096,
            max_num_seqs=256,
            dtype="bfloat16",
            gpu_memory_utilization=0.90,
            note="1 GPU with >= 24 GB (16 GB of bf16 weights)",
            **_GPU,
        ),
        Preset(
            "llama-70b",
            "meta-llama/Llama-3.3-70B-Instruct",
            "chat",
            tensor_parallel_size=4,
            max_model_len=8192,
            max_num_seqs=256,
            dtype="bfloat16",
            gpu_memory_utilization=0.90,
            note="4 GPUs with >= 80 GB (141 GB of bf16 weights, ~35 GB per GPU)",
            **_GPU,
        ),
        Preset(
            "falcon3-10b",
            "tiiuae/Falcon3-10B-Instruct",
            "chat",
            tensor_parallel_size=1,
            max_model_len=4096,
            max_num_seqs=256,
            dtype="bfloat16",
            gpu_memory_utilization=0.90,
            note="1 GPU with >= 40 GB (21 GB of bf16 weights)",
            **_GPU,
        ),
        Preset(
            "falcon-180b",
            "tiiuae/falcon-180B",
            "completion",
            tensor_parallel_size=8,
            max_model_len=2048,
            max_num_seqs=128,
            dtype="bfloat16",
            gpu_memory_utilization=0.92,
            note="8 GPUs with 80 GB (360 GB of bf16 weights); a base model: completion form; context 2048",
            **_GPU,
        ),
    )
}


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise ValueError(f"unknown preset {name!r}; known: {', '.join(PRESETS)}") from None


#: engine arguments that are gateway settings too: a preset sets the setting (an explicit setting wins)
SETTING_ARGS = ("dtype", "max_model_len", "max_num_seqs", "block_size", "enable_prefix_caching", "enforce_eager")


def preset_settings(preset: Preset) -> dict[str, Any]:
    """The gateway settings a preset sets."""
    args = preset.engine_args()
    return {
        "model": preset.model,
        "template_form": preset.template_form,
        **{k: v for k, v in args.items() if k in SETTING_ARGS},
    }


def preset_engine_args(preset: Preset) -> dict[str, Any]:
    """The preset's engine arguments that are not gateway settings (passed to vLLM as they are)."""
    return {k: v for k, v in preset.engine_args().items() if k not in SETTING_ARGS}


def parse_engine_arg(item: str) -> tuple[str, Any]:
    """``key=value`` (``--engine-arg``): the value as JSON when it parses (numbers, true/false, objects), else
    the text. Dashes in the key become underscores (``max-num-batched-tokens`` works too)."""
    key, sep, raw = item.partition("=")
    key = key.strip().replace("-", "_")
    if not sep or not key:
        raise ValueError(f"engine argument {item!r} is not key=value (e.g. load_format=dummy)")
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return key, value


@lru_cache(maxsize=1)
def _engine_arg_names() -> frozenset[str]:
    from vllm import AsyncEngineArgs

    return frozenset(f.name for f in dataclasses.fields(AsyncEngineArgs))


def check_engine_args(args: Mapping[str, Any]) -> None:
    """Raise ``ValueError`` naming every key that is not a vLLM ``AsyncEngineArgs`` field (needs vLLM)."""
    unknown = sorted(set(args) - _engine_arg_names())
    if unknown:
        raise ValueError(
            f"unknown vLLM engine argument(s): {', '.join(unknown)} (see vllm serve --help; "
            "--engine-arg takes the AsyncEngineArgs field name, e.g. load_format=dummy)"
        )

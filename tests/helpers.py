"""Small shared checks for the tests (no fixtures here)."""

from __future__ import annotations

import re

_GERMAN = {"der", "die", "das", "und", "ist", "nicht", "ein", "eine", "mit", "von", "zu", "den", "dem", "auf",
           "für", "sich", "im", "es", "wir", "ich", "sie", "auch", "wird", "werden", "hat", "sind", "bei", "aus",
           "nach", "um", "noch", "wie", "dass", "einen", "einem", "zum", "zur", "vom", "ab", "am", "ihre", "sein"}
_ENGLISH = {"the", "and", "is", "of", "to", "in", "that", "it", "with", "for", "was", "on", "are", "this", "have"}


def words(text: str) -> list[str]:
    return re.findall(r"\w+", text.lower())


def looks_german(text: str) -> bool:
    """More German function words (or umlauts) than English ones."""
    w = words(text)
    de = sum(x in _GERMAN for x in w) + len(re.findall(r"[äöüß]", text.lower()))
    en = sum(x in _ENGLISH for x in w)
    return de > en


def parse_metrics(text: str) -> dict[str, float]:
    """Prometheus text -> {'name{labels}': value} (labels as written)."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#"):
            key, _, value = line.rpartition(" ")
            try:
                out[key] = float(value)
            except ValueError:
                pass
    return out

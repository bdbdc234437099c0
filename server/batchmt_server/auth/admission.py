"""Charging a caller's key for translation work, in one place: ``/v1/translate`` (once the request is valid and
fits) and a batch job (once, for all its runnable lines, when it is created). A limit that says no is the API's
error (``429 rate_limited`` / ``456 quota_exceeded`` with ``Retry-After``), and nothing is counted."""

from __future__ import annotations

from typing import Any

from ..protocol.errors import APIError
from .keys import KeyRecord, KeyRing, LimitExceeded

__all__ = ["charge_key", "charge_units", "quality_rounds"]


async def charge_key(keys: KeyRing, rec: KeyRecord, characters: int, texts: int) -> None:
    """Admit ``characters`` (in ``texts`` texts) against the key's quotas and character rate, and count them."""
    try:
        await keys.charge(rec, characters, texts)
    except LimitExceeded as exc:
        raise APIError(exc.status, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after)}) from None


def quality_rounds(settings: Any, quality: str) -> int:
    """How many times a quality level sends each sentence (ensemble rounds; 1 for the one-pass path)."""
    return {"balanced": settings.ensemble_rounds_balanced, "best": settings.ensemble_rounds_best}.get(quality, 1)


def charge_units(entries: list[str], rounds: int) -> tuple[int, int]:
    """What a request is charged, the one rule for ``/v1/translate`` and batch lines: (characters x rounds,
    entries)."""
    return sum(len(t) for t in entries) * rounds, len(entries)

"""Charging a caller's key for translation work, in one place: ``/v1/translate`` (once the request is valid and
fits: :func:`admission`) and a batch job (once, for all its runnable lines, when it is created). A limit that says
no is the API's error (``429 rate_limited`` / ``456 quota_exceeded`` with ``Retry-After``: :func:`limit_error`, also
for the request rate the HTTP front checks), and nothing is counted."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

from ..protocol.errors import APIError
from .keys import KeyRecord, KeyRing, LimitExceeded

__all__ = ["Admit", "Refund", "admission", "charge_key", "charge_units", "limit_error", "quality_rounds"]

#: gives back what an admission charged (work refused or failed before the engine ran it)
Refund = Callable[[], Awaitable[None]]
#: ``admit(characters, sentences)``: charges the caller's key, raises :class:`APIError` to refuse
Admit = Callable[[int, int], Awaitable[Refund | None]]


def limit_error(exc: LimitExceeded) -> APIError:
    """The API's answer to a key limit that says no (request rate, character rate, quota), at every door."""
    return APIError(exc.status, exc.code, exc.message, headers={"Retry-After": str(exc.retry_after)})


async def charge_key(keys: KeyRing, rec: KeyRecord, characters: int, texts: int) -> None:
    """Admit ``characters`` (in ``texts`` texts) against the key's quotas and character rate, and count them."""
    try:
        await keys.charge(rec, characters, texts)
    except LimitExceeded as exc:
        raise limit_error(exc) from None


def admission(keys: KeyRing, rec: KeyRecord | None) -> Admit | None:
    """The ``admit`` a translate request is charged through (:meth:`~..pipeline.translator.Translator.translate`):
    the caller's key's quota and character rate, with a refund for work then refused; None with keys off."""
    if rec is None:
        return None

    async def admit(characters: int, sentences: int) -> Refund:
        await charge_key(keys, rec, characters, sentences)
        return partial(keys.refund, rec, characters, sentences)

    return admit


def quality_rounds(settings: Any, quality: str) -> int:
    """How many times a quality level sends each sentence (ensemble rounds; 1 for the one-pass path)."""
    return {"balanced": settings.ensemble_rounds_balanced, "best": settings.ensemble_rounds_best}.get(quality, 1)


def charge_units(entries: list[str], rounds: int) -> tuple[int, int]:
    """What a request is charged, the one rule for ``/v1/translate`` and batch lines: (characters x rounds,
    entries)."""
    return sum(len(t) for t in entries) * rounds, len(entries)

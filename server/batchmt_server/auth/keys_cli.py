"""``batchmt-server keys create|list|revoke|usage``: API keys in the store (the database the gateway uses).

The new key is printed once, on stdout; only its SHA-256 is stored. Keys take effect on a running gateway within
a couple of seconds (it re-reads the keys table), no restart needed. The store is the one ``serve`` uses with the
same ``--data-dir`` / ``--database-url`` (default: ``~/.cache/batchmt/data``); every command says which.

The first key switches authentication on for every gateway on that store: ``keys create`` says so, and says when
no admin key exists (``/metrics``, ``/dashboard`` and every key's usage need one).
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import json
import secrets
import sys
import time
from collections.abc import Callable
from typing import Any

from .keys import KeyRecord, KeyRing, hash_key, new_key

__all__ = ["add_keys_parser", "auth_summary", "run_keys"]


#: the settings ``keys`` reads: where the store is (its --help lists these, not the ~90 of ``serve``)
STORE_FIELDS = frozenset({"data_dir", "database_url", "cache_dir", "log_level"})


def add_keys_parser(sub: Any, add_settings_flags: Callable[..., None]) -> None:
    p = sub.add_parser("keys", help="create, list and revoke API keys (stored hashed in the gateway's database)")
    ks = p.add_subparsers(dest="keys_command", required=True)
    c = ks.add_parser("create", help="create a key and print it once")
    c.add_argument("--name", required=True, help="who the key is for (shown in lists and usage)")
    c.add_argument(
        "--role",
        choices=("user", "admin", "dashboard"),
        default="user",
        help="user: the API, its own usage; admin: everything, every key's usage; dashboard: "
        "/dashboard only (default: user)",
    )
    c.add_argument("--rate", type=float, default=None, help="requests per second (token bucket; 429 beyond)")
    c.add_argument("--rate-chars", type=float, default=None, help="characters per second (token bucket; 429)")
    c.add_argument("--char-limit", type=int, default=None, help="characters per calendar month (UTC; 456 beyond)")
    c.add_argument("--char-limit-day", type=int, default=None, help="characters per day (UTC; 456 beyond)")
    c.add_argument("--json", action="store_true", help="print the record and the key as JSON")
    add_settings_flags(c, only=STORE_FIELDS)
    ls = ks.add_parser("list", help="list keys (never the keys themselves)")
    ls.add_argument("--json", action="store_true")
    add_settings_flags(ls, only=STORE_FIELDS)
    r = ks.add_parser("revoke", help="revoke a key by id or name (every active key of that name)")
    r.add_argument("key", help="key id or name")
    add_settings_flags(r, only=STORE_FIELDS)
    u = ks.add_parser("usage", help="usage of every key today and this month (JSON)")
    add_settings_flags(u, only=STORE_FIELDS)


def _where(store: Any) -> str:
    return str(getattr(store, "path", None) or "the PostgreSQL store")


def _create_warnings(before: list[KeyRecord], rec: KeyRecord, settings: Any) -> list[str]:
    """What creating ``rec`` changes that its creator may not expect."""
    static = bool(getattr(settings, "admin_key", None) or getattr(settings, "api_key", None))
    static = static or bool(getattr(settings, "api_key_file", None))
    warnings = []
    if not before and not static and rec.role != "dashboard":
        warnings.append(
            "this is the store's first key: authentication is now ON for every gateway on this store (within a "
            "few seconds, no restart): every request but /healthz and /readyz needs a key"
        )
    admins = [k for k in [*before, rec] if k.role == "admin"]
    if not admins and not static:
        warnings.append(
            "no admin key exists: /metrics, /dashboard and every key's usage answer 403 until one does: "
            "batchmt-server keys create --name ops --role admin"
        )
    return warnings


def _num(v: float | None) -> str:
    return "-" if v is None else f"{v:g}"


def _when(t: float | None) -> str:
    return "-" if t is None else dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")


async def _run(ns: argparse.Namespace, settings: Any) -> int:
    from ..stores.keys import open_key_store

    store = open_key_store(settings)
    await store.open()
    try:
        cmd = ns.keys_command
        if cmd == "create":
            for flag in ("rate", "rate_chars", "char_limit", "char_limit_day"):
                v = getattr(ns, flag)
                if v is not None and v <= 0:
                    print(f"batchmt-server keys: --{flag.replace('_', '-')} must be > 0", file=sys.stderr)
                    return 2
            key = new_key()
            rec = KeyRecord(
                id="key_" + secrets.token_hex(6),
                name=ns.name,
                key_hash=hash_key(key),
                role=ns.role,
                rate_requests=ns.rate,
                rate_chars=ns.rate_chars,
                chars_per_day=ns.char_limit_day,
                chars_per_month=ns.char_limit,
                created_at=time.time(),
            )
            before = [k for k in await store.list_keys() if k.revoked_at is None]
            await store.add_key(rec)
            for warning in _create_warnings(before, rec, settings):
                print(f"batchmt-server keys: warning: {warning}", file=sys.stderr)
            if ns.json:
                print(json.dumps({**rec.public(), "key": key}))
            else:
                print(key)
                print(
                    f"created {rec.id} ({rec.name}, {rec.role}) in {store.path}; the key is shown only this once",
                    file=sys.stderr,
                )
        elif cmd == "list":
            keys = await store.list_keys()
            print(f"keys in {_where(store)}", file=sys.stderr)
            if ns.json:
                print(json.dumps([k.public() for k in keys]))
            else:
                print(
                    f"{'id':<17} {'name':<20} {'role':<9} {'req/s':>7} {'chars/s':>8} {'chars/day':>10} "
                    f"{'chars/month':>12} {'created':<16} revoked"
                )
                for k in keys:
                    print(
                        f"{k.id:<17} {k.name[:20]:<20} {k.role:<9} {_num(k.rate_requests):>7} "
                        f"{_num(k.rate_chars):>8} {_num(k.chars_per_day):>10} {_num(k.chars_per_month):>12} "
                        f"{_when(k.created_at):<16} "
                        f"{_when(k.revoked_at)}"
                    )
        elif cmd == "revoke":
            n = await store.revoke_key(ns.key, time.time())
            if not n:
                print(f"batchmt-server keys: no active key with id or name {ns.key!r}", file=sys.stderr)
                return 1
            print(f"revoked {n} key(s)", file=sys.stderr)
        elif cmd == "usage":
            print(json.dumps(await KeyRing(store).usage_all(), indent=1))
        return 0
    finally:
        await store.close()


def run_keys(ns: argparse.Namespace, settings: Any) -> int:
    return asyncio.run(_run(ns, settings))


async def _store_keys(settings: Any) -> tuple[list[KeyRecord], str]:
    from ..stores.keys import open_key_store

    store = open_key_store(settings)
    await store.open()
    try:
        return [k for k in await store.list_keys() if k.revoked_at is None], _where(store)
    finally:
        await store.close()


def auth_summary(settings: Any) -> list[tuple[str, str]]:
    """(level, message) lines for the gateway's start: is authentication on, who is admin, what to do."""
    try:
        keys, where = asyncio.run(_store_keys(settings))
    except Exception as exc:  # the gateway reports a store it cannot open itself; this is only a summary
        return [("warning", f"cannot read the key store for the summary: {exc}")]
    lines: list[tuple[str, str]] = []
    admin_env = bool(getattr(settings, "admin_key", None))
    legacy_env = bool(getattr(settings, "api_key", None)) and not admin_env
    if legacy_env:
        lines.append(
            (
                "warning",
                "BATCHMT_API_KEY is the SDK's key; as the server's admin key it is the older name of "
                "BATCHMT_ADMIN_KEY: set that instead (a shell that exports BATCHMT_API_KEY for the SDK also "
                "switched this gateway's authentication on)",
            )
        )
    admins = [k.name for k in keys if k.role == "admin"]
    if admin_env or legacy_env:
        admins.insert(0, "BATCHMT_ADMIN_KEY" if admin_env else "BATCHMT_API_KEY")
    file_keys = bool(getattr(settings, "api_key_file", None))
    on = bool(keys) or admin_env or legacy_env or file_keys
    if not on:
        lines.append(
            (
                "info",
                f"authentication is off: every request is admitted (no keys in {where}); to turn it on: "
                "batchmt-server keys create --name ops --role admin (or set BATCHMT_ADMIN_KEY)",
            )
        )
        return lines
    users = sum(1 for k in keys if k.role == "user")
    shown = ", ".join(admins) + (" and the --api-key-file's admins" if file_keys else "")
    lines.append(
        (
            "info",
            f"authentication is on: {len(keys)} key(s) in {where} ({users} user); admin: {shown or 'nobody'}",
        )
    )
    if not admins and not file_keys:
        lines.append(
            (
                "warning",
                "no admin key: /metrics, /dashboard and every key's usage answer 403 for everyone; create one: "
                "batchmt-server keys create --name ops --role admin (or set BATCHMT_ADMIN_KEY)",
            )
        )
    return lines

"""Locust users for benchmarks/overload.py: each posts requests of unique sentences at a constant rate and checks
every answer slot by slot (the fake engine answers "[de] <source>"): a slot that is missing or failed is counted as
lost, one that holds another sentence's translation as misplaced; a real engine's ``suspect`` slot (delivered, but
flagged: a copy of the source or a loop) is counted apart, and the failed slots' error codes are kept.
Summary to $OVERLOAD_SUMMARY (JSON) on exit."""

from __future__ import annotations

import itertools
import json
import os
import threading
import uuid
from typing import Any

from locust import FastHttpUser, constant_throughput, events, task

SENTENCES = int(os.environ.get("OVERLOAD_SENTENCES", "8"))
RATE = float(os.environ.get("OVERLOAD_USER_RATE", "1"))  # requests per second per user
#: the fake engine answers "[de] <source>": each slot is checked against its own source; a real engine's answer
#: can only be checked for being there (status ok, a non-empty text)
EXACT = os.environ.get("OVERLOAD_EXACT", "1") == "1"
KEY = os.environ.get("OVERLOAD_KEY")

_lock = threading.Lock()
_ids = itertools.count()
totals: dict[str, Any] = {
    "requests": 0,
    "ok": 0,
    "rejected_429": 0,
    "retry_after_present": 0,
    "server_errors": 0,
    "other": 0,
    "sentences_sent_admitted": 0,
    "sentences_translated": 0,
    "sentences_lost": 0,
    "sentences_misplaced": 0,
    "sentences_suspect": 0,
    "slot_status": {},
    "failed_codes": {},
    "latencies_ok_s": [],
}


class Caller(FastHttpUser):
    wait_time = constant_throughput(RATE)
    # an admitted request on a real engine waits for its turn (queue + in-flight work, tens of seconds on a CPU): a
    # caller that gave up at locust's default 60 s would count as a disconnect, not as the gateway's answer
    network_timeout = 300.0
    connection_timeout = 300.0

    @task
    def translate(self) -> None:
        tag = f"{next(_ids)}-{uuid.uuid4().hex[:6]}"
        srcs = [f"Caller {tag} asks sentence {i} to be translated." for i in range(SENTENCES)]
        headers = {"authorization": f"Bearer {KEY}"} if KEY else {}
        with self.client.post(
            "/v1/translate", json={"sentences": srcs}, headers=headers, catch_response=True, name="/v1/translate"
        ) as r:
            with _lock:
                totals["requests"] += 1
                if r.status_code == 200:
                    totals["ok"] += 1
                    totals["sentences_sent_admitted"] += len(srcs)
                    totals["latencies_ok_s"].append(r.request_meta["response_time"] / 1000.0)
                    slots = r.json()["translations"]
                    for k, src in enumerate(srcs):
                        status = slots[k]["status"] if k < len(slots) else "missing"
                        totals["slot_status"][status] = totals["slot_status"].get(status, 0) + 1
                        if status not in ("ok", "suspect"):
                            totals["sentences_lost"] += 1
                            code = (slots[k].get("error") or {}).get("code", "?") if k < len(slots) else "missing"
                            totals["failed_codes"][code] = totals["failed_codes"].get(code, 0) + 1
                        elif status == "suspect" and not EXACT and slots[k]["text"]:
                            totals["sentences_suspect"] += 1
                        elif (slots[k]["text"] != f"[de] {src}") if EXACT else not slots[k]["text"]:
                            totals["sentences_misplaced"] += 1
                        else:
                            totals["sentences_translated"] += 1
                    r.success()
                elif r.status_code == 429:
                    totals["rejected_429"] += 1
                    if r.headers.get("retry-after", "").isdigit():
                        totals["retry_after_present"] += 1
                    r.success()  # a refusal with Retry-After is the expected answer to overload
                elif r.status_code >= 500 or r.status_code == 0:
                    totals["server_errors"] += 1
                    r.failure(f"{r.status_code}")
                else:
                    totals["other"] += 1
                    r.failure(f"{r.status_code}")


@events.quitting.add_listener
def _summary(environment, **_kw) -> None:
    path = os.environ.get("OVERLOAD_SUMMARY")
    if path:
        with open(path, "w", encoding="utf-8") as f:
            json.dump(totals, f)

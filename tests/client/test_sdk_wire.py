"""The real HTTP stack (httpx over a socket) against a tiny stdlib server, and the CLI as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

import batchmt

CLIENT_DIR = Path(__file__).resolve().parents[2] / "client"


class Handler(BaseHTTPRequestHandler):
    calls: list[tuple[str, str, dict]] = []
    queue_full_once = True

    def log_message(self, *args):  # keep test output clean
        pass

    def _send(self, status: int, body: dict, headers: dict | None = None) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        type(self).calls.append(("GET", self.path, dict(self.headers)))
        if self.path == "/v1/info":
            self._send(
                200,
                {
                    "version": "0.1.0",
                    "model": "wire",
                    "signature": "sig",
                    "language_pairs": [["en", "de"]],
                    "limits": {"max_sentences_per_request": 2, "max_sentence_chars": 1000},
                },
            )
        elif self.path in ("/healthz", "/readyz"):
            self._send(200, {"status": "ok" if self.path == "/healthz" else "ready"})
        elif self.path == "/slow":
            time.sleep(1.0)
            self._send(200, {})
        else:
            self._send(404, {"error": {"code": "not_found", "message": "no", "param": None}})

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append(("POST", self.path, dict(self.headers)))
        if self.headers.get("Content-Type") != "application/json":
            return self._send(415, {"error": {"code": "unsupported_media_type", "message": "json", "param": None}})
        if type(self).queue_full_once:
            type(self).queue_full_once = False
            return self._send(
                429, {"error": {"code": "queue_full", "message": "busy", "param": None}}, {"Retry-After": "0"}
            )
        texts = body["texts"]
        self._send(
            200,
            {
                "id": "tr-w",
                "model": "wire",
                "signature": "sig",
                "translations": [
                    {"text": s.upper(), "status": "ok", "error": None, "segments": 1, "failed_segments": []}
                    for s in texts
                ],
                "usage": {"sentences": len(texts), "cost": 0.000089, "currency": "USD"},
            },
        )


@pytest.fixture
def wire_url():
    Handler.calls = []
    Handler.queue_full_once = True
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


def test_real_socket_round_trip_with_retry_and_chunking(wire_url):
    with batchmt.Client(base_url=wire_url, api_key="k", timeout=10) as client:
        result = client.translate(["a", "b", "c"])
    assert result.texts == ["A", "B", "C"]
    posts = [c for c in Handler.calls if c[0] == "POST"]
    assert len(posts) == 3  # 429 + retry for chunk 1, then chunk 2 (limit 2 from /v1/info)
    assert all(h["Authorization"] == "Bearer k" for _, _, h in posts)
    assert [p for m, p, _ in Handler.calls if m == "GET"] == ["/v1/info"]


async def test_real_socket_async(wire_url):
    async with batchmt.AsyncClient(base_url=wire_url, timeout=10) as client:
        result = await client.translate(["x", "y", "z", "w", "v"])
        assert (await client.health()).ready
    assert result.texts == ["X", "Y", "Z", "W", "V"] and result.usage.sentences == 5
    assert result.usage.cost == pytest.approx(0.000089 * 3) and result.usage.currency == "USD"  # 3 requests


def test_real_read_timeout_becomes_api_timeout_error(wire_url):
    with batchmt.Client(base_url=wire_url, timeout=0.2, max_retries=0) as client:
        with pytest.raises(batchmt.APITimeoutError):
            client._request("GET", "/slow")


def test_cli_as_a_process(wire_url, tmp_path):
    src, dst = tmp_path / "in.txt", tmp_path / "out.txt"
    src.write_text("hello\n\nworld\n", encoding="utf-8")
    env = {**os.environ, "PYTHONPATH": str(CLIENT_DIR), "BATCHMT_BASE_URL": wire_url}
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys; from batchmt.cli import main; sys.exit(main())",
            "translate",
            "-i",
            str(src),
            "-o",
            str(dst),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert dst.read_text(encoding="utf-8") == "HELLO\n\nWORLD\n"
    assert "Traceback" not in proc.stderr and "2 lines translated" in proc.stderr

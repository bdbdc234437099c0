"""The HTTP front in a real ``batchmt-server`` process (uvicorn, fake engine) on loopback: header size and time
limits, stalled bodies, keep-alive, ``Expect: 100-continue``, no ``server`` header, no key in ``ps``, RSS
after a burst of oversized bodies (issue 13: 2, 10, 11)."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import psutil
import pytest

from helpers import GatewayProcess, gateway_env

KEY = "uvicorn-test-key-0123456789"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("front")
    log = folder / "server.log"
    (folder / "keys").write_text(f"ops:{KEY}\n", encoding="utf-8")
    env = gateway_env(BATCHMT_DATA_DIR=str(folder / "data"))
    limits = "--header-timeout-s 1 --body-timeout-s 1 --keep-alive-s 1 --max-header-bytes 8192".split()
    with GatewayProcess("--api-key-file", str(folder / "keys"), *limits, log=log, env=env, ready_path="/healthz") as gw:
        yield gw.port, gw.proc, log, env


def raw(port: int, data: bytes, timeout: float = 5.0) -> tuple[bytes, float]:
    """Send ``data``, read until the server closes; (everything read, seconds until closed)."""
    s = socket.create_connection(("127.0.0.1", port))
    s.settimeout(timeout)
    t0 = time.monotonic()
    out = b""
    try:
        s.sendall(data)
        while chunk := s.recv(65536):
            out += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    finally:
        s.close()
    return out, time.monotonic() - t0


def test_oversized_headers_get_431_without_buffering_them(server):
    port, *_ = server
    out, _ = raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * (8 << 20) + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 431 ") and b'"headers_too_large"' in out
    out, _ = raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"X-Many: y\r\n" * 2000 + b"\r\n")
    assert out.startswith(b"HTTP/1.1 431 ")
    out, _ = raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\nX-Ok: " + b"a" * 4000 + b"\r\n\r\n")
    assert out.startswith(b"HTTP/1.1 200 ")


def test_unfinished_headers_and_idle_connections_are_closed(server):
    port, *_ = server
    out, took = raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # never finishes its headers
    assert out.startswith(b"HTTP/1.1 408 ") and 0.8 < took < 3
    out, took = raw(port, b"")  # connects and says nothing
    assert out == b"" and took < 3
    out, took = raw(port, b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # keep-alive, then idle
    assert out.startswith(b"HTTP/1.1 200 ") and took < 3


def test_stalled_body_gets_408_and_the_socket_is_closed(server):
    port, *_ = server
    head = (
        b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + KEY.encode()
        + b'\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"sentences": ['
    )
    out, took = raw(port, head)
    assert out.startswith(b"HTTP/1.1 408 ") and b'"request_timeout"' in out and took < 4


def test_expect_100_continue_with_an_oversized_length_is_413_without_100_continue(server):
    port, *_ = server
    out, _ = raw(
        port,
        b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + KEY.encode()
        + b"\r\nContent-Type: application/json\r\nContent-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n",
    )
    assert out.startswith(b"HTTP/1.1 413 ") and b"100 Continue" not in out
    out, _ = raw(
        port,
        b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b"Content-Length: 1000000000\r\nExpect: 100-continue\r\n\r\n",
    )
    assert out.startswith(b"HTTP/1.1 401 ") and b"100 Continue" not in out  # no key: refused before 100


def test_no_server_header_and_translate_works_with_a_lowercase_bearer(server):
    port, *_ = server
    r = httpx.post(
        f"http://127.0.0.1:{port}/v1/translate",
        json={"sentences": ["Hello there."]},
        headers={"authorization": f"bearer {KEY}"},
    )
    assert r.status_code == 200, r.text
    assert "server" not in r.headers and r.headers["x-content-type-options"] == "nosniff"


def test_ps_does_not_show_the_key_and_the_flag_is_refused(server):
    _, proc, *_ = server
    assert all(KEY not in arg for arg in psutil.Process(proc.pid).cmdline())
    r = subprocess.run(
        [sys.executable, "-m", "batchmt_server", "serve", "--engine", "fake", "--api-key", "abc"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "--api-key" in r.stderr


def test_rss_stays_bounded_after_a_burst_of_oversized_bodies(server):
    port, proc, *_ = server
    p = psutil.Process(proc.pid)
    before = p.memory_info().rss
    head = (
        b"POST /v1/translate HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
        + KEY.encode()
        + b"\r\nContent-Type: application/json\r\n"
    )
    chunk = b"[" * (1 << 20)
    for _ in range(3):  # 50 MB declared, then 50 MB chunked: both refused at the limit
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(5)
        s.sendall(head + b"Content-Length: 52428800\r\n\r\n")
        assert s.recv(100).startswith(b"HTTP/1.1 413 ")
        s.close()
        s = socket.create_connection(("127.0.0.1", port))
        s.settimeout(5)
        s.sendall(head + b"Transfer-Encoding: chunked\r\n\r\n")
        try:
            for _ in range(50):
                s.sendall(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass
        answer = b""
        try:
            answer = s.recv(100)
        except (TimeoutError, ConnectionResetError):
            pass
        s.close()
        assert answer == b"" or answer.startswith(b"HTTP/1.1 413 ")
    assert httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=2).status_code == 200
    grown = (p.memory_info().rss - before) / 2**20
    print(
        f"RSS {before / 2**20:.0f} MiB -> {p.memory_info().rss / 2**20:.0f} MiB after 3x(50 MB declared + "
        f"50 MB chunked)"
    )
    assert grown < 40


def test_keys_cli_create_works_on_the_running_gateway_then_revoke(server):
    port, _, _, env = server
    url = f"http://127.0.0.1:{port}"
    cli = [sys.executable, "-m", "batchmt_server", "keys"]
    r = subprocess.run(
        [*cli, "create", "--name", "carol", "--rate", "100", "--char-limit", "40"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    key = r.stdout.strip()
    assert key.startswith("bmt_") and len(key) > 40
    listed = subprocess.run([*cli, "list"], env=env, capture_output=True, text=True, timeout=60, check=True).stdout
    assert "carol" in listed and key not in listed
    db = (Path(env["BATCHMT_DATA_DIR"]) / "batchmt.sqlite3").read_bytes()
    assert key.encode() not in db  # stored hashed
    time.sleep(1.1)  # the gateway re-reads the keys on an unknown key at most once a second
    h = {"authorization": f"Bearer {key}"}
    r = httpx.post(f"{url}/v1/translate", json={"sentences": ["Hello there, friend."]}, headers=h)
    assert r.status_code == 200, r.text
    usage = httpx.get(f"{url}/v1/usage", headers=h).json()
    assert usage["key"]["name"] == "carol" and usage["this_month"]["characters"] == 20
    r = httpx.post(f"{url}/v1/translate", json={"sentences": ["This one is over the quota."]}, headers=h)
    assert r.status_code == 456 and r.json()["error"]["code"] == "quota_exceeded" and "retry-after" in r.headers
    subprocess.run([*cli, "revoke", "carol"], env=env, capture_output=True, timeout=60, check=True)
    time.sleep(2.2)
    assert httpx.get(f"{url}/v1/info", headers=h).status_code == 401


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--max-queue-sentences", "16", "--max-sentences-per-request", "128"], "max_queue_sentences"),
        (["--max-body-bytes", "4096"], "max_body_bytes"),
    ],
)
def test_contradictory_limits_are_refused_at_start_up(args, needle):
    r = subprocess.run(
        [sys.executable, "-m", "batchmt_server", "serve", "--engine", "fake", *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "contradictory limits" in r.stderr and needle in r.stderr


def test_a_lone_surrogate_is_a_422_and_the_keep_alive_connection_stays_usable(server):
    port, *_ = server
    h = {"authorization": f"Bearer {KEY}", "content-type": "application/json"}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers=h) as c:
        r = c.post("/v1/translate", content=b'{"sentences": ["bad \\ud800 here"]}')
        assert r.status_code == 422 and "surrogate" in r.json()["error"]["message"]
        r = c.post("/v1/translate", content=b'{"sentences": ["ok"], "source_lang": "\\ud800"}')
        assert r.status_code == 422
        r = c.post("/v1/translate", json={"sentences": ["Next one on the same connection."]})
        assert r.status_code == 200 and r.json()["translations"][0]["status"] == "ok"

"""Operators' view (issue 13): OpenTelemetry traces exported over OTLP/HTTP to a loopback receiver by a real
gateway process (--otel-endpoint), JSON logs with the request id on every line, nothing traced by default."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from helpers import GatewayProcess, gateway_env


class Receiver(BaseHTTPRequestHandler):
    posts: list[tuple[str, str, bytes]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length", 0)))
        Receiver.posts.append((self.path, self.headers.get("content-type", ""), body))
        self.send_response(200)
        self.send_header("content-type", "application/x-protobuf")
        self.send_header("content-length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def _gateway(tmp_path, *extra: str) -> GatewayProcess:
    env = gateway_env(
        drop=("BATCHMT_", "OTEL_"), BATCHMT_DATA_DIR=str(tmp_path / "data"), OTEL_BSP_SCHEDULE_DELAY="100"
    )
    return GatewayProcess(*extra, log=tmp_path / "log", env=env)


def test_traces_go_to_the_otlp_endpoint_with_the_request_route(tmp_path):
    Receiver.posts = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    endpoint = f"http://127.0.0.1:{server.server_address[1]}"
    gw = _gateway(tmp_path, "--otel-endpoint", endpoint, "--otel-service-name", "batchmt-test")
    url = gw.url
    try:
        r = httpx.post(
            f"{url}/v1/translate", json={"sentences": ["Traced sentence here."]}, headers={"x-request-id": "trace-me-1"}
        )
        assert r.status_code == 200
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not any(b"/v1/translate" in b for _, _, b in Receiver.posts):
            time.sleep(0.1)
    finally:
        gw.stop()
        server.shutdown()
    traces = [(p, ct, b) for p, ct, b in Receiver.posts if p == "/v1/traces"]
    assert traces and traces[0][1] == "application/x-protobuf"
    blob = b"".join(b for _, _, b in traces)
    assert b"/v1/translate" in blob and b"batchmt-test" in blob


def test_json_logs_carry_the_request_id_and_no_tracing_by_default(tmp_path):
    gw = _gateway(tmp_path, "--log-format", "json", "--log-level", "info")
    url = gw.url
    try:
        r = httpx.post(
            f"{url}/v1/translate",
            json={"sentences": ["Logged sentence here."]},
            headers={"x-request-id": "json-log-42"},
        )
        assert r.status_code == 200 and r.headers["x-request-id"] == "json-log-42"
        time.sleep(0.3)
    finally:
        gw.stop()
    lines = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines() if line.startswith("{")]
    assert lines and all({"level", "logger", "message", "request_id"} <= set(x) for x in lines)
    mine = [x for x in lines if x["request_id"] == "json-log-42"]
    assert any("POST /v1/translate" in x["message"] for x in mine)  # uvicorn's access line, in the request's id
    assert not any("OpenTelemetry" in x["message"] for x in lines)

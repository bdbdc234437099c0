"""The pure helpers of benchmarks/gateway_load.py (the load runs themselves need wrk and two idle cores)."""

import math

import pytest

from benchmarks.gateway_load import latency_summary, parse_response, parse_wrk, percentile, sentence, top_frames

WRK_OUTPUT = """Running 20s test @ http://127.0.0.1:40000
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    15.95ms    2.10ms  48.37ms   91.20%
    Req/Sec     2.01k   101.23     2.20k    70.00%
  40123 requests in 20.01s, 19.53MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 5
Requests/sec:   2005.15
Transfer/sec:      0.98MB
GATEWAY_LOAD ok=40118 bad=5 requests=40123 duration_us=20010000 p50_us=15432 p90_us=17001 p99_us=23456 max_us=48370
"""


def test_parse_wrk_reads_the_script_line_and_wrk_summary():
    r = parse_wrk(WRK_OUTPUT)
    assert r["requests"] == 40123 and r["ok"] == 40118 and r["bad"] == 5
    assert r["non_2xx"] == 5 and r["socket_errors"] == 3
    assert r["requests_per_s"] == 2005.2
    assert r["ok_per_s"] == pytest.approx(40118 / 20.01, abs=0.1)
    assert r["latency"] == {"p50_ms": 15.432, "p90_ms": 17.001, "p99_ms": 23.456, "max_ms": 48.37}


def test_parse_wrk_without_the_script_line_fails_loudly():
    with pytest.raises(ValueError, match="GATEWAY_LOAD"):
        parse_wrk("unable to connect to 127.0.0.1:1 Connection refused\n")


def test_percentile_is_nearest_rank():
    values = list(range(1, 101))  # 1..100
    assert percentile(values, 50) == 50
    assert percentile(values, 99) == 99
    assert percentile(values, 100) == 100
    assert percentile(values, 0) == 1
    assert percentile([3.0, 1.0, 2.0], 50) == 2.0  # unsorted input
    assert percentile([7.0], 99.9) == 7.0
    assert math.isnan(percentile([], 50))


def test_latency_summary_in_milliseconds():
    s = latency_summary([0.001] * 98 + [0.002, 0.010])
    assert s["p50_ms"] == 1.0 and s["p99_ms"] == 2.0 and s["p99.9_ms"] == 10.0 and s["max_ms"] == 10.0
    assert s["mean_ms"] == pytest.approx(1.1)
    assert latency_summary([]) == {}


def test_parse_response_head():
    head = b"HTTP/1.1 429 Too Many Requests\r\ncontent-type: application/json"
    head += b"\r\nContent-Length: 57\r\nconnection: close"
    assert parse_response(head) == (429, 57, True)
    assert parse_response(b"HTTP/1.1 200 OK\r\ncontent-length: 3") == (200, 3, False)


def test_sentences_differ():
    assert len({sentence(i) for i in range(10_000)}) == 10_000


def test_top_frames_self_and_inclusive_shares():
    collapsed = (
        "<module> (/x/server/batchmt_server/app.py:1);run (/x/site-packages/uvicorn/main.py:5);"
        "dumps (/usr/lib/json/__init__.py:2) 3\n"
        "<module> (/x/server/batchmt_server/app.py:1);run (/x/site-packages/uvicorn/main.py:7) 1\n"
    )
    top = top_frames(collapsed)
    assert top["self"][0] == ("dumps (/usr/lib/json/__init__.py)", 0.75)
    assert ("run (uvicorn/main.py)", 1.0) in top["inclusive"]  # two lines of one function count once
    assert top["samples"] == [("total", 4.0)]

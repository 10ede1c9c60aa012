"""Section 3 of the benchmark: the production server answers real callback payloads, and goes away."""

from __future__ import annotations

import socket

import pytest

from benchmarks.bench_http import bench_browser, format_browser


def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.load
def test_bench_browser_quick_serves_every_request_and_stops_the_server():
    section = bench_browser(quick=True)

    assert section["startup_s"] > 0
    assert {(r["callback"], r["clients"]) for r in section["cached"]} == {
        ("rdm-grid", 1), ("rdm-grid", 20), ("path-graph", 1), ("path-graph", 20)
    }
    for row in section["cached"]:
        assert row["errors"] == 0, row
        assert row["n"] > 0 and row["p95_ms"] > 0, row
    assert [r["callback"] for r in section["uncached"]] == ["rdm-grid", "path-graph"]
    for row in section["uncached"]:
        assert row["errors"] == 0 and row["ms"] > 0, row
    assert section["errors"] == 0
    assert section["peak_rss_mb"] > 50
    assert not _listening(section["port"]), "the server still listens after the benchmark"
    lines = format_browser(section)
    assert any("rdm-grid" in ln for ln in lines) and any("start-up" in ln for ln in lines)

"""The load test: its statistics, its report, its flags, and a short locust run under gunicorn."""

from __future__ import annotations

import json
import os
import random
import socket
import statistics
import subprocess
import sys

import pytest

from benchmarks import loadtest
from benchmarks.loadtest import ACTIONS, LoadConfig, format_report, summarize


# ---------------------------------------------------------------------------- statistics
def test_summarize_matches_the_inclusive_quantiles_of_the_standard_library():
    rng = random.Random(3)
    ms = [rng.expovariate(1 / 40) for _ in range(997)]
    got = summarize(ms)
    cuts = statistics.quantiles(ms, n=100, method="inclusive")  # cuts[k-1] is the k-th percentile
    assert got["count"] == 997
    assert got["p50_ms"] == pytest.approx(statistics.median(ms))
    assert got["p95_ms"] == pytest.approx(cuts[94])
    assert got["max_ms"] == max(ms)


def test_summarize_of_nothing_and_of_one_value():
    assert summarize([]) == {"count": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    assert summarize([7.5]) == {"count": 1, "p50_ms": 7.5, "p95_ms": 7.5, "max_ms": 7.5}


def test_rows_group_by_name_count_errors_and_keep_the_first():
    samples = [("b", 10.0, None, 2), ("a", 1.0, "HTTP 500", 0), ("a", 3.0, None, 0), ("b", 30.0, "timeout", 1),
               ("a", 2.0, "HTTP 502", 0)]
    b, a = loadtest.rows(samples, order=("b",), polls=True)
    assert (b["name"], a["name"]) == ("b", "a")
    assert (b["count"], b["errors"], b["first_error"], b["polls"], b["p50_ms"]) == (2, 1, "timeout", 3, 20.0)
    assert (a["count"], a["errors"], a["first_error"], a["max_ms"]) == (3, 2, "HTTP 500", 3.0)
    assert loadtest.total(samples)["errors"] == 3 and "polls" not in loadtest.rows(samples)[0]


EVENTS = {
    "samples": [
        ["action", "page_load", 300.0, None, 0], ["action", "switch_model", 120.0, None, 0],
        ["action", "switch_model", 80.0, "message: boom", 0],
        ["callback", "sync", 20.0, None, 0], ["callback", "embed-grid", 5000.0, None, 4],
        ["callback", "rdm-grid (side)", 40.0, "HTTP 500", 0],
        ["GET", "GET /", 5.0, None, 0], ["GET", "GET /_dash-layout", 6.0, "HTTP 502", 0],
        ["POST", "sync", 19.0, None, 0], ["POST", "embed-grid", 9.0, None, 0], ["POST", "rdm-grid (side)", 39.0, "500", 0],
    ]
    + [["POST", "embed-grid (poll)", 3.0, None, 0]] * 4,
    "started": {"page_load": 1, "switch_model": 3},
    "times": {"start": 1000.0, "end": 1010.0},
}


def test_from_samples_counts_each_failure_once_and_the_actions_cut_off():
    t = loadtest.from_samples(EVENTS)
    assert [r["name"] for r in t["actions"]] == ["page_load", "switch_model"]
    assert t["actions_started"]["switch_model"] == 3 and t["unfinished_actions"] == 1
    assert t["errors"] == 2  # the side callback and the layout; its POST is the same failure
    assert next(r for r in t["callbacks"] if r["name"] == "embed-grid")["polls"] == 4
    assert t["requests_total"]["count"] == 9 and t["requests_per_s"] == pytest.approx(0.9) and t["load_s"] == 10.0
    assert {r["name"] for r in t["requests"]} >= {"GET /", "POST sync", "POST embed-grid (poll)"}


def _report():
    return {
        "settings": {**LoadConfig().__dict__, "think_s": [0.5, 2.0]},
        "machine": {"cpu": "a CPU", "cores": 2},
        "server": {"config": "python:repgeom.gunicorn_conf", "workers": 2, "threads": 4},
        "locust": {"version": "2.47.0", "exit_status": 1},
        "startup_s": 5.0, "warmup_s": 1.0, **loadtest.from_samples(EVENTS),
        "memory": {"master_peak_rss_mb": 80.0,
                   "workers": [{"pid": 11, "peak_rss_mb": 612.4}, {"pid": 12, "peak_rss_mb": 700.0}],
                   "jobs_seen": 3, "job_peak_rss_mb": 650.0, "jobs_peak_total_rss_mb": 1300.0,
                   "peak_total_rss_mb": 2692.0, "samples": 600, "every_s": 0.5},
        "server_cpu_s": 500.0, "client_cpu_s": 20.0,
    }


def test_format_report_has_a_row_per_action_callback_and_request_and_the_memory_of_each_worker():
    text = format_report(_report())
    lines = text.splitlines()
    row = next(ln for ln in lines if ln.startswith("switch_model"))
    assert row.split()[1:] == ["2", "100", "118", "120", "1"]
    assert any(ln.startswith("embed-grid ") and ln.split()[-1] == "4" for ln in lines)
    assert any(ln.startswith("POST embed-grid (poll)") for ln in lines)
    assert "11: 612" in text and "12: 700" in text and "whole server 2692" in text and "locust 2.47.0" in text
    assert "first error in switch_model: message: boom" in text
    assert lines.index(next(ln for ln in lines if ln.startswith("page_load"))) < lines.index(row)  # in ACTIONS order


# ---------------------------------------------------------------------------- flags
@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["--users", "0"], "--users: must be a whole number from 1 to 1000, got '0'"),
        (["--users", "many"], "--users: must be a whole number from 1 to 1000"),
        (["--duration", "-5"], "--duration: must be a number above 0 and at most 86400"),
        (["--spawn-rate", "nan"], "--spawn-rate: must be a number above 0"),
        (["--workers", "65"], "--workers: must be a whole number from 1 to 64"),
        (["--threads", "0"], "--threads: must be a whole number from 1 to 64"),
        (["--seed", "-1"], "--seed: must be a whole number from 0"),
        (["--drain", "x"], "--drain: must be a number from 0 to 3600"),
        (["--n-per-class", "5,0"], "--n-per-class: must be whole numbers from 1 to 100 separated by commas"),
        (["--data-root", "/no/such/folder"], "--data-root: must be an existing folder"),
        (["--colour", "red"], "unrecognized arguments: --colour red"),
    ],
)
def test_bad_flags_exit_2_with_one_line(argv, says, capsys):
    with pytest.raises(SystemExit) as exc:
        loadtest.main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and says in err, err


def test_the_runner_imports_neither_locust_nor_gevent_nor_torch():
    code = "import sys, benchmarks.loadtest; print(sorted({'locust', 'gevent', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_the_locustfile_loads_in_locust(tmp_path):
    """locust reads the file, its options and its one user class (a dry listing; no server)."""
    out = subprocess.run([sys.executable, "-m", "locust", "-f", str(loadtest.LOCUSTFILE), "--list"],
                         capture_output=True, text=True, cwd=str(loadtest.ROOT), timeout=120,
                         env={**{k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")},
                              "PYTHONPATH": str(loadtest.ROOT)})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "Visitor" in out.stdout


# ---------------------------------------------------------------------------- a short run
def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
@pytest.mark.load
def test_fifty_visitors_for_twenty_seconds_get_no_errors(tmp_path, capsys):
    out, server_log = tmp_path / "loadtest.json", tmp_path / "gunicorn.log"
    # The full scenario, shortened: 50 visitors, 2 workers, 5 images per class (the full run adds 10 and 20).
    status = loadtest.main([
        "--users", "50", "--duration", "20", "--spawn-rate", "10", "--workers", "2", "--threads", "4",
        "--n-per-class", "5", "--drain", "90", "--json", str(out), "--server-log", str(server_log),
    ])
    report = json.loads(out.read_text())
    rows = report["actions"] + report["callbacks"] + report["requests"]
    first_errors = [f"{r['name']}: {r['first_error']}" for r in rows if r.get("first_error")]
    server_errors = [ln for ln in server_log.read_text(errors="replace").splitlines() if "Error" in ln][:5]
    assert report["errors"] == 0 and status == 0, (first_errors, server_errors)
    assert report["locust"]["exit_status"] == 0 and report["locust"]["version"]
    assert {r["name"] for r in report["actions"]} == set(ACTIONS)
    for row in rows:
        assert row["count"] > 0 and row["p50_ms"] > 0 and row["p95_ms"] >= row["p50_ms"], row
    assert report["actions_total"]["count"] >= 100
    assert report["callbacks_total"]["polls"] > 0, "no background job was polled"
    assert report["requests_per_s"] > 0 and report["requests_total"]["count"] > report["callbacks_total"]["count"]
    workers = report["memory"]["workers"]
    assert len(workers) >= 2 and all(w["peak_rss_mb"] > 50 for w in workers), report["memory"]
    assert report["memory"]["peak_total_rss_mb"] >= max(w["peak_rss_mb"] for w in workers)
    assert report["settings"]["users"] == 50 and report["machine"]["cores"] >= 1
    assert not _listening(report["port"]), "the server still listens after the load test"
    table = capsys.readouterr().out
    assert "page_load" in table and "peak RSS" in table

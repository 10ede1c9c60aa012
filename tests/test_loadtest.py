"""The load test: its statistics, its reading of the callback graph, its flags, and a short run under gunicorn."""

from __future__ import annotations

import json
import random
import socket
import statistics

import pytest

from repgeom import loadtest
from repgeom.loadtest import ACTIONS, LoadConfig, format_report, summarize


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
    rows = loadtest._rows(samples, order=("b",))
    assert [r["name"] for r in rows] == ["b", "a"]
    b, a = rows
    assert (b["count"], b["errors"], b["first_error"], b["polls"], b["p50_ms"]) == (2, 1, "timeout", 3, 20.0)
    assert (a["count"], a["errors"], a["first_error"], a["max_ms"]) == (3, 2, "HTTP 500", 3.0)
    assert loadtest._total(samples)["errors"] == 3


def _report(actions, requests):
    return {
        "settings": {**LoadConfig().__dict__, "think_s": [0.5, 2.0]},
        "machine": {"cpu": "a CPU", "cores": 2},
        "server": {"config": "python:repgeom.gunicorn_conf", "workers": 2, "threads": 4},
        "startup_s": 5.0, "warmup_s": 1.0, "load_s": 300.0, "unfinished_actions": 0,
        "actions": loadtest._rows(actions, ACTIONS), "actions_total": loadtest._total(actions),
        "requests": loadtest._rows(requests), "requests_total": {**loadtest._total(requests), "polls": 4},
        "requests_per_s": 3.0, "errors": sum(1 for r in requests if r[2]),
        "memory": {"master_peak_rss_mb": 80.0,
                   "workers": [{"pid": 11, "peak_rss_mb": 612.4}, {"pid": 12, "peak_rss_mb": 700.0}],
                   "jobs_seen": 3, "job_peak_rss_mb": 650.0, "jobs_peak_total_rss_mb": 1300.0,
                   "peak_total_rss_mb": 2692.0, "samples": 600, "every_s": 0.5},
        "server_cpu_s": 500.0, "client_cpu_s": 20.0,
    }


def test_format_report_has_a_row_per_action_and_request_and_the_memory_of_each_worker():
    actions = [("switch_model", 120.0, None), ("page_load", 300.0, None), ("switch_model", 80.0, "message: boom")]
    requests = [("sync", 20.0, None, 0), ("embed-grid", 5000.0, None, 4)]
    text = format_report(_report(actions, requests))
    lines = text.splitlines()
    row = next(ln for ln in lines if ln.startswith("switch_model"))
    assert row.split()[1:] == ["2", "100", "118", "120", "1"]
    assert any(ln.startswith("page_load") for ln in lines) and any(ln.startswith("embed-grid") for ln in lines)
    assert "11: 612" in text and "12: 700" in text and "whole server 2692" in text
    assert "first error in switch_model: message: boom" in text
    assert lines.index(next(ln for ln in lines if ln.startswith("page_load"))) < lines.index(row)  # in ACTIONS order


# ---------------------------------------------------------------------------- the callback graph
def _dep(outputs, inputs, background=None):
    out = outputs[0] if len(outputs) == 1 else ".." + "...".join(outputs) + ".."
    dep = {"output": out, "inputs": [{"id": i.split(".")[0], "property": i.split(".")[1]} for i in inputs], "state": []}
    if background:
        dep["background"] = background
    return dep


DEPS = [
    _dep(["url.search", "view.data"], ["url.search", "model.value"]),
    _dep(["rdm-grid.figure", "rdm-message.children"], ["view.data", "selection.data"]),
    _dep(["embed-request.data"], ["view.data", "selection.data"]),
    _dep(["embed-grid.figure", "embed-message.children"], ["embed-request.data"], {"interval": 250}),
]


def test_graph_finds_the_chain_through_a_gate_to_a_background_figure():
    graph = loadtest._Graph(DEPS)
    chain = graph.chain("view.data", "embed-grid.figure")
    assert [cb.key for cb in chain] == ["embed-request.data", "embed-grid.figure"]
    assert chain[-1].interval_ms == 250 and chain[0].interval_ms is None
    assert [cb.key for cb in graph.chain("view.data", "rdm-grid.figure")] == ["rdm-grid.figure"]
    assert {cb.key for cb in graph.triggered_by({"view.data"})} == {"rdm-grid.figure", "embed-request.data"}
    with pytest.raises(loadtest.RepgeomError, match="no callback chain"):
        graph.chain("view.data", "nowhere.figure")


def test_background_handles_and_polls_are_told_apart_from_answers():
    started = json.dumps({"cacheKey": "k.sig", "job": "123.sig", "cancel": []}).encode()
    assert loadtest._handle(200, started) == {"cacheKey": "k.sig", "job": "123.sig"}
    answer = json.dumps({"multi": True, "response": {"embed-grid": {"figure": {}}}}).encode()
    assert loadtest._handle(200, answer) is None and loadtest._handle(500, started) is None
    assert loadtest._still_running(200, json.dumps({"multi": True, "progress": {"p": 1}}).encode())
    assert not loadtest._still_running(200, answer) and not loadtest._still_running(204, b"")


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


# ---------------------------------------------------------------------------- a short run
def _listening(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_fifty_visitors_for_twenty_seconds_get_no_errors(tmp_path, capsys):
    out, server_log = tmp_path / "loadtest.json", tmp_path / "gunicorn.log"
    # The full scenario, shortened: 50 visitors, 2 workers, 5 images per class (the full run adds 10 and 20).
    status = loadtest.main([
        "--users", "50", "--duration", "20", "--spawn-rate", "10", "--workers", "2", "--threads", "4",
        "--n-per-class", "5", "--drain", "90", "--no-warm", "--json", str(out), "--server-log", str(server_log),
    ])
    report = json.loads(out.read_text())
    rows = report["actions"] + report["requests"]
    first_errors = [f"{r['name']}: {r['first_error']}" for r in rows if r.get("first_error")]
    server_errors = [ln for ln in server_log.read_text(errors="replace").splitlines() if "Error" in ln][:5]
    assert report["errors"] == 0 and status == 0, (first_errors, server_errors)
    assert {r["name"] for r in report["actions"]} == set(ACTIONS)
    for row in report["actions"] + report["requests"]:
        assert row["count"] > 0 and row["p50_ms"] > 0 and row["p95_ms"] >= row["p50_ms"], row
    assert report["actions_total"]["count"] >= 100
    assert report["requests_per_s"] > 0
    workers = report["memory"]["workers"]
    assert len(workers) >= 2 and all(w["peak_rss_mb"] > 50 for w in workers), report["memory"]
    assert report["memory"]["peak_total_rss_mb"] >= max(w["peak_rss_mb"] for w in workers)
    assert report["settings"]["users"] == 50 and report["machine"]["cores"] >= 1
    assert not _listening(report["port"]), "the server still listens after the load test"
    table = capsys.readouterr().out
    assert "page_load" in table and "peak RSS" in table

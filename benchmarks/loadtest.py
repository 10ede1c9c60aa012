"""``python -m benchmarks.loadtest``: locust's simulated visitors against gunicorn on loopback.

Fifty visitors (by default) load a shared link, then click through the dashboard for five
minutes while the production server answers on 127.0.0.1. Prints latencies per action, per
callback and per HTTP request, errors, requests per second and the peak memory of every
server process; ``--json`` keeps it all. Exit status 0 when every request succeeded, 1 when
any failed (or the run could not be made), 2 for a bad flag.

Design notes:
    * *locust in its own process.* The visitors are :mod:`benchmarks.locustfile`, run by
      ``python -m locust --headless`` as a subprocess: locust patches the standard library
      with gevent, which must not happen to this process, to pytest, or to the server. This
      module imports neither locust nor torch.
    * *The server.* ``gunicorn -c python:repgeom.gunicorn_conf app:server`` on a free
      loopback port (:mod:`benchmarks.server`), with a temporary folder of its own as
      ``TMPDIR`` so every disk cache starts empty; with ``--warm`` (the default) the
      visitors arrive once the start-up warm-up is done and the server's CPU is quiet.
    * *Figures.* The locustfile writes every event (HTTP requests, callbacks with their
      polls, actions) when locust quits; percentiles here are exact (numpy's linear
      interpolation), not locust's rounded histogram. Errors are the failed callbacks and
      page requests, each counted once. At the deadline locust lets the actions under way
      finish for ``--drain`` seconds; those still running then are reported as unfinished.
    * *Memory.* A thread samples the RSS (and CPU time) of the gunicorn master, each worker
      (its children) and every process below a worker (background jobs) every 0.5 s with
      psutil; the lowest memory the machine had available is reported beside them.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .dash_wire import HttpConnection
from .server import ROOT, ServerError, cpu_name, free_port, log_tail, start_server, stop_server, wait_quiet, wait_served

__all__ = ["ACTIONS", "LOCUSTFILE", "LoadConfig", "format_report", "main", "run_loadtest", "summarize"]

log = logging.getLogger(__name__)

LOCUSTFILE = Path(__file__).resolve().with_name("locustfile.py")
#: Every kind of action a visitor takes (as :data:`benchmarks.locustfile.ACTIONS`, which imports gevent).
ACTIONS = ("page_load", "switch_model", "change_nodes", "change_n", "rdm_method", "switch_tab",
           "embed_methods", "condition", "ff_vs_rec")
CONFIG = "python:repgeom.gunicorn_conf"
EPSILON = 0.1


@dataclass(frozen=True)
class LoadConfig:
    """One load test's settings.

    Attributes:
        users: simulated visitors.
        duration_s: seconds from the first visitor's arrival until no new action starts.
        spawn_rate: visitors arriving per second.
        workers: gunicorn worker processes.
        threads: request threads per worker.
        seed: seeds every visitor's choices (visitor ``i`` uses ``seed * 1_000_003 + i``).
        data_root: torchvision MNIST root for the server (``REPGEOM_DATA_ROOT``), or ``None``.
        n_per_class: images per class the visitors choose from (RDMs, embeddings, paths).
        warm: let the server precompute its default views, and wait for that before the
            visitors arrive (``REPGEOM_WARM``).
        drain_s: after the deadline, seconds the actions under way may take to finish.
        think_s: pause between one visitor's actions, drawn uniformly from this range.
        sample_s: seconds between memory samples.
        server_log: file to keep the server's log in (default: discarded).
    """

    users: int = 50
    duration_s: float = 300.0
    spawn_rate: float = 10.0
    workers: int = 2
    threads: int = 4
    seed: int = 0
    data_root: str | None = None
    n_per_class: tuple[int, ...] = (5, 10, 20)
    warm: bool = True
    drain_s: float = 60.0
    think_s: tuple[float, float] = (0.5, 2.0)
    sample_s: float = 0.5
    server_log: str | None = None


# ---------------------------------------------------------------------------- statistics
def summarize(ms: Sequence[float]) -> dict[str, Any]:
    """Count, median, 95th percentile and maximum of latencies.

    Args:
        ms: latencies in milliseconds, any order.

    Returns:
        ``count``, ``p50_ms``, ``p95_ms``, ``max_ms`` (linear interpolation between order
        statistics, as :func:`numpy.percentile`); the last three are ``None`` when ``ms`` is
        empty.
    """
    if not len(ms):
        return {"count": 0, "p50_ms": None, "p95_ms": None, "max_ms": None}
    a = np.asarray(ms, dtype=float)
    return {"count": int(a.size), "p50_ms": float(np.percentile(a, 50)), "p95_ms": float(np.percentile(a, 95)),
            "max_ms": float(a.max())}


def rows(samples: Sequence[Sequence[Any]], order: Sequence[str] = (), polls: bool = False) -> list[dict[str, Any]]:
    """One row per name (``order`` first, then the rest sorted): latencies, errors, the first error.

    Args:
        samples: ``(name, ms, error or None, polls)`` each.
        order: names to put first, in this order.
        polls: add the sum of polls to each row.

    Returns:
        Rows of ``name``, :func:`summarize`'s keys, ``errors``, ``first_error`` where any
        and ``polls`` if asked for.
    """
    by: dict[str, list[Sequence[Any]]] = defaultdict(list)
    for s in samples:
        by[s[0]].append(s)
    names = [n for n in order if n in by] + sorted(n for n in by if n not in order)
    out = []
    for name in names:
        group = by[name]
        errors = [s[2] for s in group if s[2]]
        row = {"name": name, **summarize([s[1] for s in group]), "errors": len(errors)}
        if polls:
            row["polls"] = sum(s[3] for s in group)
        if errors:
            row["first_error"] = errors[0]
        out.append(row)
    return out


def total(samples: Sequence[Sequence[Any]], polls: bool = False) -> dict[str, Any]:
    """The row of all ``samples`` together, named ``all``."""
    row = {"name": "all", **summarize([s[1] for s in samples]), "errors": sum(1 for s in samples if s[2])}
    if polls:
        row["polls"] = sum(s[3] for s in samples)
    return row


def from_samples(events: dict[str, Any]) -> dict[str, Any]:
    """The report's tables from what the locustfile wrote.

    Args:
        events: ``samples`` (``[type, name, ms, error, polls]`` each, type ``action``,
            ``callback``, ``GET`` or ``POST``), ``started`` (actions started, by name) and
            ``times`` (``start``/``end`` of the load, epoch seconds).

    Returns:
        ``actions``, ``actions_total``, ``actions_started``, ``unfinished_actions``,
        ``callbacks``, ``callbacks_total``, ``requests`` (HTTP), ``requests_total``,
        ``requests_per_s``, ``load_s`` and ``errors`` (failed callbacks and page requests).
    """
    by_type: dict[str, list[tuple[str, float, str | None, int]]] = defaultdict(list)
    for kind, name, ms, error, polls in events["samples"]:
        by_type[kind].append((name, ms, error, polls))
    actions, callbacks = by_type["action"], by_type["callback"]
    http = [(f"{kind} {name}" if kind == "POST" else name, *rest)
            for kind in ("GET", "POST") for name, *rest in by_type[kind]]
    started = {a: int(events["started"].get(a, 0)) for a in ACTIONS}
    finished = {a: sum(1 for s in actions if s[0] == a) for a in ACTIONS}
    times = events.get("times", {})
    load_s = times["end"] - times["start"] if "start" in times and "end" in times else None
    return {
        "load_s": load_s,
        "actions": rows(actions, ACTIONS),
        "actions_total": total(actions),
        "actions_started": started,
        "unfinished_actions": sum(max(0, started[a] - finished[a]) for a in ACTIONS),
        "callbacks": rows(callbacks, polls=True),
        "callbacks_total": total(callbacks, polls=True),
        "requests": rows(http),
        "requests_total": total(http),
        "requests_per_s": len(http) / load_s if load_s else None,
        "errors": sum(1 for s in callbacks if s[2]) + sum(1 for s in by_type["GET"] if s[2]),
    }


# ---------------------------------------------------------------------------- memory
class Memory:
    """Samples the RSS and CPU time of the gunicorn master, its workers and their children (jobs)."""

    def __init__(self, pid: int, every_s: float) -> None:
        self.pid, self.every_s = pid, every_s
        self.peak: dict[int, float] = {}
        self.cpu: dict[int, float] = {}
        self.role: dict[int, str] = {}
        self.peak_total = 0.0
        self.peak_jobs_total = 0.0
        self.available_min = float("inf")
        self.samples = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="loadtest-memory", daemon=True)

    def start(self) -> None:
        """Sample every ``every_s`` seconds in a thread until :meth:`stop`."""
        self._thread.start()

    def stop(self) -> None:
        """End the sampling thread (a no-op if it never started)."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join()

    def _loop(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.every_s)

    def sample(self) -> None:
        """Take one sample of every process of the server."""
        import psutil

        try:
            master = psutil.Process(self.pid)
            procs = [master, *master.children(recursive=True)]
        except psutil.Error:
            return
        available = psutil.virtual_memory().available / 2**20
        seen: list[tuple[int, str, float, float]] = []
        for p in procs:
            try:
                role = "master" if p.pid == self.pid else "worker" if p.ppid() == self.pid else "job"
                t = p.cpu_times()
                seen.append((p.pid, role, p.memory_info().rss / 2**20, t.user + t.system))
            except psutil.Error:
                continue
        with self._lock:
            for pid, role, mb, cpu in seen:
                self.role[pid] = role
                self.peak[pid] = max(self.peak.get(pid, 0.0), mb)
                self.cpu[pid] = cpu
            self.peak_total = max(self.peak_total, sum(s[2] for s in seen))
            self.peak_jobs_total = max(self.peak_jobs_total, sum(s[2] for s in seen if s[1] == "job"))
            self.available_min = min(self.available_min, available)
            self.samples += 1

    def cpu_s(self) -> float:
        """CPU seconds of every process seen so far, each as of its last sample."""
        with self._lock:
            return sum(self.cpu.values())

    def report(self) -> dict[str, Any]:
        """Peak RSS in MB: the master, each worker, the background jobs, the whole server."""
        def of(role: str) -> list[tuple[int, float]]:
            return [(pid, mb) for pid, mb in self.peak.items() if self.role[pid] == role]

        jobs = of("job")
        return {
            "master_peak_rss_mb": max((mb for _, mb in of("master")), default=None),
            "workers": [{"pid": pid, "peak_rss_mb": mb} for pid, mb in sorted(of("worker"))],
            "jobs_seen": len(jobs),
            "job_peak_rss_mb": max((mb for _, mb in jobs), default=None),
            "jobs_peak_total_rss_mb": self.peak_jobs_total,
            "peak_total_rss_mb": self.peak_total,
            "machine_available_min_mb": self.available_min if self.samples else None,
            "samples": self.samples,
            "every_s": self.every_s,
        }


# ---------------------------------------------------------------------------- the run
def _locust(cfg: LoadConfig, port: int, samples: Path, log_path: Path) -> subprocess.Popen[bytes]:
    """Start locust headless against the server, in its own process."""
    cmd = [sys.executable, "-m", "locust", "-f", str(LOCUSTFILE), "--headless", "--only-summary",
           "--host", f"http://127.0.0.1:{port}", "--users", str(cfg.users), "--spawn-rate", f"{cfg.spawn_rate:g}",
           "--run-time", f"{max(1, round(cfg.duration_s))}s", "--stop-timeout", f"{max(0, round(cfg.drain_s))}s",
           "--loglevel", "WARNING", "--samples-file", str(samples), "--visitor-seed", str(cfg.seed),
           "--n-per-class", ",".join(map(str, cfg.n_per_class)), "--think", f"{cfg.think_s[0]:g},{cfg.think_s[1]:g}",
           "--epsilon", f"{EPSILON:g}"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    log.info("starting locust: %d users for %.0f s", cfg.users, cfg.duration_s)
    with open(log_path, "wb") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _children_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    return ru.ru_utime + ru.ru_stime


def _locust_version() -> str | None:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("locust")
    except PackageNotFoundError:
        return None


def run_loadtest(cfg: LoadConfig, port: int | None = None) -> dict[str, Any]:
    """Start gunicorn on loopback, let locust's ``cfg.users`` visitors use it for ``cfg.duration_s``, stop it.

    Args:
        cfg: the settings.
        port: TCP port on 127.0.0.1 (default: a free one).

    Returns:
        A JSON-able report: ``settings``, ``machine``, ``server`` (its options), ``locust``
        (version, exit status), ``startup_s``, ``warmup_s``, ``load_s``, the tables of
        :func:`from_samples` (``actions``, ``callbacks``, ``requests`` and their totals,
        ``actions_started``, ``unfinished_actions``, ``requests_per_s``, ``errors``),
        ``memory`` (peak RSS of the master, each worker and the background jobs, in MB, and
        the machine's lowest available memory), ``server_cpu_s`` and ``client_cpu_s``
        (locust's process) during the load, and ``port``.

    Raises:
        ServerError: gunicorn or locust missing, a server that does not start, or a locust
            run that wrote no events (with its log).
    """
    if _locust_version() is None:
        raise ServerError("the load test needs locust: pip install -r benchmarks/requirements.txt")
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="repgeom-loadtest-"))
    (workdir / "tmp").mkdir()
    log_path, locust_log, samples = workdir / "gunicorn.log", workdir / "locust.log", workdir / "events.json"
    # Every visitor comes from 127.0.0.1: the per-client job bound would treat them as one
    # visitor, so here it is as large as the machine's bound (which stays at its default).
    env = {"TMPDIR": str(workdir / "tmp"), "REPGEOM_WARM": "1" if cfg.warm else "0", "REPGEOM_MAX_CLIENT_JOBS": "64"}
    if cfg.data_root:
        env["REPGEOM_DATA_ROOT"] = cfg.data_root
    client = HttpConnection(port)
    t0 = time.perf_counter()
    proc = start_server(port, "cpu", log_path, cfg.workers, cfg.threads, CONFIG, env)
    memory = Memory(proc.pid, cfg.sample_s)
    locust: subprocess.Popen[bytes] | None = None
    try:
        wait_served(proc, client, log_path)
        client.close()
        startup_s = time.perf_counter() - t0
        memory.start()
        t1 = time.perf_counter()
        if cfg.warm:
            wait_quiet(proc.pid, timeout=300.0)
        warmup_s = time.perf_counter() - t1
        log.info("server up after %.1f s, quiet %.1f s later", startup_s, warmup_s)
        memory.sample()
        cpu0, client0 = memory.cpu_s(), _children_cpu()
        locust = _locust(cfg, port, samples, locust_log)
        # locust's own limit is run time + stop timeout; past that (and a margin) it is hung
        status = locust.wait(timeout=cfg.duration_s + cfg.drain_s + 120)
        client1 = _children_cpu()
        memory.sample()
        cpu1 = memory.cpu_s()
    except subprocess.TimeoutExpired:
        raise ServerError(f"locust did not end in time:\n{log_tail(locust_log)}") from None
    finally:
        if locust is not None and locust.poll() is None:
            locust.kill()
            locust.wait()
        memory.stop()
        client.close()
        stop_server(proc, graceful_s=10.0)
        if cfg.server_log:
            Path(cfg.server_log).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(log_path, cfg.server_log)
        events = json.loads(samples.read_text()) if samples.is_file() else None
        locust_tail = log_tail(locust_log, 4000)
        shutil.rmtree(workdir, ignore_errors=True)
    if events is None:
        raise ServerError(f"locust exited with status {status} and wrote no events:\n{locust_tail}")
    tables = from_samples(events)
    return {
        "settings": {**asdict(cfg), "epsilon": EPSILON},
        "machine": {"cpu": cpu_name(), "cores": os.cpu_count()},
        "server": {"config": CONFIG, "workers": cfg.workers, "threads": cfg.threads, "device": "cpu"},
        "locust": {"version": _locust_version(), "exit_status": status},
        "startup_s": startup_s,
        "warmup_s": warmup_s,
        **tables,
        "memory": memory.report(),
        "server_cpu_s": cpu1 - cpu0,
        "client_cpu_s": client1 - client0,
        "port": port,
    }


# ---------------------------------------------------------------------------- report
def _fmt(v: float | None, spec: str = ".0f") -> str:
    return "-" if v is None else format(v, spec)


def format_report(report: dict[str, Any]) -> str:
    """The report as plain-text tables.

    Args:
        report: what :func:`run_loadtest` returned.

    Returns:
        The text, lines joined with newlines.
    """
    s, m, server = report["settings"], report["memory"], report["server"]
    lines = [
        f"load test (locust {report['locust']['version']}): {s['users']} visitors for {s['duration_s']:.0f} s "
        f"(arriving {s['spawn_rate']:g}/s, pauses {s['think_s'][0]:g}-{s['think_s'][1]:g} s, images per class "
        f"{','.join(map(str, s['n_per_class']))}, seed {s['seed']}), gunicorn {server['workers']} workers x "
        f"{server['threads']} threads ({server['config']}), HTTP on 127.0.0.1",
        f"machine: {report['machine']['cpu']}, {report['machine']['cores']} cores; server up after "
        f"{report['startup_s']:.1f} s, quiet {report['warmup_s']:.1f} s later; load ran {_fmt(report['load_s'], '.1f')} s "
        f"({report['unfinished_actions']} actions unfinished after the {s['drain_s']:g} s drain)",
    ]

    def table(title: str, rows: list[dict[str, Any]], total: dict[str, Any], polls: bool) -> None:
        lines.append(f"{title:<30}{'count':>7}{'p50 ms':>9}{'p95 ms':>9}{'max ms':>9}{'errors':>8}"
                     + (f"{'polls':>7}" if polls else ""))
        for r in [*rows, total]:
            lines.append(f"{r['name']:<30}{r['count']:>7}{_fmt(r['p50_ms']):>9}{_fmt(r['p95_ms']):>9}"
                         f"{_fmt(r['max_ms']):>9}{r['errors']:>8}" + (f"{r.get('polls', 0):>7}" if polls else ""))

    table("action", report["actions"], report["actions_total"], False)
    table("callback", report["callbacks"], report["callbacks_total"], True)
    table("HTTP request", report["requests"], report["requests_total"], False)
    lines.append(f"HTTP requests: {report['requests_total']['count']} ({_fmt(report['requests_per_s'], '.1f')}/s), "
                 f"errors: {report['errors']}; CPU seconds: server {_fmt(report['server_cpu_s'], '.0f')}, "
                 f"locust {report['client_cpu_s']:.0f}")
    workers = ", ".join(f"{w['pid']}: {w['peak_rss_mb']:.0f}" for w in m["workers"]) or "-"
    lines.append(f"peak RSS MB (sampled every {m['every_s']:g} s): master {_fmt(m['master_peak_rss_mb'])}; "
                 f"workers {workers}; background jobs {m['jobs_seen']} (largest {_fmt(m['job_peak_rss_mb'])}, "
                 f"all at once {m['jobs_peak_total_rss_mb']:.0f}); whole server {m['peak_total_rss_mb']:.0f}; "
                 f"machine's available memory fell to {_fmt(m.get('machine_available_min_mb'))}")
    for r in report["actions"] + report["callbacks"] + report["requests"]:
        if r.get("first_error"):
            lines.append(f"first error in {r['name']}: {r['first_error']}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- command line
def _whole(lo: int, hi: int) -> Callable[[str], int]:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be a whole number from {lo} to {hi}, got {text!r}")
        return value

    return parse


def _number(lo: float, hi: float, zero: bool = False) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (lo <= value <= hi if zero else lo < value <= hi):
            span = f"from {lo:g} to {hi:g}" if zero else f"above {lo:g} and at most {hi:g}"
            raise argparse.ArgumentTypeError(f"must be a number {span}, got {text!r}")
        return value

    return parse


def _counts(text: str) -> tuple[int, ...]:
    try:
        values = tuple(dict.fromkeys(int(v) for v in text.split(",")))
    except ValueError:
        values = ()
    if not values or not all(1 <= v <= 100 for v in values):
        raise argparse.ArgumentTypeError(f"must be whole numbers from 1 to 100 separated by commas, got {text!r}")
    return values


def _folder(text: str) -> str:
    if not Path(text).is_dir():
        raise argparse.ArgumentTypeError(f"must be an existing folder (torchvision's MNIST root), got {text!r}")
    return str(Path(text).resolve())  # the server runs from the repository root


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="python -m benchmarks.loadtest",
                description="locust's simulated visitors against the dashboard under gunicorn on 127.0.0.1.")
    p.add_argument("--users", type=_whole(1, 1000), default=50, help="simulated visitors (default 50)")
    p.add_argument("--duration", type=_number(0, 86400), default=300.0, help="seconds of load (default 300)")
    p.add_argument("--spawn-rate", type=_number(0, 1000), default=10.0,
                   help="visitors arriving per second (default 10)")
    p.add_argument("--workers", type=_whole(1, 64), default=2, help="gunicorn workers (default 2)")
    p.add_argument("--threads", type=_whole(1, 64), default=4, help="threads per worker (default 4)")
    p.add_argument("--seed", type=_whole(0, 2**31 - 1), default=0, help="seed of the visitors' choices (default 0)")
    p.add_argument("--n-per-class", type=_counts, default=(5, 10, 20), metavar="N,N,...",
                   help="images per class the visitors choose from (default 5,10,20)")
    p.add_argument("--data-root", type=_folder, default=None, help="torchvision MNIST root for the server")
    p.add_argument("--drain", type=_number(0, 3600, zero=True), default=60.0,
                   help="seconds actions under way at the end may take to finish (default 60)")
    p.add_argument("--no-warm", dest="warm", action="store_false",
                   help="start the visitors without the server's start-up warm-up")
    p.add_argument("--json", metavar="FILE", default=None, help="also write the report as JSON")
    p.add_argument("--server-log", metavar="FILE", default=None, help="keep the server's log in FILE")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    """Run the load test from the command line; 0 if no request failed, 1 if any did, 2 for bad flags."""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    cfg = LoadConfig(users=args.users, duration_s=args.duration, spawn_rate=args.spawn_rate, workers=args.workers,
                     threads=args.threads, seed=args.seed, data_root=args.data_root, n_per_class=args.n_per_class,
                     warm=args.warm, drain_s=args.drain, server_log=args.server_log)
    try:
        report = run_loadtest(cfg)
    except ServerError as exc:
        sys.stderr.write(f"python -m benchmarks.loadtest: error: {exc}\n")
        return 1
    sys.stdout.write(format_report(report) + "\n")
    if args.json:
        path = Path(args.json)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(report, indent=1))
        log.info("wrote %s", path)
    return 1 if report["errors"] else 0


if __name__ == "__main__":
    raise SystemExit(main())

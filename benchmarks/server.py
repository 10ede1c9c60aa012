"""The production server for the benchmark and the load test: started, watched and stopped.

Design notes:
    * *As in production.* ``gunicorn app:server`` from the repository root, optionally with
      ``-c python:repgeom.gunicorn_conf``, bound to 127.0.0.1 only. ``--no-control-socket``
      keeps several servers on one host (two runs, a test beside a dashboard) from fighting
      over gunicorn's shared ``~/.gunicorn/gunicorn.ctl``. OpenMP/MKL threads default to
      ``min(4, cores)`` (an inherited ``OMP_NUM_THREADS`` wins).
    * *Its own process group.* The server starts in a new session and is stopped with
      SIGTERM (gunicorn's graceful stop), a wait, then SIGKILL to that group only, until
      none of it is left: a SIGKILLed worker of a few GB takes a while to free its memory
      before its sockets close.
    * *Watched from /proc.* The process tree, CPU time and peak RSS (``VmHWM``) are read from
      ``/proc``; where it is absent the figures are ``None`` and the waits return at once.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import platform
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

from .dash_wire import HttpConnection

__all__ = [
    "ROOT",
    "ServerError",
    "cpu_name",
    "cpu_seconds",
    "free_port",
    "peak_rss_mb",
    "start_server",
    "stop_server",
    "tree",
    "wait_quiet",
    "wait_served",
]

log = logging.getLogger(__name__)

#: The repository root: where ``app.py`` is.
ROOT = Path(__file__).resolve().parents[1]
#: Start-up may take at most this long.
STARTUP_TIMEOUT_S = 180.0


class ServerError(RuntimeError):
    """The server could not be started or did not serve a page."""


def free_port() -> int:
    """A TCP port free on 127.0.0.1 right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_name() -> str:
    """The CPU's model name (``/proc/cpuinfo``, else :func:`platform.processor`)."""
    try:
        with open("/proc/cpuinfo") as fh:
            name = next((ln.split(":", 1)[1].strip() for ln in fh if ln.startswith("model name")), "")
    except OSError:
        name = ""
    return name or platform.processor() or "unknown"


def _server_env(device: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LOCUST_")}
    if device is None:
        env.pop("REPGEOM_DEVICE", None)
    else:
        env["REPGEOM_DEVICE"] = device
    env["REPGEOM_WARM"] = "1"
    threads = str(max(1, min(4, os.cpu_count() or 1)))  # the request threads share these cores
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, threads)
    return env


def start_server(port: int, device: str | None, log_path: Path, workers: int = 1, threads: int = 8,
                 config: str | None = None, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Spawn gunicorn on 127.0.0.1:``port`` in its own session.

    Args:
        port: TCP port on 127.0.0.1.
        device: torch device for the server (``REPGEOM_DEVICE``); ``None`` lets it choose.
        log_path: file for the server's output.
        workers: gunicorn workers.
        threads: request threads per worker.
        config: e.g. ``python:repgeom.gunicorn_conf``; without it ``--timeout 120``. Bind,
            workers and threads are always on the command line (which wins over a config
            file) and in ``REPGEOM_*`` variables.
        env: more variables for the server (``REPGEOM_WARM=1`` unless this says otherwise).

    Returns:
        The gunicorn master.

    Raises:
        ServerError: gunicorn is not installed.
    """
    try:
        import gunicorn  # noqa: F401 - only to fail early with a clear message
    except ImportError:
        raise ServerError("the benchmark needs gunicorn: pip install -r requirements.txt") from None
    cmd = [sys.executable, "-m", "gunicorn", *(["-c", config] if config else []), "--bind", f"127.0.0.1:{port}",
           "--workers", str(workers), "--threads", str(threads), *([] if config else ["--timeout", "120"]),
           "--no-control-socket", "app:server"]
    server_env = {**_server_env(device), **(env or {})}
    if config:
        server_env.update(REPGEOM_HOST="127.0.0.1", REPGEOM_PORT=str(port), REPGEOM_WORKERS=str(workers),
                          REPGEOM_THREADS=str(threads))
    log.info("starting %s", " ".join(cmd[2:]))
    with open(log_path, "wb") as fh:
        return subprocess.Popen(cmd, cwd=ROOT, env=server_env, stdin=subprocess.DEVNULL,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def log_tail(path: Path, n: int = 2000) -> str:
    """The last ``n`` bytes of the server's log, as text ("" if unreadable)."""
    try:
        return path.read_bytes()[-n:].decode(errors="replace")
    except OSError:
        return ""


def wait_served(proc: subprocess.Popen[bytes], client: HttpConnection, log_path: Path,
                timeout_s: float = STARTUP_TIMEOUT_S) -> None:
    """Return once ``GET /`` and ``GET /healthz`` both answer 200.

    Raises:
        ServerError: the server exited, or did not serve within ``timeout_s`` (with its log).
    """
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServerError(f"the server exited with status {proc.returncode} during start-up:\n{log_tail(log_path)}")
        try:
            if client.request("GET", "/")[0] == 200 and client.request("GET", "/healthz")[0] == 200:
                return
        except (OSError, http.client.HTTPException):
            client.close()
        time.sleep(0.05)
    raise ServerError(f"the server did not serve a page within {timeout_s:.0f} s:\n{log_tail(log_path)}")


def _processes() -> Iterator[tuple[int, list[str]]]:
    """Every process's pid and the fields of ``/proc/<pid>/stat`` after its name (state first)."""
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 2:
            yield int(entry.name), fields


def tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (gunicorn's workers and their job processes), from ``/proc``."""
    parent = {child: int(fields[1]) for child, fields in _processes()}
    out, frontier = [pid], [pid]
    while frontier:
        frontier = [child for child, p in parent.items() if p in frontier]
        out += frontier
    return out


def cpu_seconds(pids: list[int]) -> float | None:
    """User + system CPU seconds of ``pids`` (``None`` if one is unreadable)."""
    try:
        ticks = 0
        for pid in pids:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])  # utime, stime
        return ticks / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def wait_quiet(pid: int, busy: float = 0.1, window: float = 0.5, timeout: float = 60.0) -> None:
    """Wait until the tree of ``pid`` uses under ``busy`` of one core over ``window`` seconds."""
    deadline = time.monotonic() + timeout
    before = cpu_seconds(tree(pid))
    while before is not None and time.monotonic() < deadline:
        time.sleep(window)
        pids = tree(pid)
        after = cpu_seconds(pids)
        if after is None or after - before < busy * window:
            return
        before = after
    if before is not None:
        log.warning("the server was still busy after %.0f s; measuring anyway", timeout)


def peak_rss_mb(pids: list[int]) -> float | None:
    """Sum of ``VmHWM`` (peak RSS) of ``pids`` in MB, ``None`` without ``/proc``."""
    total = 0
    try:
        for pid in pids:
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1])
    except (OSError, ValueError):
        return None
    return total / 1024 if total else None


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes of process group ``pgid``, from ``/proc`` (empty without it)."""
    return [pid for pid, fields in _processes() if fields[0] not in ("Z", "X") and int(fields[2]) == pgid]


def stop_server(proc: subprocess.Popen[bytes], graceful_s: float = 40.0, timeout_s: float = 30.0) -> None:
    """SIGTERM (graceful, ``graceful_s`` at most), then SIGKILL the server's process group until none is left."""
    if proc.poll() is None and graceful_s > 0:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=graceful_s)
        except subprocess.TimeoutExpired:
            log.warning("the server ignored SIGTERM; killing it")
    deadline = time.monotonic() + timeout_s
    left: list[int] = []
    while True:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)  # the group is the server's own (start_new_session)
        if proc.poll() is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=1)
        left = _group_members(proc.pid)
        if (not left and proc.poll() is not None) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    if left:
        log.warning("processes %s of the server outlived SIGKILL for %.0f s", left, timeout_s)

"""gunicorn settings for the dashboard: ``gunicorn -c python:repgeom.gunicorn_conf app:server``.

Every value comes from a ``REPGEOM_*`` variable with a default fit for a small CPU box
(see :func:`parse_options`); gunicorn's own flags and ``GUNICORN_CMD_ARGS`` still win.

Design notes:
    * *Models load after the fork.* ``preload_app`` is off, so the master never builds
      the app: each worker imports ``app:server`` at boot, which builds the Dash app and
      loads the models in that worker. A worker starts accepting connections only after
      that, so ``/healthz`` answers 200 only from a worker whose models are loaded.
    * *Cores are shared, not multiplied.* ``post_fork`` gives each worker
      ``max(1, cores // workers)`` torch threads (and the same BLAS/OpenMP limit), so
      torch threads x workers <= cores whenever workers <= cores. Cores are those this
      process may use: CPU affinity and a cgroup CPU quota (a container's ``--cpus``).
      Request threads (``gthread``) mostly wait on I/O or on those torch threads.
    * *Memory is bounded per worker.* After each request ``post_request`` reads the
      worker's RSS (pages shared with the master included, so it errs on the safe
      side); above ``REPGEOM_MAX_WORKER_RSS_MB`` it logs a warning and marks the
      worker not alive, so gunicorn finishes its in-flight requests and forks a fresh
      one. ``max_requests`` (with jitter) recycles workers too, but rarely: a recycled
      worker loses its in-process caches (``REPGEOM_CACHE_DIR`` survives it), and every
      browser waiting on a background job polls 4 times a second, each poll a request
      (at 10,000 a class of 50 recycled both workers within 3 minutes).
    * *Nothing happens at import but reading the environment* (gunicorn imports this
      module in the master): torch, psutil and threadpoolctl are imported inside the
      hooks, which run in the workers. A bad variable stops gunicorn with one line
      (``repgeom.gunicorn_conf: error: ...``) and exit status 2. Importing it as
      ``python:repgeom.gunicorn_conf`` does run ``repgeom/__init__``, so the master holds
      the libraries (torch, numpy, scikit-learn), never the app or the models: workers
      fork with them imported and share their pages. With 2 workers that measured
      ~0.9 GB PSS in all against ~1.2 GB when each worker imports them itself
      (``-c repgeom/gunicorn_conf.py``), and a recycled worker is back in seconds.
    * *No control socket.* gunicorn's ``gunicornc`` socket lives in ``$HOME`` (absent for
      the image's user) and would be shared by every server of one user; scale with
      ``REPGEOM_WORKERS`` or the ``TTIN``/``TTOU`` signals instead.
"""

from __future__ import annotations

import math
import os
import resource
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "ServerOptions",
    "available_cores",
    "check_worker_memory",
    "parse_options",
    "torch_threads",
]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
#: Thread-count variables of the native libraries that torch, numpy and scikit-learn use.
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


class ConfigError(ValueError):
    """A ``REPGEOM_*`` variable with a value the server cannot use (one-line message)."""


@dataclass(frozen=True)
class ServerOptions:
    """The server's settings, read from ``REPGEOM_*`` variables.

    Attributes:
        host: interface (``REPGEOM_HOST``, default 127.0.0.1; the image sets 0.0.0.0).
        port: TCP port (``REPGEOM_PORT``, default 8050).
        workers: worker processes (``REPGEOM_WORKERS``, default ``min(2, cores)``).
        threads: request threads per worker (``REPGEOM_THREADS``, default 4).
        timeout: seconds a silent worker lives before it is killed and replaced
            (``REPGEOM_TIMEOUT``, default 120).
        max_requests: requests after which a worker is replaced, 0 for never
            (``REPGEOM_MAX_REQUESTS``, default 100000, with 10 % jitter).
        max_worker_rss_mb: resident memory above which a worker is replaced after its
            current requests, 0 for no limit (``REPGEOM_MAX_WORKER_RSS_MB``, default 3072).
        access_log: one line per request on stdout (``REPGEOM_ACCESS_LOG``, default off).
        cores: CPU cores this process may use.
    """

    host: str = "127.0.0.1"
    port: int = 8050
    workers: int = 2
    threads: int = 4
    timeout: int = 120
    max_requests: int = 100_000
    max_worker_rss_mb: int = 3072
    access_log: bool = False
    cores: int = 1

    @property
    def bind(self) -> str:
        """``host:port`` for gunicorn (an IPv6 host in brackets)."""
        host = f"[{self.host}]" if ":" in self.host and not self.host.startswith("[") else self.host
        return f"{host}:{self.port}"


def _whole(env: Mapping[str, str], name: str, default: int, low: int, high: int, what: str = "") -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = None
    if value is None or not low <= value <= high:
        raise ConfigError(f"{name} must be a whole number{what} from {low} to {high}, got {raw!r}")
    return value


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of 1, 0, true, false, yes, no, on, off, got {raw!r}")


def _host(env: Mapping[str, str]) -> str:
    raw = env.get("REPGEOM_HOST")
    if raw is None:
        return ServerOptions.host
    host = raw.strip()
    if not host or any(c.isspace() or c in "/@?#" for c in host):
        raise ConfigError(
            f"REPGEOM_HOST must be an interface name or address such as 127.0.0.1 or 0.0.0.0, got {raw!r}")
    return host


def _cgroup_cpus() -> float | None:
    """The CPU quota of this process's cgroup (v2 ``cpu.max`` or v1 CFS), ``None`` if unlimited."""
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except (OSError, ValueError):
        pass
    try:
        v1 = Path("/sys/fs/cgroup/cpu")
        quota_us, period_us = int((v1 / "cpu.cfs_quota_us").read_text()), int((v1 / "cpu.cfs_period_us").read_text())
        return quota_us / period_us if quota_us > 0 and period_us > 0 else None
    except (OSError, ValueError):
        return None


def available_cores() -> int:
    """CPU cores this process may use: its affinity mask, capped by a cgroup quota (at least 1)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    quota = _cgroup_cpus()
    if quota is not None:
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def parse_options(env: Mapping[str, str] | None = None, cores: int | None = None) -> ServerOptions:
    """Read the server's settings from ``REPGEOM_*`` variables.

    Args:
        env: the variables (default: ``os.environ``).
        cores: CPU cores to plan for (default: :func:`available_cores`).

    Returns:
        The validated settings.

    Raises:
        ConfigError: naming the variable, the values allowed and the value given.
    """
    env = os.environ if env is None else env
    cores = available_cores() if cores is None else max(1, int(cores))
    return ServerOptions(
        host=_host(env),
        port=_whole(env, "REPGEOM_PORT", ServerOptions.port, 1, 65535),
        workers=_whole(env, "REPGEOM_WORKERS", min(2, cores), 1, 64),
        threads=_whole(env, "REPGEOM_THREADS", ServerOptions.threads, 1, 64),
        timeout=_whole(env, "REPGEOM_TIMEOUT", ServerOptions.timeout, 10, 3600, " of seconds"),
        max_requests=_whole(env, "REPGEOM_MAX_REQUESTS", ServerOptions.max_requests, 0, 10_000_000),
        max_worker_rss_mb=_whole(env, "REPGEOM_MAX_WORKER_RSS_MB", ServerOptions.max_worker_rss_mb, 0, 1 << 20,
                                 " of MB"),
        access_log=_flag(env, "REPGEOM_ACCESS_LOG", ServerOptions.access_log),
        cores=cores,
    )


def torch_threads(cores: int, workers: int) -> int:
    """Torch (and BLAS) threads per worker so that threads x workers <= cores when it can be."""
    return max(1, cores // max(1, workers))


def check_worker_memory(worker: Any, limit_mb: int) -> float:
    """Read the worker's RSS; above ``limit_mb`` (0: no limit) warn once and mark it for replacement.

    Args:
        worker: the gunicorn worker (``alive``, ``pid``, ``log``).
        limit_mb: the bound in MB.

    Returns:
        The worker's resident set size in MB.
    """
    import psutil

    rss_mb = psutil.Process().memory_info().rss / 2**20
    if limit_mb and rss_mb > limit_mb and worker.alive:
        worker.log.warning(
            "worker %s: RSS %.0f MB above REPGEOM_MAX_WORKER_RSS_MB=%d; replacing it after its current requests",
            worker.pid, rss_mb, limit_mb,
        )
        worker.alive = False
    return rss_mb


def _load() -> ServerOptions:
    try:
        return parse_options()
    except ConfigError as exc:
        sys.stderr.write(f"repgeom.gunicorn_conf: error: {exc}\n")
        raise SystemExit(2) from None


_OPTIONS = _load()

# ---------------------------------------------------------------------------- gunicorn settings
wsgi_app = "app:server"
bind = [_OPTIONS.bind]
workers = _OPTIONS.workers
worker_class = "gthread"
threads = _OPTIONS.threads
preload_app = False
timeout = _OPTIONS.timeout
graceful_timeout = 30
keepalive = 5
max_requests = _OPTIONS.max_requests
max_requests_jitter = _OPTIONS.max_requests // 10
# A shared view lives in the query string: allow gunicorn's largest request line.
limit_request_line = 8190
limit_request_fields = 100
limit_request_field_size = 8190
control_socket_disable = True
proc_name = "repgeom"
# Heartbeat files in memory: a container's /tmp may be a slow overlay disk.
worker_tmp_dir = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
accesslog = "-" if _OPTIONS.access_log else None
access_log_format = '%(h)s "%(r)s" %(s)s %(b)s %(M)sms pid=%(p)s'


# ---------------------------------------------------------------------------- hooks
def when_ready(server: Any) -> None:
    """Log the plan once the master listens."""
    n = server.num_workers
    server.log.info(
        "repgeom: %d workers x %d threads (gthread), %d cores, worker RSS limit %s, recycling after ~%s requests",
        n, server.cfg.threads, _OPTIONS.cores,
        f"{_OPTIONS.max_worker_rss_mb} MB" if _OPTIONS.max_worker_rss_mb else "off",
        server.cfg.max_requests or "no",
    )
    if n > _OPTIONS.cores:
        server.log.warning("repgeom: %d workers on %d cores: their torch threads will compete", n, _OPTIONS.cores)


def post_fork(server: Any, worker: Any) -> None:
    """In the new worker, before the app loads: share the cores among the workers."""
    n_workers = server.num_workers
    n = torch_threads(_OPTIONS.cores, n_workers)
    for var in _THREAD_VARS:  # for subprocesses and libraries not loaded yet
        os.environ[var] = str(n)
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(n)
    threadpool_limits(limits=n)  # numpy/scipy BLAS already loaded in the master
    got = torch.get_num_threads()
    relation = "<=" if got * n_workers <= _OPTIONS.cores else ">"
    worker.log.info(
        "worker %s: torch threads %d x %d workers = %d %s %d cores",
        worker.pid, got, n_workers, got * n_workers, relation, _OPTIONS.cores,
    )


def post_worker_init(worker: Any) -> None:
    """In the worker once ``app:server`` is built (models loaded), before it accepts a connection."""
    import psutil

    me = psutil.Process()
    worker.log.info("worker %s: app ready (models loaded) %.1f s after the fork, RSS %.0f MB",
                    worker.pid, time.time() - me.create_time(), me.memory_info().rss / 2**20)


def post_request(worker: Any, req: Any, environ: Any, resp: Any) -> None:
    """After each request: replace the worker once its RSS passes the bound."""
    check_worker_memory(worker, _OPTIONS.max_worker_rss_mb)


def worker_exit(server: Any, worker: Any) -> None:
    """In the exiting worker: report its memory and how many requests it served."""
    import psutil

    rss_mb = psutil.Process().memory_info().rss / 2**20
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux
    worker.log.info("worker %s exiting: RSS %.0f MB (peak %.0f MB) after %d requests", worker.pid, rss_mb, peak_mb,
                    getattr(worker, "nr", 0))

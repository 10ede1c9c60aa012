"""gunicorn settings for the dashboard: ``gunicorn -c python:repgeom.gunicorn_conf app:server``.

Every value comes from a ``REPGEOM_*`` variable with a default fit for a small CPU box
(read by :func:`repgeom.settings.parse_options`); gunicorn's own flags and
``GUNICORN_CMD_ARGS`` still win.

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
    * *Slow clients cost a socket, not a thread.* The worker class is
      :class:`repgeom.gunicorn_worker.BufferingWorker`: ``gthread`` that receives each
      request in its event loop and gives a thread only to one that has fully arrived
      (within 20 s), with ``/healthz`` on a lane of its own.
    * *Memory is bounded per worker.* Each worker's allocator is tuned to give large
      arrays back when they are freed (:mod:`repgeom.memory`). After each request
      ``post_request`` reads the worker's RSS (pages shared with the master included, so
      it errs on the safe side); above ``REPGEOM_MAX_WORKER_RSS_MB`` it logs a warning and marks the
      worker not alive, so gunicorn finishes its in-flight requests and forks a fresh
      one. ``max_requests`` (with jitter) recycles workers too, but rarely: a recycled
      worker loses its in-process caches (``REPGEOM_CACHE_DIR`` survives it), and every
      browser waiting on a background job polls 4 times a second, each poll a request
      (at 10,000 a class of 50 recycled both workers within 3 minutes).
    * *Nothing happens at import but reading the environment* (gunicorn imports this
      module in the master). A bad variable stops gunicorn with one line
      (``repgeom.gunicorn_conf: error: ...``) and exit status 2. ``on_starting`` then
      imports torch, torchvision and numpy in the master, never the app or the models:
      workers fork with them imported and share their pages (with 2 workers ~0.9 GB PSS
      in all against ~1.2 GB when each worker imports them itself), and a recycled worker
      is back in seconds.
    * *No control socket.* gunicorn's ``gunicornc`` socket lives in ``$HOME`` (absent for
      the image's user) and would be shared by every server of one user; scale with
      ``REPGEOM_WORKERS`` or the ``TTIN``/``TTOU`` signals instead.
"""

from __future__ import annotations

import os
import resource
import sys
import time
from typing import Any

from .settings import ConfigError, ServerOptions, available_cores, parse_options

__all__ = [
    "ConfigError",
    "ServerOptions",
    "available_cores",
    "check_worker_memory",
    "parse_options",
    "torch_threads",
]

#: Thread-count variables of the native libraries that torch, numpy and scikit-learn use.
_THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def torch_threads(cores: int, workers: int) -> int:
    """Torch (and BLAS) threads per worker so that threads x workers <= cores when it can be."""
    return max(1, cores // max(1, workers))


def check_worker_memory(worker: Any, limit_mb: int) -> float:
    """Read the worker's RSS; above ``limit_mb`` (0: no limit) warn once and mark it for replacement.

    Above three quarters of the bound, free heap pages are first given back to the system
    (:func:`repgeom.memory.release_free_memory`), so only memory in use counts.

    Args:
        worker: the gunicorn worker (``alive``, ``pid``, ``log``).
        limit_mb: the bound in MB.

    Returns:
        The worker's resident set size in MB.
    """
    import psutil

    from .memory import release_free_memory

    me = psutil.Process()
    rss_mb = me.memory_info().rss / 2**20
    if limit_mb and rss_mb > 0.75 * limit_mb:  # free heap pages are not memory the worker uses
        release_free_memory()
        rss_mb = me.memory_info().rss / 2**20
    if limit_mb and rss_mb > limit_mb and worker.alive:
        worker.log.warning(
            "worker %s: RSS %.0f MB above REPGEOM_MAX_WORKER_RSS_MB=%d; replacing it after its current requests",
            worker.pid, rss_mb, limit_mb,
        )
        worker.alive = False
    return rss_mb


def on_starting(server: Any) -> None:
    """In the master, before the first fork: import the heavy libraries once so every worker shares their pages."""
    import numpy  # noqa: F401, PLC0415
    import torch  # noqa: F401, PLC0415
    import torchvision.models.feature_extraction  # noqa: F401, PLC0415


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
worker_class = "repgeom.gunicorn_worker.BufferingWorker"  # gthread that threads only whole requests
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
        "repgeom: %d workers x %d threads (buffering gthread), %d cores, worker RSS limit %s, recycling after ~%s requests",
        n, server.cfg.threads, _OPTIONS.cores,
        f"{_OPTIONS.max_worker_rss_mb} MB" if _OPTIONS.max_worker_rss_mb else "off",
        server.cfg.max_requests or "no",
    )
    if n > _OPTIONS.cores:
        server.log.warning("repgeom: %d workers on %d cores: their torch threads will compete", n, _OPTIONS.cores)


def post_fork(server: Any, worker: Any) -> None:
    """In the new worker, before the app loads: tune its allocator, share the cores among the workers."""
    from .memory import tune_allocator

    tune_allocator()
    n_workers = server.num_workers
    n = torch_threads(_OPTIONS.cores, n_workers)
    for var in _THREAD_VARS:  # for subprocesses and libraries not loaded yet
        os.environ[var] = str(n)
    # each worker has its own pool of background-job processes: share the cores among them too
    os.environ.setdefault("REPGEOM_JOB_PROCESSES", str(n))
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

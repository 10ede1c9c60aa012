"""Settings from flags and ``REPGEOM_*`` environment variables (flags win): the one module that reads the environment.

Design notes:
    The numerics (``repgeom.core``), the engine and the figures never look at
    ``os.environ``; they take explicit arguments. The dashboard (:class:`Settings`), the
    gunicorn configuration (:class:`ServerOptions`), the command line and the Python API
    get their defaults from here, through one set of validators
    (:mod:`repgeom.core.validate`), so a bad value gets the same one-line message
    wherever it is read. This module imports neither torch nor Dash.
"""

from __future__ import annotations

import argparse
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .argparsing import OneLineParser
from .core.errors import RepgeomError
from .core.validate import check_int

__all__ = [
    "DEFAULT_CACHE_BYTES",
    "MIN_TORCH",
    "ConfigError",
    "ServerOptions",
    "Settings",
    "available_cores",
    "check_runtime",
    "env_data_root",
    "env_models_dir",
    "parse_options",
    "parse_settings",
    "unsafe_loading_forced",
]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off", "")
#: Environment switches with which torch would load full pickles; we refuse to run under them.
_UNSAFE_ENV = ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",)
#: Oldest torch whose ``weights_only`` unpickler we trust (major, minor).
MIN_TORCH = (2, 10)
#: Default bound on the engine's in-process cache of computed results. With the response cache
#: (128 MiB) and a worker's ~0.8 GB of models and libraries it stays inside gunicorn's default
#: 3,072 MB RSS bound, so a busy worker is not recycled with its caches and jobs.
DEFAULT_CACHE_BYTES = 1 << 30


class ConfigError(RepgeomError):
    """A ``REPGEOM_*`` variable or flag with a value the server cannot use (one-line message)."""


# ---------------------------------------------------------------------------- one parser per kind of value
def _whole(env: Mapping[str, str], name: str, default: int, lo: int, hi: int, unit: str = "") -> int:
    raw = env.get(name)
    if raw is None:
        return default
    try:
        return check_int(name, raw, lo, hi, unit)
    except RepgeomError as exc:
        raise ConfigError(str(exc)) from None


def _flag(env: Mapping[str, str], name: str, default: bool) -> bool:
    raw = env.get(name)
    if raw is None:
        return default
    if raw.strip().lower() in _TRUE:
        return True
    if raw.strip().lower() in _FALSE:
        return False
    raise ConfigError(f"{name} must be one of 1, 0, true, false, yes, no, on, off, got {raw!r}")


def _host(raw: str | None, what: str = "REPGEOM_HOST", default: str = "127.0.0.1") -> str:
    if raw is None:
        return default
    host = raw.strip()
    if not host or any(c.isspace() or c in "/@?#" for c in host):
        raise ConfigError(f"{what} must be an interface name or address such as 127.0.0.1 or 0.0.0.0, got {raw!r}")
    return host


def env_models_dir(env: Mapping[str, str] | None = None) -> str | None:
    """``REPGEOM_MODELS_DIR`` if set (the command line and the Python API default to it)."""
    return (os.environ if env is None else env).get("REPGEOM_MODELS_DIR") or None


def env_data_root(env: Mapping[str, str] | None = None) -> str | None:
    """``REPGEOM_DATA_ROOT`` if set: a torchvision root holding the full test split."""
    return (os.environ if env is None else env).get("REPGEOM_DATA_ROOT") or None


def unsafe_loading_forced(env: Mapping[str, str] | None = None) -> str | None:
    """The name of a variable in ``env`` (default ``os.environ``) that forces unsafe torch loading, if set."""
    env = os.environ if env is None else env
    for name in _UNSAFE_ENV:
        if env.get(name, "").strip().lower() not in ("", "0", "false", "no", "off"):
            return name
    return None


def check_runtime(torch_version: str | None = None, env: Mapping[str, str] | None = None) -> None:
    """Refuse to serve where checkpoints could not be loaded safely.

    Args:
        torch_version: the version to check (default: the installed ``torch.__version__``).
        env: environment variables to check (default: ``os.environ``).

    Raises:
        RepgeomError: torch older than :data:`MIN_TORCH` (or an unreadable version), or an
            environment variable that forces unsafe pickle loading.
    """
    if torch_version is None:
        import torch  # noqa: PLC0415 - only where a server starts

        torch_version = torch.__version__
    version = str(torch_version)
    match = re.match(r"\s*(\d+)\.(\d+)", version)
    found = (int(match[1]), int(match[2])) if match else (0, 0)
    if found < MIN_TORCH:
        need = ".".join(map(str, MIN_TORCH))
        raise RepgeomError(f"repgeom needs torch >= {need} for safe checkpoint loading, found {version[:40]}")
    forced = unsafe_loading_forced(env)
    if forced:
        raise RepgeomError(f"refusing to start while {forced} is set (it forces unsafe pickle loading); unset it")


# ---------------------------------------------------------------------------- the dashboard
@dataclass(frozen=True)
class Settings:
    """How to run the dashboard.

    Attributes:
        host: interface to listen on (``REPGEOM_HOST``, default 127.0.0.1).
        port: TCP port (``REPGEOM_PORT``, default 8050).
        models_dir: folder with ``manifest.json`` (``REPGEOM_MODELS_DIR``, default ``models/``).
        data_root: torchvision root holding the dataset's full test split (``REPGEOM_DATA_ROOT``;
            default: the embedded probes).
        device: torch device (``REPGEOM_DEVICE``, default auto: cuda, mps, cpu).
        debug: Dash debug mode and dev tools (``REPGEOM_DEBUG``, default off).
        warm: precompute the default views in the background at start-up (``REPGEOM_WARM``, default on).
        response_cache_bytes: bound on the replayed-response cache per process
            (``REPGEOM_RESPONSE_CACHE_BYTES``, default 128 MiB; 0 turns it off).
        cache_bytes: bound on the engine's cache of computed results per process
            (``REPGEOM_CACHE_BYTES``, default 1 GiB).
        cache_dir: folder where replayed responses and computed embeddings are also
            kept, shared by every worker on the machine and across restarts, and where
            background jobs keep their results (``REPGEOM_CACHE_DIR``; default: a
            ``repgeom-<uid>`` folder in the system's temporary directory).
        redis_url: ``redis://host:port/db`` to scale out (``REDIS_URL``): the shared cache
            moves to Redis and background callbacks run on Celery workers.
        max_body_bytes: largest request body accepted; larger ones get 413
            (``REPGEOM_MAX_BODY_BYTES``, default 4 MiB, at least 64 KiB).
        job_processes: background-job processes this server process starts
            (``REPGEOM_JOB_PROCESSES``; default: one per core; under gunicorn each worker
            gets ``cores // workers``, at least 1).
        max_jobs: background jobs queued or running on the machine at once; beyond it a
            page is told the server is busy and nothing starts (``REPGEOM_MAX_JOBS``, default 64).
        max_client_jobs: of those, how many one client address may have
            (``REPGEOM_MAX_CLIENT_JOBS``, default 4; visitors behind one proxy share it).
        max_answer_bytes: largest download the dashboard sends; a larger one is refused
            with the equivalent ``python -m repgeom export`` command line
            (``REPGEOM_MAX_ANSWER_BYTES``, default 32 MiB, at least 64 KiB).
    """

    host: str = "127.0.0.1"
    port: int = 8050
    models_dir: str | None = None
    data_root: str | None = None
    device: str | None = None
    debug: bool = False
    warm: bool = True
    response_cache_bytes: int = 128 << 20
    cache_bytes: int = DEFAULT_CACHE_BYTES
    cache_dir: str | None = None
    redis_url: str | None = None
    max_body_bytes: int = 4 << 20
    job_processes: int | None = None
    max_jobs: int = 64
    max_client_jobs: int = 4
    max_answer_bytes: int = 32 << 20

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``REPGEOM_*`` variables alone (what a WSGI server gets)."""
        return parse_settings([], env)


def _port_flag(text: str) -> int:
    try:
        return check_int("port", text, 1, 65535)
    except RepgeomError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_settings(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Parse command-line flags, with defaults taken from ``env`` (``os.environ`` by default).

    Raises:
        SystemExit: with status 2 and a one-line message for a bad flag or variable.
    """
    env = os.environ if env is None else env
    p = OneLineParser(prog="app.py", description="Serve the repgeom dashboard.")
    p.add_argument("--host", default=None, help="interface (REPGEOM_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=_port_flag, default=None, help="port (REPGEOM_PORT, default 8050)")
    p.add_argument("--models-dir", default=env_models_dir(env), help="checkpoint folder with manifest.json (REPGEOM_MODELS_DIR)")
    p.add_argument("--data-root", default=env_data_root(env), help="torchvision root of the full test split (REPGEOM_DATA_ROOT; default: embedded probes)")
    p.add_argument("--device", default=env.get("REPGEOM_DEVICE"), help="auto, cpu, cuda, cuda:K, mps (REPGEOM_DEVICE)")
    p.add_argument("--cache-dir", default=env.get("REPGEOM_CACHE_DIR"), help="folder for the shared response cache (REPGEOM_CACHE_DIR)")
    p.add_argument("--redis-url", default=env.get("REDIS_URL") or None, help="redis://host:port/db: shared cache and Celery background jobs (REDIS_URL)")
    p.add_argument("--debug", action="store_true", default=env.get("REPGEOM_DEBUG", "").lower() in _TRUE, help="Dash debug mode (REPGEOM_DEBUG)")
    p.add_argument(
        "--no-warm", dest="warm", action="store_false", default=env.get("REPGEOM_WARM", "1").lower() in _TRUE,
        help="do not precompute the default views (REPGEOM_WARM=0)",
    )
    a = p.parse_args(list(argv or []))
    try:
        host = _host(a.host, "--host") if a.host is not None else _host(env.get("REPGEOM_HOST"))
        port = a.port if a.port is not None else _whole(env, "REPGEOM_PORT", Settings.port, 1, 65535)
        response_bytes = _whole(env, "REPGEOM_RESPONSE_CACHE_BYTES", Settings.response_cache_bytes, 0, 1 << 50, "of bytes")
        cache_bytes = _whole(env, "REPGEOM_CACHE_BYTES", Settings.cache_bytes, 0, 1 << 50, "of bytes")
        body_bytes = _whole(env, "REPGEOM_MAX_BODY_BYTES", Settings.max_body_bytes, 1 << 16, 1 << 40, "of bytes")
        job_processes = _whole(env, "REPGEOM_JOB_PROCESSES", 0, 0, 64) or None
        max_jobs = _whole(env, "REPGEOM_MAX_JOBS", Settings.max_jobs, 1, 10_000)
        max_client_jobs = _whole(env, "REPGEOM_MAX_CLIENT_JOBS", Settings.max_client_jobs, 1, 10_000)
        answer_bytes = _whole(env, "REPGEOM_MAX_ANSWER_BYTES", Settings.max_answer_bytes, 1 << 16, 1 << 40, "of bytes")
    except ConfigError as exc:
        p.error(str(exc))
    if a.redis_url and not a.redis_url.startswith(("redis://", "rediss://", "unix://")):
        p.error(f"REDIS_URL must start with redis://, rediss:// or unix://, got {a.redis_url[:40]!r}")
    return Settings(
        host=host, port=port, models_dir=a.models_dir, data_root=a.data_root, device=a.device, debug=a.debug,
        warm=a.warm, response_cache_bytes=response_bytes, cache_bytes=cache_bytes, cache_dir=a.cache_dir,
        redis_url=a.redis_url, max_body_bytes=body_bytes, job_processes=job_processes, max_jobs=max_jobs,
        max_client_jobs=max_client_jobs, max_answer_bytes=answer_bytes,
    )


# ---------------------------------------------------------------------------- the production server
@dataclass(frozen=True)
class ServerOptions:
    """The gunicorn server's settings, read from ``REPGEOM_*`` variables.

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
        host=_host(env.get("REPGEOM_HOST")),
        port=_whole(env, "REPGEOM_PORT", ServerOptions.port, 1, 65535),
        workers=_whole(env, "REPGEOM_WORKERS", min(2, cores), 1, 64),
        threads=_whole(env, "REPGEOM_THREADS", ServerOptions.threads, 1, 64),
        timeout=_whole(env, "REPGEOM_TIMEOUT", ServerOptions.timeout, 10, 3600, "of seconds"),
        max_requests=_whole(env, "REPGEOM_MAX_REQUESTS", ServerOptions.max_requests, 0, 10_000_000),
        max_worker_rss_mb=_whole(env, "REPGEOM_MAX_WORKER_RSS_MB", ServerOptions.max_worker_rss_mb, 0, 1 << 20, "of MB"),
        access_log=_flag(env, "REPGEOM_ACCESS_LOG", ServerOptions.access_log),
        cores=cores,
    )

"""Settings from flags and ``REPGEOM_*`` environment variables (flags win): the one module that reads the environment.

Design notes:
    The numerics (``repgeom.core``), the engine and the figures never look at
    ``os.environ``; they take explicit arguments. The dashboard, the command line, the
    Python API and the gunicorn configuration get their defaults from here.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from .argparsing import OneLineParser

__all__ = ["MIN_TORCH", "Settings", "check_runtime", "env_cache_bytes", "env_data_root", "env_models_dir", "parse_settings", "unsafe_loading_forced"]

_TRUE = ("1", "true", "yes", "on")
#: Environment switches with which torch would load full pickles; we refuse to run under them.
_UNSAFE_ENV = ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",)
#: Oldest torch whose ``weights_only`` unpickler we trust (major, minor).
MIN_TORCH = (2, 10)
#: Default bound on the engine's in-process cache of computed results.
DEFAULT_CACHE_BYTES = 2 << 30


def env_models_dir(env: Mapping[str, str] | None = None) -> str | None:
    """``REPGEOM_MODELS_DIR`` if set (the command line and the Python API default to it)."""
    return (os.environ if env is None else env).get("REPGEOM_MODELS_DIR") or None


def env_data_root(env: Mapping[str, str] | None = None) -> str | None:
    """``REPGEOM_DATA_ROOT`` if set: a torchvision root holding the full test split."""
    return (os.environ if env is None else env).get("REPGEOM_DATA_ROOT") or None


def env_cache_bytes(env: Mapping[str, str] | None = None) -> int:
    """``REPGEOM_CACHE_BYTES``, the engine's cache bound (default 2 GiB).

    Raises:
        RepgeomError: for a value that is not a whole number of bytes >= 0.
    """
    from .core.validate import check_int  # noqa: PLC0415 - keeps this module free of torch

    raw = (os.environ if env is None else env).get("REPGEOM_CACHE_BYTES")
    return DEFAULT_CACHE_BYTES if raw is None else check_int("REPGEOM_CACHE_BYTES", raw, 0, 1 << 50)


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
    from .core.errors import RepgeomError  # noqa: PLC0415

    if torch_version is None:
        import torch  # noqa: PLC0415

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


@dataclass(frozen=True)
class Settings:
    """How to run the dashboard.

    Attributes:
        host: interface to listen on (``REPGEOM_HOST``, default 127.0.0.1).
        port: TCP port (``REPGEOM_PORT``, default 8050).
        models_dir: folder with ``manifest.json`` (``REPGEOM_MODELS_DIR``, default ``models/``).
        data_root: torchvision MNIST root for the full test set (``REPGEOM_DATA_ROOT``;
            default: the embedded probes).
        device: torch device (``REPGEOM_DEVICE``, default auto: cuda, mps, cpu).
        debug: Dash debug mode and dev tools (``REPGEOM_DEBUG``, default off).
        warm: precompute the default views in the background at start-up (``REPGEOM_WARM``, default on).
        response_cache_bytes: bound on the replayed-response cache per process
            (``REPGEOM_RESPONSE_CACHE_BYTES``, default 256 MiB; 0 turns it off).
        cache_dir: folder where replayed responses and computed embeddings are also
            kept, shared by every worker on the machine and across restarts, and where
            background jobs keep their results (``REPGEOM_CACHE_DIR``; default: a
            ``repgeom-<uid>`` folder in the system's temporary directory).
        redis_url: ``redis://host:port/db`` to scale out (``REDIS_URL``): the shared cache
            moves to Redis and background callbacks run on Celery workers.
        max_body_bytes: largest request body accepted; larger ones get 413
            (``REPGEOM_MAX_BODY_BYTES``, default 4 MiB, at least 64 KiB).
    """

    host: str = "127.0.0.1"
    port: int = 8050
    models_dir: str | None = None
    data_root: str | None = None
    device: str | None = None
    debug: bool = False
    warm: bool = True
    response_cache_bytes: int = 256 << 20
    cache_dir: str | None = None
    redis_url: str | None = None
    max_body_bytes: int = 4 << 20

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        """Settings from ``REPGEOM_*`` variables alone (what a WSGI server gets)."""
        return parse_settings([], env)


def _port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"port must be a whole number from 1 to 65535, got {text!r}") from None
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"port must be a whole number from 1 to 65535, got {text}")
    return value


def parse_settings(argv: Sequence[str] | None = None, env: Mapping[str, str] | None = None) -> Settings:
    """Parse command-line flags, with defaults taken from ``env`` (``os.environ`` by default).

    Raises:
        SystemExit: with status 2 and a one-line message for a bad flag or variable.
    """
    env = os.environ if env is None else env
    p = OneLineParser(prog="app.py", description="Serve the repgeom dashboard.")
    p.add_argument("--host", default=env.get("REPGEOM_HOST", Settings.host), help="interface (REPGEOM_HOST, default 127.0.0.1)")
    p.add_argument("--port", type=_port, default=None, help="port (REPGEOM_PORT, default 8050)")
    p.add_argument("--models-dir", default=env.get("REPGEOM_MODELS_DIR"), help="checkpoint folder with manifest.json (REPGEOM_MODELS_DIR)")
    p.add_argument("--data-root", default=env.get("REPGEOM_DATA_ROOT"), help="torchvision MNIST root (REPGEOM_DATA_ROOT; default: embedded probes)")
    p.add_argument("--device", default=env.get("REPGEOM_DEVICE"), help="auto, cpu, cuda, cuda:K, mps (REPGEOM_DEVICE)")
    p.add_argument("--cache-dir", default=env.get("REPGEOM_CACHE_DIR"), help="folder for the shared response cache (REPGEOM_CACHE_DIR)")
    p.add_argument("--redis-url", default=env.get("REDIS_URL") or None, help="redis://host:port/db: shared cache and Celery background jobs (REDIS_URL)")
    p.add_argument("--debug", action="store_true", default=env.get("REPGEOM_DEBUG", "").lower() in _TRUE, help="Dash debug mode (REPGEOM_DEBUG)")
    p.add_argument("--no-warm", dest="warm", action="store_false", default=env.get("REPGEOM_WARM", "1").lower() in _TRUE, help="do not precompute the default views (REPGEOM_WARM=0)")
    a = p.parse_args(list(argv or []))
    port = a.port if a.port is not None else _checked_port(p, env.get("REPGEOM_PORT", str(Settings.port)))
    raw_cache = env.get("REPGEOM_RESPONSE_CACHE_BYTES", str(Settings.response_cache_bytes))
    try:
        cache_bytes = int(raw_cache)
        if cache_bytes < 0:
            raise ValueError
    except ValueError:
        p.error(f"REPGEOM_RESPONSE_CACHE_BYTES must be a whole number of bytes >= 0, got {raw_cache!r}")
    raw_body = env.get("REPGEOM_MAX_BODY_BYTES", str(Settings.max_body_bytes))
    try:
        body_bytes = int(raw_body)
        if body_bytes < 1 << 16:
            raise ValueError
    except ValueError:
        p.error(f"REPGEOM_MAX_BODY_BYTES must be a whole number of bytes >= 65536, got {raw_body!r}")
    if a.redis_url and not a.redis_url.startswith(("redis://", "rediss://", "unix://")):
        p.error(f"REDIS_URL must start with redis://, rediss:// or unix://, got {a.redis_url[:40]!r}")
    return Settings(
        host=a.host, port=port, models_dir=a.models_dir, data_root=a.data_root, device=a.device, debug=a.debug,
        warm=a.warm, response_cache_bytes=cache_bytes, cache_dir=a.cache_dir, redis_url=a.redis_url,
        max_body_bytes=body_bytes,
    )


def _checked_port(p: argparse.ArgumentParser, text: str) -> int:
    try:
        return _port(text)
    except argparse.ArgumentTypeError as exc:
        p.error(f"REPGEOM_PORT: {exc}")
        raise  # unreachable: error() exits

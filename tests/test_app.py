"""app.py: settings from flags and REPGEOM_* variables, one-line errors, a lazily built WSGI server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from repgeom.settings import Settings, parse_settings

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_env_and_flags():
    assert parse_settings([], {}) == Settings()
    env = {
        "REPGEOM_PORT": "9000",
        "REPGEOM_HOST": "0.0.0.0",
        "REPGEOM_DEVICE": "cpu",
        "REPGEOM_DEBUG": "1",
        "REPGEOM_WARM": "0",
        "REPGEOM_MODELS_DIR": "/m",
        "REPGEOM_DATA_ROOT": "/d",
        "REPGEOM_MAX_JOBS": "12",
        "REPGEOM_MAX_CLIENT_JOBS": "2",
    }
    s = parse_settings([], env)
    assert (s.port, s.host, s.device, s.debug, s.warm, s.models_dir, s.data_root) == (9000, "0.0.0.0", "cpu", True, False, "/m", "/d")
    assert (s.max_jobs, s.max_client_jobs) == (12, 2)
    assert parse_settings(["--port", "8123", "--host", "127.0.0.2"], env).port == 8123
    assert Settings().debug is False
    assert parse_settings([], {"REDIS_URL": "redis://127.0.0.1:6379/0"}).redis_url == "redis://127.0.0.1:6379/0"
    assert parse_settings([], {"REDIS_URL": ""}).redis_url is None


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["--port", "99999"], {}, "port must be a whole number from 1 to 65535"),
        ([], {"REPGEOM_PORT": "http"}, "REPGEOM_PORT must be a whole number from 1 to 65535"),
        ([], {"REPGEOM_RESPONSE_CACHE_BYTES": "-5"}, "REPGEOM_RESPONSE_CACHE_BYTES must be a whole number"),
        (["--bogus"], {}, "unrecognized arguments: --bogus"),
        ([], {"REPGEOM_MAX_CLIENT_JOBS": "0"}, "REPGEOM_MAX_CLIENT_JOBS must be a whole number from 1 to 10000"),
        ([], {"REDIS_URL": "http://x"}, "REDIS_URL must start with redis://, rediss:// or unix://"),
    ],
)
def test_bad_settings_are_one_line_errors(argv, env, message, capsys):
    with pytest.raises(SystemExit) as exc_info:
        parse_settings(argv, env)
    assert exc_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_app_refuses_an_empty_models_folder_in_one_line(tmp_path):
    (tmp_path / "manifest.json").write_text('{"models": []}')
    r = subprocess.run([sys.executable, "app.py", "--models-dir", str(tmp_path), "--no-warm"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1].startswith("app.py: error: no model could be loaded")
    assert "Traceback" not in r.stderr


def test_wsgi_server_is_built_on_first_use(monkeypatch):
    monkeypatch.setenv("REPGEOM_WARM", "0")
    monkeypatch.setenv("REPGEOM_DEVICE", "cpu")
    sys.path.insert(0, str(ROOT))
    import app

    app._wsgi_app.cache_clear()
    server = app.server
    assert server is app.server  # built once per process
    client = server.test_client()
    assert client.get("/healthz").get_json() == {"models": 6, "status": "ok"}
    assert client.get("/").status_code == 200

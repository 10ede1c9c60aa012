"""The one-machine background manager: a private folder, a shared secret, JSON not pickles."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

import plotly.graph_objects as go
import pytest

from repgeom.core.errors import RepgeomError
from repgeom.ui import background
from repgeom.ui.background import _shared_secret, default_cache_dir, make_background


def test_default_cache_folder_is_private(tmp_path, monkeypatch):
    monkeypatch.setattr(background.tempfile, "gettempdir", lambda: str(tmp_path))
    path = default_cache_dir()
    assert path == tmp_path / f"repgeom-{os.getuid()}" and (path.stat().st_mode & 0o777) == 0o700
    path.chmod(0o777)  # someone opened it up: refuse rather than replay what others could plant
    with pytest.raises(RepgeomError, match="not private"):
        default_cache_dir()


def test_every_process_reads_the_same_secret(tmp_path):
    first = _shared_secret(tmp_path)
    assert len(first) == 64 and _shared_secret(tmp_path) == first
    assert ((tmp_path / "secret").stat().st_mode & 0o777) == 0o600


def test_job_results_are_stored_as_json_never_pickled(tmp_path):
    bg = make_background(None, tmp_path, "f" * 64)
    assert bg.kind == "diskcache" and bg.celery is None and bg.secret == _shared_secret(tmp_path)
    fig = go.Figure(go.Scatter(x=[1, 2], y=[3, 4]))
    bg.manager.handle.set("result", [fig, "", {"a": 1}])
    assert bg.manager.handle.get("result")[0]["data"][0]["type"] == "scatter"
    db = next(Path(bg.manager.handle.directory).glob("*.db"))
    with sqlite3.connect(db) as con:
        rows = con.execute("SELECT mode, value FROM Cache").fetchall()
    import zlib

    assert rows and all(mode in (1, 2) for mode, _ in rows), "raw or binary values, not pickles (mode 4)"
    for mode, value in rows:
        if value is not None:
            assert zlib.decompress(value).startswith(b"[{")


def test_scaled_out_mode_configures_celery_for_json_only():
    bg = make_background("redis://127.0.0.1:1/0", Path("/nonexistent"), "f" * 64)
    conf = bg.celery.conf
    assert bg.kind == "celery" and bg.secret is None
    assert conf.accept_content == ["json"] and conf.task_serializer == "json" and conf.result_accept_content == ["json"]

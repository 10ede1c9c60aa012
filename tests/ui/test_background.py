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


def test_job_slots_bound_concurrent_jobs_across_processes(tmp_path):
    import multiprocessing as mp

    from repgeom.ui.background import JobSlots

    slots = JobSlots(tmp_path, 2)
    waited = []
    with slots.hold() as a, slots.hold() as b:
        assert {a, b} == {0, 1}
        ctx = mp.get_context("fork")
        q = ctx.Queue()

        def third() -> None:  # another process: must wait until a slot is released
            with JobSlots(tmp_path, 2).hold(lambda: q.put("waiting"), poll_s=0.02):
                q.put("got")

        p = ctx.Process(target=third)
        p.start()
        assert q.get(timeout=20) == "waiting"
        import queue

        with pytest.raises(queue.Empty):
            q.get(timeout=0.5)
    assert q.get(timeout=20) == "got"
    p.join(20)
    assert p.exitcode == 0 and not waited


def test_identical_concurrent_jobs_all_get_the_result(engine):
    """Two browsers asking the same embeddings at once: Dash would hand the result to the first only."""
    from concurrent.futures import ThreadPoolExecutor

    from repgeom.settings import Settings
    from repgeom.ui import create_app
    from repgeom.ui.state import View
    from tests.dash_client import DashClient

    app = create_app(Settings(warm=False, response_cache_bytes=0), engine=engine)
    view = View.parse(engine, {**View.default(engine).controls(), "tab": "embeddings", "n_embed": 2, "embed_methods": ["pca"], "nodes": ["conv2"]}).controls()
    request = {"embed-request.data": {"view": view, "selection": [1, 2, 3]}}
    with ThreadPoolExecutor(3) as pool:
        answers = list(pool.map(lambda _: DashClient(app).call("embed-grid.figure", request), range(3)))
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert all("embed-grid" in a.get_json()["response"] for a in answers)


def test_a_job_that_finishes_between_two_looks_is_not_taken_for_cancelled():
    """Dash reads the result, then asks if the job runs: a job that wrote and exited in between looked cancelled."""
    from repgeom.ui.background import _Settled

    class Racing:
        UNDEFINED = object()

        def __init__(self) -> None:
            self.stored = None

        def get_result(self, key, job):
            value, self.stored = self.stored, "figure"  # the job writes right after our first look...
            return self.UNDEFINED if value is None else value

        def job_running(self, job):  # ...and has exited by the time we ask
            return False

    class Manager(_Settled, Racing):
        pass

    assert Manager().get_result("key", 1234) == "figure"
    assert Racing().get_result("key", 1234) is Racing.UNDEFINED, "without the mixin the result is missed"


def test_forked_jobs_do_not_keep_the_servers_port_open():
    import socket

    from repgeom.ui.background import _register_fork_hook

    _register_fork_hook()
    listener, other = socket.socket(), socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    try:
        pid = os.fork()
        if pid == 0:  # a job: the listening socket is gone, an ordinary one is not
            try:
                os.fstat(listener.fileno())
                os._exit(1)
            except OSError:
                pass
            os.fstat(other.fileno())
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        os.fstat(listener.fileno())  # the parent's is untouched
    finally:
        listener.close()
        other.close()

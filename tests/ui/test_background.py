"""The one-machine background manager: a private folder, a shared secret, JSON not pickles."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import numpy as np
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
    import zlib

    bg = make_background(None, tmp_path, "f" * 64)
    assert bg.kind == "folder" and bg.celery is None and bg.secret == _shared_secret(tmp_path)
    fig = go.Figure(go.Scatter(x=[1, 2], y=np.arange(2)))
    key = "0" * 64
    bg.manager.files.set(key, [fig, "", {"a": 1}])
    assert bg.manager.files.get(key)[0]["data"][0]["type"] == "scatter"
    (stored,) = bg.manager.files.folder.glob("*.json.z")
    assert json.loads(zlib.decompress(stored.read_bytes()))[2] == {"a": 1}, "zlib-compressed JSON, not a pickle"
    assert not list(bg.manager.files.folder.glob(".*.part")), "no temporary file left behind"


def test_job_files_refuse_keys_that_are_not_digests_and_survive_corrupt_files(tmp_path):
    from repgeom.ui.background import JobFiles

    files = JobFiles(tmp_path / "jobs")
    for bad in ("../../etc/passwd", "a" * 63, "A" * 64, "a" * 64 + "-x", "", None):
        with pytest.raises(ValueError, match="sha256"):
            files.get(bad)
    key = "b" * 64
    (files.folder / f"{key}.json.z").write_bytes(b"not zlib")
    assert files.get(key, "absent") == "absent"
    files.set(key, {"x": 1})
    assert files.has(key) and files.get(key) == {"x": 1}
    files.delete(key)
    assert not files.has(key) and files.get(key) is None


def test_job_files_expire_and_stay_within_their_budget(tmp_path):
    from repgeom.ui.background import JobFiles

    files = JobFiles(tmp_path / "jobs", ttl_s=60, max_bytes=40_000)
    rng = np.random.default_rng(0)
    keys = [f"{i:064x}" for i in range(12)]
    for i, key in enumerate(keys):
        files.set(key, rng.random(1000).tolist())  # ~9 kB each, incompressible
        os.utime(files._path(key), (1000 + i, 1000 + i) if i == 0 else None)
    files.trim()
    assert not files.has(keys[0]), "an expired value is gone"
    assert sum(f.stat().st_size for f in files.folder.glob("*.json.z")) <= 40_000
    assert files.has(keys[-1]), "the newest value stays"


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


def _manager(tmp_path: Path):
    bg = make_background(None, tmp_path, "f" * 64)
    return bg.manager


def test_a_stored_result_is_answered_without_forking_a_process(tmp_path):
    manager = _manager(tmp_path)
    forked: list[str] = []

    def job_fn(*args):
        forked.append("ran")

    key = "d" * 64
    manager.files.set(key, {"figure": 1})
    assert manager.call_job_fn(key, job_fn, [], {}) == 0
    assert forked == [] and not manager.job_running("0")
    assert manager.get_result(key, "0") == {"figure": 1}
    manager.terminate_job("0")  # nothing to end, and no pid 0 signalled


def test_identical_jobs_compute_once_the_second_waits_for_the_first(tmp_path):
    """Two visitors asking the same view at the same moment: one computation, both get the result."""
    import multiprocessing

    manager = _manager(tmp_path)
    count = tmp_path / "computed"

    def slow(progress, request):
        with count.open("a") as fh:
            fh.write("x")
        import time as _time

        _time.sleep(1.0)
        return {"answer": request}

    job_fn = manager.make_job_fn(slow, progress=True)
    key, pkey = "a" * 64, "a" * 64 + "-progress"
    jobs = [multiprocessing.get_context("fork").Process(target=job_fn, args=(key, pkey, [7], {})) for _ in range(3)]
    for job in jobs:
        job.start()
    for job in jobs:
        job.join(30)
    assert [j.exitcode for j in jobs] == [0, 0, 0]
    assert count.read_text() == "x", "the same job was computed more than once"
    assert manager.files.get(key) == {"answer": 7}
    assert not manager.files.has(pkey), "progress is cleared once the result is stored"


def test_ending_a_job_kills_our_job_but_never_a_stranger_with_a_reused_pid(tmp_path):
    import subprocess
    import time

    import multiprocessing

    manager = _manager(tmp_path)
    ours = multiprocessing.get_context("fork").Process(target=time.sleep, args=(60,))
    ours.start()
    stranger = subprocess.Popen(["sleep", "60"])  # another program of the same user, as after pid reuse
    try:
        assert manager.job_running(str(ours.pid))
        assert not manager.job_running(str(stranger.pid)), "a stranger's pid must not count as our job"
        manager.terminate_job(str(stranger.pid))
        assert stranger.poll() is None, "a process that is not one of our jobs was killed"
        manager.terminate_job(str(ours.pid))
        ours.join(5)
        assert ours.exitcode is not None and ours.exitcode < 0
        assert not manager.job_running(str(ours.pid))
        for bad in ("-1", "0", "x", None):
            manager.terminate_job(bad)
            assert not manager.job_running(bad)
    finally:
        stranger.kill()
        stranger.wait()
        if ours.is_alive():
            ours.kill()


def test_a_job_ends_on_sigterm_even_when_its_worker_ignored_it(tmp_path):
    """gunicorn's worker catches SIGTERM; a job forked from it must not inherit that."""
    import multiprocessing
    import signal
    import time

    manager = _manager(tmp_path)
    job_fn = manager.make_job_fn(lambda request: time.sleep(60), progress=False)
    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # as a gunicorn worker does
    try:
        job = multiprocessing.get_context("fork").Process(target=job_fn, args=("c" * 64, "c" * 64 + "-progress", [1], {}))
        job.start()
    finally:
        signal.signal(signal.SIGTERM, previous)
    time.sleep(0.5)
    os.kill(job.pid, signal.SIGTERM)
    job.join(5)
    assert job.exitcode == -signal.SIGTERM


def test_jobs_compute_at_a_lower_cpu_priority_than_their_worker(tmp_path):
    import multiprocessing

    from repgeom.ui.background import JOB_NICENESS

    manager = _manager(tmp_path)
    job_fn = manager.make_job_fn(lambda request: {"niceness": os.nice(0)}, progress=False)
    key = "e" * 64
    job = multiprocessing.get_context("fork").Process(target=job_fn, args=(key, key + "-progress", [1], {}))
    job.start()
    job.join(10)
    assert job.exitcode == 0
    assert manager.files.get(key) == {"niceness": min(19, os.nice(0) + JOB_NICENESS)}


def test_a_worker_that_exits_neither_waits_for_nor_kills_its_jobs(tmp_path):
    """A recycled gunicorn worker used to wait for its jobs (26 s without a worker in the load test)."""
    import subprocess
    import sys
    import textwrap
    import time

    key = "f" * 64
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from repgeom.ui.background import make_background
        manager = make_background(None, Path({str(tmp_path)!r}), "f" * 64).manager
        job_fn = manager.make_job_fn(lambda request: (time.sleep(10), {{"done": request}})[1], progress=False)
        print(manager.call_job_fn({key!r}, job_fn, [5], {{}}), flush=True)
        sys.exit(0)  # as a worker leaves: atexit handlers run
    """)
    log = tmp_path / "worker.out"
    with log.open("w") as fh:  # a file, not a pipe: the orphan keeps the worker's stdout open
        subprocess.run([sys.executable, "-c", script], stdout=fh, timeout=60, check=True)
    manager = _manager(tmp_path)
    pid = int(log.read_text().split()[-1])
    import psutil

    job = psutil.Process(pid)  # its command line is the worker's, not this test's: ask psutil
    assert job.status() != psutil.STATUS_ZOMBIE and manager.files.get(key) is None, "the worker left before its job ended"
    deadline = time.monotonic() + 60
    while manager.files.get(key) is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert manager.files.get(key) == {"done": 5}, "the orphaned job was lost"
    with contextlib.suppress(psutil.NoSuchProcess):
        job.wait(5)
    assert not psutil.pid_exists(pid) or job.status() == psutil.STATUS_ZOMBIE


def test_a_forked_job_imports_nothing_lazily(tmp_path):
    """A job forked while a worker thread imports a module would wait forever on that module's lock.

    So after the manager is built, drawing every kind of figure and running t-SNE and MDS
    in a forked job must not import any module of plotly, openTSNE or numba (nor compile a
    kernel: the manager compiles them ahead).
    """
    import multiprocessing
    import sys

    import torch

    make_background(None, tmp_path, "f" * 64)
    report = tmp_path / "imported"

    def job() -> None:
        from repgeom.core.embedding import embed, tsne_2d

        before = set(sys.modules)
        fig = go.Figure([go.Scattergl(x=[1, 2], y=[1, 2]), go.Heatmap(z=[[1, 2]]), go.Barpolar(r=[1])],
                        layout={"template": "plotly_white", "sliders": [{"steps": [{"label": "a"}]}], "updatemenus": [{}]})
        fig.to_json()
        points = torch.randn(300, 5, generator=torch.Generator().manual_seed(0))
        tsne_2d(points, perplexity=5)
        embed(points, "mds", np.zeros(300, dtype=np.int64))
        new = sorted(m for m in set(sys.modules) - before
                     if m.split(".")[0] in ("plotly", "_plotly_utils", "openTSNE", "numba", "llvmlite") or m == "repgeom.core.kernels")
        report.write_text("\n".join(new))

    proc = multiprocessing.get_context("fork").Process(target=job)
    proc.start()
    proc.join(120)
    assert proc.exitcode == 0
    assert report.read_text() == "", f"imported lazily in a job: {report.read_text()[:500]}"


def test_a_job_started_from_a_thread_that_ran_torch_computes_with_torch_threads(tmp_path):
    """A child forked from a thread that has run an OpenMP region waits forever on its first one.

    gunicorn's request threads run torch all the time; with 2 torch threads per worker every
    job they forked hung on its first parallel operation. Jobs now fork from a thread that
    never computes. Run in a child process so a hang fails the test instead of stalling it.
    """
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(f"""
        import json, time
        from concurrent.futures import ThreadPoolExecutor
        from pathlib import Path
        import torch
        from repgeom.ui.background import make_background
        torch.set_num_threads(2)
        manager = make_background(None, Path({str(tmp_path)!r}), "f" * 64).manager
        x = torch.rand(2000, 2000, dtype=torch.float64)

        def compute(request):
            return {{"threads": torch.get_num_threads(), "sum": float((x ** 2).sum())}}

        job_fn = manager.make_job_fn(compute, progress=False)

        def request_thread():  # as a gunicorn thread: torch first, then a background callback
            float((x ** 2).sum())
            return manager.call_job_fn("9" * 64, job_fn, [1], {{}})

        with ThreadPoolExecutor(1) as pool:
            pid = pool.submit(request_thread).result()
        deadline = time.monotonic() + 60
        while manager.files.get("9" * 64) is None and time.monotonic() < deadline:
            time.sleep(0.05)
        result = manager.files.get("9" * 64)
        if result is None:
            import os, signal
            os.kill(pid, signal.SIGKILL)
        print(json.dumps(result), flush=True)
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result is not None, "the job hung on its first parallel torch operation"
    assert result["threads"] == 2 and result["sum"] > 0

"""The one-machine background manager: started (not forked) job processes, a shared folder, JSON not pickles.

The jobs here are real: pool processes are spawned, build their callbacks, and run them.
The callbacks the manager tests run are the module-level functions below (a pool process
imports this module to find them).
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import flask
import numpy as np
import plotly.graph_objects as go
import pytest

from repgeom.core.errors import RepgeomError
from repgeom.settings import Settings
from repgeom.ui import background
from repgeom.ui.background import (
    BUSY_NOTICE,
    LOST_NOTICE,
    NOTHING,
    REDIS_NOTICE,
    REDIS_WAIT,
    REFUSED,
    JobBounds,
    JobFiles,
    JobSlots,
    PoolManager,
    _shared_secret,
    default_cache_dir,
    make_background,
    notices_to,
)

ROOT = Path(__file__).resolve().parents[2]
_REQUESTS = flask.Flask(__name__)  # request contexts: who asks for a job
MARKER = "repgeom_test_server_only"  # a module only the server process has: a forked job would have it too


# ------------------------------------------------------------------------------------ jobs
def work(set_progress: Callable[[list[str]], None], spec: dict) -> dict:
    """A job: logs its start and end, reports ``steps`` progress updates over ``seconds``."""
    import torch

    log = Path(spec["dir"]) / "log"
    with log.open("a") as fh:
        fh.write(f"start {spec['name']} {time.time()}\n")
    steps = spec.get("steps", 1)
    for i in range(steps):
        set_progress([str(i), str(steps), f"step {i}"])
        time.sleep(spec.get("seconds", 0) / steps)
    x = torch.rand(500, 500, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    result = {
        "name": spec["name"], "threads": torch.get_num_threads(), "sum": float((x @ x).sum()),
        "niceness": os.nice(0), "marker": MARKER in sys.modules, "pid": os.getpid(),
    }
    with log.open("a") as fh:
        fh.write(f"end {spec['name']} {time.time()}\n")
    return result


def noticed_work(set_progress: Callable[[list[str]], None], spec: dict) -> dict:
    """:func:`work`, marked to show refused and lost jobs' notices in ``notice-board``."""
    return work(set_progress, spec)


notices_to(noticed_work, "notice-board")


def job_callbacks() -> dict:
    """What a pool process of these tests runs (its ``build``)."""
    return {"work": (work, True), "noticed": (noticed_work, True)}


def _key(name: str) -> str:
    return hashlib.sha256(name.encode()).hexdigest()


def _manager(folder: Path, slots: int = 2, **kwargs) -> PoolManager:
    return PoolManager(JobFiles(folder), job_callbacks, cache_by=[lambda: "test"], slots=slots, **kwargs)


def _start(manager: PoolManager, folder: Path, name: str, client: str = "127.0.0.1", **spec) -> tuple[str, str]:
    """Start job ``name`` (of :func:`noticed_work`) as asked by ``client``; returns ``(result key, job token)``."""
    key = _key(name)
    with _REQUESTS.test_request_context(environ_base={"REMOTE_ADDR": client}):
        job = manager.call_job_fn(key, manager.make_job_fn(noticed_work, True, "noticed"), [{"dir": str(folder), "name": name, **spec}], {})
    return key, job


def _wait(what: str, ok: Callable[[], bool], timeout_s: float = 120) -> None:
    deadline = time.monotonic() + timeout_s
    while not ok():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} after {timeout_s} s")
        time.sleep(0.05)


def _log(folder: Path) -> list[tuple[str, str, float]]:
    path = folder / "log"
    lines = path.read_text().split("\n") if path.exists() else []
    return [(w, n, float(t)) for w, n, t in (line.split() for line in lines if line)]


@pytest.fixture
def pool(tmp_path):
    """A manager with 2 slots on a fresh folder; its pool is shut down afterwards."""
    manager = _manager(tmp_path)
    yield manager
    manager.close()


# ------------------------------------------------------------------------------------ files and settings
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

    bg = make_background(Settings(), tmp_path, "f" * 64)
    assert bg.kind == "pool" and bg.celery is None and bg.secret == _shared_secret(tmp_path)
    fig = go.Figure(go.Scatter(x=[1, 2], y=np.arange(2)))
    key = "0" * 64
    bg.manager.files.set(key, [fig, "", {"a": 1}])
    assert bg.manager.files.load(key)[0]["data"][0]["type"] == "scatter"
    (stored,) = bg.manager.files.directory.glob("*.json.z")
    from repgeom.shared_cache import unframe

    assert json.loads(zlib.decompress(unframe(stored.read_bytes())))[2] == {"a": 1}, "zlib-compressed JSON, not a pickle"
    assert not list(bg.manager.files.directory.glob(".*.part")), "no temporary file left behind"
    assert bg.manager._executor is None, "no process is started before the first job"


def test_job_files_refuse_keys_that_are_not_digests_and_survive_corrupt_files(tmp_path):
    files = JobFiles(tmp_path / "jobs")
    for bad in ("../../etc/passwd", "a" * 63, "A" * 64, "a" * 64 + "-x", "", None):
        with pytest.raises(ValueError, match="lower-case hex"):
            files.load(bad)
    key = "b" * 64
    (files.directory / f"{key}.json.z").write_bytes(b"not zlib")
    assert files.load(key, "absent") == "absent"
    files.set(key, {"x": 1})
    assert files.has(key) and files.load(key) == {"x": 1}
    files.delete(key)
    assert not files.has(key) and files.load(key) is None


def test_job_files_expire_and_stay_within_their_budget(tmp_path):
    files = JobFiles(tmp_path / "jobs", ttl_s=60, max_bytes=40_000)
    rng = np.random.default_rng(0)
    keys = [f"{i:064x}" for i in range(12)]
    for i, key in enumerate(keys):
        files.set(key, rng.random(1000).tolist())  # ~9 kB each, incompressible
        os.utime(files.path(key), (1000 + i, 1000 + i) if i == 0 else None)
    files.trim()
    assert not files.has(keys[0]), "an expired value is gone"
    assert sum(f.stat().st_size for f in files.directory.glob("*.json.z")) <= 40_000
    assert files.has(keys[-1]), "the newest value stays"


def test_scaled_out_mode_configures_celery_for_json_only():
    bg = make_background(Settings(redis_url="redis://127.0.0.1:1/0"), Path("/nonexistent"), "f" * 64)
    conf = bg.celery.conf
    assert bg.kind == "celery" and bg.secret is None
    assert conf.accept_content == ["json"] and conf.task_serializer == "json" and conf.result_accept_content == ["json"]


def _hold_third_slot(folder: str, queue) -> None:
    with JobSlots(Path(folder), 2).hold(lambda: queue.put("waiting"), poll_s=0.02):
        queue.put("got")


def test_job_slots_bound_concurrent_holders_across_processes(tmp_path):
    import multiprocessing as mp
    import queue

    slots = JobSlots(tmp_path, 2)
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    with slots.hold() as a, slots.hold() as b:
        assert {a, b} == {0, 1}
        p = ctx.Process(target=_hold_third_slot, args=(str(tmp_path), q))
        p.start()
        assert q.get(timeout=60) == "waiting"
        with pytest.raises(queue.Empty):
            q.get(timeout=0.5)
    assert q.get(timeout=20) == "got"
    p.join(20)
    assert p.exitcode == 0


def test_a_job_that_finishes_between_two_looks_is_not_taken_for_cancelled():
    """Dash reads the result, then asks if the job runs: a job that wrote and ended in between looked cancelled."""
    from repgeom.ui.background import _Settled

    class Racing:
        UNDEFINED = object()

        def __init__(self) -> None:
            self.stored = None

        def get_result(self, key, job):
            value, self.stored = self.stored, "figure"  # the job writes right after our first look...
            return self.UNDEFINED if value is None else value

        def job_running(self, job):  # ...and has ended by the time we ask
            return False

    class Manager(_Settled, Racing):
        pass

    assert Manager().get_result("key", "a" * 32) == "figure"
    assert Racing().get_result("key", "a" * 32) is Racing.UNDEFINED, "without the mixin the result is missed"


def test_the_pool_manager_reads_again_a_result_stored_just_before_its_job_ended(tmp_path, monkeypatch):
    manager = _manager(tmp_path)
    key = "c" * 64

    def ended_just_now(job):
        manager.files.set(key, {"figure": 2})  # the job wrote its result after the first look, then ended
        return False

    monkeypatch.setattr(manager, "job_running", ended_just_now)
    assert manager.get_result(key, "a" * 32) == {"figure": 2}


def test_a_stored_result_is_answered_without_a_job(tmp_path):
    manager = _manager(tmp_path)
    key = "d" * 64
    manager.files.set(key, {"figure": 1})
    assert manager.call_job_fn(key, manager.make_job_fn(work, True, "work"), [{}], {}) == 0
    assert manager._executor is None and not manager.job_running("0")
    assert manager.get_result(key, "0") == {"figure": 1}
    for bad in ("0", "-1", "x", None, "../" * 11, "g" * 32):
        manager.terminate_job(bad)  # nothing to end, nothing written
        assert not manager.job_running(bad)
    assert not list(tmp_path.glob("run-*"))


# ------------------------------------------------------------------------------------ real jobs
def test_a_job_reports_progress_and_its_result_from_a_started_process(pool, tmp_path):
    sys.modules[MARKER] = type(sys)(MARKER)
    try:
        key, job = _start(pool, tmp_path, "progress", seconds=2.0, steps=20)
    finally:
        del sys.modules[MARKER]
    assert isinstance(job, str) and len(job) == 32
    assert pool.job_running(job)
    _wait("no progress", lambda: pool.get_progress(key) is not None and pool.get_progress(key)[2].startswith("step"))
    assert pool.get_result(key, job) is pool.UNDEFINED and pool.job_running(job)
    _wait("no result", lambda: pool.result_ready(key))
    _wait("the job still runs", lambda: not pool.job_running(job), 10)
    # A job over between two polls: the poll that reads its result also shows its last step.
    assert pool.get_progress(key) == ["19", "20", "step 19"]
    result = pool.get_result(key, job)
    assert result["name"] == "progress" and result["pid"] != os.getpid()
    assert result["marker"] is False, "the job process was forked from the server (it has the server's modules)"
    assert pool.get_progress(key) is None, "progress is cleared once the result is read"
    assert not list(tmp_path.glob("run-*")), "the job's lock is removed when it ends"


def test_a_pool_started_ahead_answers_the_first_job_without_starting_a_process(tmp_path):
    manager = _manager(tmp_path, slots=1)
    try:
        manager.start().result(timeout=120)
        (process,) = manager._executor._processes.values()
        key, _ = _start(manager, tmp_path, "after-start")
        _wait("no result", lambda: manager.result_ready(key), 60)
        assert manager.get_result(key, None)["pid"] == process.pid
    finally:
        manager.close()


def test_jobs_compute_at_a_lower_cpu_priority_than_their_server(pool, tmp_path):
    key, _ = _start(pool, tmp_path, "nice")
    _wait("no result", lambda: pool.result_ready(key))
    assert pool.get_result(key, None)["niceness"] == min(19, os.nice(0) + background.JOB_NICENESS)


def test_a_running_job_is_cancelled_at_its_next_progress_update(pool, tmp_path):
    key, job = _start(pool, tmp_path, "cancel-running", seconds=60, steps=600)
    _wait("no progress", lambda: pool.get_progress(key) is not None and pool.get_progress(key)[2].startswith("step"))
    pool.terminate_job(job)
    _wait("a cancelled job still runs", lambda: not pool.job_running(job), 10)
    assert pool.get_result(key, job) is pool.UNDEFINED and not pool.result_ready(key), "a cancelled job stores no result"
    assert [w for w, n, _ in _log(tmp_path) if n == "cancel-running"] == ["start"]
    assert pool.get_progress(key) is None


def test_a_queued_job_that_is_cancelled_never_starts(tmp_path):
    manager = _manager(tmp_path, slots=1)
    try:
        first, running = _start(manager, tmp_path, "first", seconds=3, steps=30)
        second, queued = _start(manager, tmp_path, "second")
        assert manager.job_running(queued), "a queued job counts as running: its browser keeps waiting"
        manager.terminate_job(queued)
        _wait("the queued job still counts as running", lambda: not manager.job_running(queued), 30)
        _wait("the first job never ended", lambda: manager.result_ready(first))
        time.sleep(0.5)
        assert not manager.result_ready(second)
        assert [n for w, n, _ in _log(tmp_path) if w == "start"] == ["first"]
    finally:
        manager.close()


def test_two_servers_share_jobs_results_and_cancel_through_the_folder(tmp_path):
    """A poll or a Cancel may land on any worker of the machine."""
    a, b = _manager(tmp_path), _manager(tmp_path)
    try:
        key, job = _start(a, tmp_path, "shared", seconds=1.5, steps=15)
        assert b.job_running(job)
        _wait("no progress seen by the other server", lambda: b.get_progress(key) is not None)
        _wait("no result seen by the other server", lambda: b.get_result(key, job) is not b.UNDEFINED)
        assert b.get_result(key, job)["name"] == "shared"
        key2, job2 = _start(a, tmp_path, "cancelled-by-b", seconds=60, steps=600)
        _wait("no progress", lambda: b.get_progress(key2) is not None)
        b.terminate_job(job2)
        _wait("the job cancelled by the other server still runs", lambda: not a.job_running(job2), 10)
        assert not a.result_ready(key2)
    finally:
        a.close()
        b.close()


def test_identical_jobs_compute_once_the_others_wait_and_get_the_result(tmp_path):
    a, b = _manager(tmp_path), _manager(tmp_path)
    try:
        jobs = [_start(m, tmp_path, "same", seconds=2, steps=4, client=f"10.0.0.{i}") for i, m in enumerate((a, b, a))]
        assert len({key for key, _ in jobs}) == 1 and len({job for _, job in jobs}) == 1, "the later pages follow the first job"
        key = jobs[0][0]
        _wait("no result", lambda: a.result_ready(key))
        _wait("the waiting jobs never ended", lambda: not any(a.job_running(job) for _, job in jobs), 30)
        assert [w for w, _, _ in _log(tmp_path)] == ["start", "end"], "the same job was computed more than once"
        assert a.get_result(key, None)["name"] == b.get_result(key, None)["name"] == "same"
    finally:
        a.close()
        b.close()


def test_one_followers_cancel_leaves_the_job_to_the_others_and_the_last_cancel_stops_it(tmp_path):
    a, b = _manager(tmp_path), _manager(tmp_path)
    try:
        key, job = _start(a, tmp_path, "followed", seconds=60, steps=600, client="10.0.0.1")
        assert _start(b, tmp_path, "followed", seconds=60, steps=600, client="10.0.0.2") == (key, job)
        _wait("no progress", lambda: a.get_progress(key) is not None)
        b.terminate_job(job)  # the second page leaves
        time.sleep(1.0)
        assert a.job_running(job), "one page's cancel stopped the job another page waits for"
        a.terminate_job(job)  # the last one leaves
        _wait("the job nobody follows still runs", lambda: not a.job_running(job), 15)
        assert not a.result_ready(key)
    finally:
        a.close()
        b.close()


def test_at_most_the_slots_compute_at_once_across_servers(tmp_path):
    a, b = _manager(tmp_path, slots=2), _manager(tmp_path, slots=2)
    try:
        keys = [_start(m, tmp_path, f"bound-{i}", seconds=1.0, steps=5)[0] for i, m in enumerate((a, b, a, b))]
        _wait("not every job ended", lambda: all(a.result_ready(k) for k in keys), 180)
        events = sorted((t, 1 if w == "start" else -1) for w, _, t in _log(tmp_path))
        running = peak = 0
        for _, step in events:
            running += step
            peak = max(peak, running)
        assert peak == 2, f"{peak} jobs computed at once with 2 slots"
    finally:
        a.close()
        b.close()


def test_a_job_started_from_a_thread_that_ran_torch_with_two_threads_completes(tmp_path):
    """gunicorn's request threads run torch; jobs they start must compute with the server's torch threads."""
    from concurrent.futures import ThreadPoolExecutor

    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    manager = _manager(tmp_path)
    try:
        x = torch.rand(1500, 1500, dtype=torch.float64)

        def request_thread() -> tuple[str, str]:
            float((x @ x).sum())  # this thread has run a parallel region
            return _start(manager, tmp_path, "threads")

        with ThreadPoolExecutor(1) as threads:
            key, _ = threads.submit(request_thread).result()
        _wait("the job hung", lambda: manager.result_ready(key), 120)
        result = manager.get_result(key, None)
        assert result["threads"] == 2 and result["sum"] > 0
    finally:
        manager.close()
        torch.set_num_threads(before)


def test_a_server_that_exits_cancels_its_queued_jobs_and_lets_the_running_one_finish(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from tests.ui.test_background import _manager, _start, _wait
        folder = Path({str(tmp_path)!r})
        manager = _manager(folder, slots=1)
        running = _start(manager, folder, "running", seconds=2, steps=4)
        _wait("the first job never started", lambda: manager.get_progress(running[0]) is not None)
        queued = [_start(manager, folder, f"queued-{{i}}", seconds=5) for i in range(3)]
        print(time.time(), flush=True)
        sys.exit(0)  # as a worker leaves
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    ended = time.time()
    assert out.returncode == 0, out.stderr[-2000:]
    asked_to_exit = float(out.stdout.split()[-1])
    assert ended - asked_to_exit < 12, f"the server took {ended - asked_to_exit:.1f} s to exit (it ran its queue)"
    files = JobFiles(tmp_path)
    assert files.load(_key("running"))["name"] == "running", "the running job was lost"
    assert [n for w, n, _ in _log(tmp_path) if w == "start"] == ["running"], "a queued job ran after its server left"
    assert not any(files.has(_key(f"queued-{i}")) for i in range(3))


def _notice(manager: PoolManager, key: str) -> str | None:
    return manager.get_updated_props(key).get("notice-board", {}).get("children")


def test_jobs_beyond_the_machines_bound_are_refused_and_their_page_told_why(tmp_path):
    manager = _manager(tmp_path, slots=1, bounds=JobBounds(total=2, per_client=10))
    try:
        running = [_start(manager, tmp_path, f"long-{i}", client=f"10.0.0.{i}", seconds=30, steps=300) for i in range(2)]
        key, job = _start(manager, tmp_path, "one-too-many", client="10.0.0.9")
        assert job == REFUSED and not manager.job_running(job)
        assert manager.get_result(key, job) is manager.UNDEFINED
        notice = _notice(manager, key)
        assert notice is not None and notice.startswith(BUSY_NOTICE.split("{")[0]) and "2 computations are queued or running" in notice
        assert _notice(manager, key) is None, "a notice is told once"
        for _, token in running:
            manager.terminate_job(token)
        _wait("cancelled jobs still count", lambda: not any(manager.job_running(t) for _, t in running), 30)
        key, job = _start(manager, tmp_path, "after-the-rush", client="10.0.0.9")
        assert job != REFUSED, "the bound counts live jobs only"
        _wait("no result", lambda: manager.result_ready(key))
        assert "one-too-many" not in {n for _, n, _ in _log(tmp_path)}, "a refused job started"
    finally:
        manager.close()


def test_a_call_with_no_request_is_no_job_and_takes_no_share(tmp_path):
    """The renderer calls every background callback with ``None`` at start-up: those calls start nothing and count for nothing."""
    manager = _manager(tmp_path, slots=1, bounds=JobBounds(total=10, per_client=1))
    try:
        for i in range(5):
            with _REQUESTS.test_request_context(environ_base={"REMOTE_ADDR": "10.0.0.1"}):
                job = manager.call_job_fn(_key(f"nothing-{i}"), manager.make_job_fn(noticed_work, True, "noticed"), [None], {})
            assert job == NOTHING and not manager.job_running(job)
            assert manager.get_result(_key(f"nothing-{i}"), job) is manager.UNDEFINED and _notice(manager, _key(f"nothing-{i}")) is None
        assert not list(tmp_path.glob("**/run-*.json")), "a call with no request left a job"
        key, job = _start(manager, tmp_path, "the-real-one", client="10.0.0.1")
        assert job not in (REFUSED, NOTHING), "calls with no request took the visitor's share"
        _wait("no result", lambda: manager.result_ready(key))
    finally:
        manager.close()


def test_one_client_may_have_only_its_share_of_jobs(tmp_path):
    manager = _manager(tmp_path, slots=1, bounds=JobBounds(total=10, per_client=2))
    try:
        mine = [_start(manager, tmp_path, f"mine-{i}", client="10.0.0.1", seconds=30, steps=300)[1] for i in range(2)]
        key, job = _start(manager, tmp_path, "mine-again", client="10.0.0.1")
        assert job == REFUSED and "you already have 2 computations" in _notice(manager, key)
        _, other = _start(manager, tmp_path, "someone-else", client="10.0.0.2")
        assert other != REFUSED and manager.job_running(other)
        for token in (*mine, other):
            manager.terminate_job(token)
    finally:
        manager.close()


def _leave_with_a_queued_job(folder: Path) -> tuple[PoolManager, tuple[str, str], tuple[str, str]]:
    """A one-slot server starts a short job and queues another, then closes as a recycled worker does."""
    leaving = _manager(folder, slots=1)
    running = _start(leaving, folder, "running", seconds=1, steps=4)
    _wait("the first job never started", lambda: leaving.get_progress(running[0]) is not None)
    queued = _start(leaving, folder, "queued")
    leaving.close()
    return leaving, running, queued


def test_a_recycled_workers_queued_job_is_started_again_by_the_next_poll(tmp_path):
    """gunicorn recycles a worker (memory bound): its queued jobs must not end as an empty answer."""
    leaving, running, (key, job) = _leave_with_a_queued_job(tmp_path)
    _wait("the running job was lost", lambda: JobFiles(tmp_path).has(running[0]))
    time.sleep(0.5)
    assert not leaving.job_running(job) and [n for w, n, _ in _log(tmp_path) if w == "start"] == ["running"]
    other = _manager(tmp_path, slots=1)
    try:
        assert other.get_result(key, job) is other.UNDEFINED
        assert other.job_running(job), "the poll did not start the lost job again"
        _wait("the restarted job never ended", lambda: other.get_result(key, job) is not other.UNDEFINED)
        assert other.get_result(key, job)["name"] == "queued"
        assert [n for w, n, _ in _log(tmp_path) if w == "start"] == ["running", "queued"]
    finally:
        other.close()


def test_a_job_lost_more_often_than_it_may_restart_tells_its_page(tmp_path):
    _, _, (key, job) = _leave_with_a_queued_job(tmp_path)
    other = _manager(tmp_path, slots=1, bounds=JobBounds(restarts=0))
    other.make_job_fn(noticed_work, True, "noticed")  # as every worker's app registers its callbacks
    try:
        _wait("the lost job still counts as running", lambda: not other.job_running(job), 30)
        assert other.get_result(key, job) is other.UNDEFINED and not other.job_running(job)
        assert _notice(other, key) == LOST_NOTICE
        assert other.get_result(key, job) is other.UNDEFINED and _notice(other, key) is None, "told once, not restarted"
    finally:
        other.close()


def test_a_cancelled_job_is_not_started_again(pool, tmp_path):
    key, job = _start(pool, tmp_path, "cancel-me", seconds=30, steps=300)
    _wait("no progress", lambda: pool.get_progress(key) is not None)
    pool.terminate_job(job)
    _wait("a cancelled job still runs", lambda: not pool.job_running(job), 10)
    assert pool.get_result(key, job) is pool.UNDEFINED and not pool.job_running(job)


def test_a_killed_servers_job_finishes_and_its_pool_processes_leave(tmp_path):
    """A server killed outright (gunicorn's timeout) cannot shut its pool down: its processes must not linger."""
    import psutil

    script = textwrap.dedent(f"""
        import os, signal
        from pathlib import Path
        from tests.ui.test_background import _manager, _start, _wait
        folder = Path({str(tmp_path)!r})
        manager = _manager(folder, slots=2)
        manager.start().result()
        key, job = _start(manager, folder, "orphan", seconds=3, steps=6)
        _wait("the job never started", lambda: manager.get_progress(key) is not None)
        manager.start().result()  # a second process, idle
        print(" ".join(str(pid) for pid in manager._executor._processes), flush=True)
        os.kill(os.getpid(), signal.SIGKILL)
    """)
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == -9, out.stderr[-2000:]
    pids = [int(p) for p in out.stdout.split()]
    assert len(pids) == 2, "one process ran the job, the other was idle"
    files = JobFiles(tmp_path)
    _wait("the orphaned job was lost", lambda: files.load(_key("orphan")) is not None, 60)
    _wait("a pool process outlived its server", lambda: not any(psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE
                                                                for p in pids), 30)


def test_the_embeddings_view_runs_as_a_job_shared_by_two_apps_and_computed_once(engine, tmp_path):
    """Through Dash: the first answer is a handle, polls on another app instance read the result."""
    from concurrent.futures import ThreadPoolExecutor

    from benchmarks.dash_wire import poll_job
    from repgeom.ui import create_app
    from repgeom.ui.state import View
    from tests.dash_client import DashClient

    settings = Settings(warm=False, response_cache_bytes=0, cache_dir=str(tmp_path), device="cpu")
    first, second = create_app(settings, engine=engine), create_app(settings, engine=engine)
    view = View.parse(engine, {**View.default(engine).controls(), "tab": "embeddings", "n_embed": 3,
                               "embed_methods": ["pca", "mds"], "nodes": ["conv2"]}).controls()
    values = {"embed-request.data": {"view": view, "selection": [1, 2]}}
    a, b = DashClient(first), DashClient(second)
    body = a.graph.body("embed-grid.figure", values)
    started = time.monotonic()
    handle = a.start("embed-grid.figure", values)

    def poll_on(client: DashClient) -> tuple[int, bytes]:
        def send(blank: bytes, args: dict[str, str]) -> tuple[int, bytes]:
            r = client.client.post("/_dash-update-component", query_string=args, data=blank, content_type="application/json")
            return r.status_code, r.get_data()

        status, data, _ = poll_job(send, body, handle, 0.1, 180)
        return status, data

    with ThreadPoolExecutor(2) as polls:
        answers = list(polls.map(poll_on, (a, b)))
    cold = time.monotonic() - started
    for status, data in answers:
        assert status == 200 and "embed-grid" in json.loads(data)["response"]
    warm_started = time.monotonic()
    again = DashClient(second).call("embed-grid.figure", values)
    warm = time.monotonic() - warm_started
    assert again.status_code == 200 and "embed-grid" in again.get_json()["response"]
    assert not list((tmp_path).glob("jobs-*/run-*.lock")), "no job was left running"
    print(f"embeddings job: first (pool start + compute) {cold:.1f} s, stored {warm * 1000:.0f} ms")
    for app in (first, second):
        app.server.extensions["repgeom.background"].manager.close()


def test_identical_concurrent_requests_all_get_the_result(engine, tmp_path):
    """Two browsers asking the same embeddings at once: Dash would hand the result to the first only."""
    from concurrent.futures import ThreadPoolExecutor

    from repgeom.ui import create_app
    from repgeom.ui.state import View
    from tests.dash_client import DashClient

    app = create_app(Settings(warm=False, response_cache_bytes=0, cache_dir=str(tmp_path), device="cpu"), engine=engine)
    view = View.parse(engine, {**View.default(engine).controls(), "tab": "embeddings", "n_embed": 2, "embed_methods": ["pca"], "nodes": ["conv2"]}).controls()
    request = {"embed-request.data": {"view": view, "selection": [1, 2, 3]}}
    try:
        with ThreadPoolExecutor(3) as threads:
            answers = list(threads.map(lambda _: DashClient(app).call("embed-grid.figure", request, timeout_s=180), range(3)))
        assert [a.status_code for a in answers] == [200, 200, 200]
        assert all("embed-grid" in a.get_json()["response"] for a in answers)
    finally:
        app.server.extensions["repgeom.background"].manager.close()


def test_the_pool_is_built_from_a_picklable_recipe():
    import pickle

    manager = make_background(Settings(), Path(default_cache_dir()), "e" * 64).manager
    recipe = pickle.loads(pickle.dumps(manager._build))
    assert isinstance(recipe, functools.partial) and recipe.func is background.app_callbacks
    assert recipe.args == (Settings(),)


def test_an_empty_corrupt_or_unreadable_secret_is_replaced_safely(tmp_path, monkeypatch, caplog):
    secret = tmp_path / "secret"
    for left in (b"", b"\n", b"abc", b"z" * 64, b"\x00" * 200):  # a full disk leaves an empty file
        secret.write_bytes(left)
        new = _shared_secret(tmp_path)
        assert len(new) == 64 and int(new, 16) >= 0 and secret.read_text() == new, left
        assert (secret.stat().st_mode & 0o777) == 0o600 and _shared_secret(tmp_path) == new
    assert sum("secret file is unusable" in r.getMessage() for r in caplog.records) == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["secret", "secret.lock"], "no temporary file left"
    kept = secret.read_text()

    def unreadable(*args, **kwargs):
        raise RepgeomError(f"{secret}: cannot open the secret file (Permission denied)")

    with monkeypatch.context() as m:
        m.setattr(background, "read_regular", unreadable)
        assert _shared_secret(tmp_path) != kept
    secret.unlink()
    os.mkfifo(secret)  # never opened for reading (it would block), never replaced
    with pytest.raises(RepgeomError, match="cannot write the secret file .*a FIFO"):
        _shared_secret(tmp_path)


def test_racing_processes_agree_on_a_regenerated_secret(tmp_path):
    from concurrent.futures import ThreadPoolExecutor

    (tmp_path / "secret").write_bytes(b"")
    with ThreadPoolExecutor(8) as pool:  # each call takes its own lock descriptor, as separate processes do
        seen = set(pool.map(lambda _: _shared_secret(tmp_path), range(32)))
    assert len(seen) == 1 and (tmp_path / "secret").read_text() in seen


def test_celery_redis_timeouts_are_at_most_2_s():
    bg = make_background(Settings(redis_url="redis://127.0.0.1:1/0"), Path("/nonexistent"), "f" * 64)
    conf = bg.celery.conf
    assert conf.broker_connection_timeout <= 2 and conf.redis_socket_timeout <= 2 and conf.redis_socket_connect_timeout <= 2
    assert conf.broker_transport_options["socket_timeout"] <= 2 and conf.broker_transport_options["socket_connect_timeout"] <= 2


def test_starting_a_celery_job_with_redis_down_fails_within_3_s():
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    bg = make_background(Settings(redis_url=f"redis://127.0.0.1:{port}/0"), Path("/nonexistent"), "f" * 64)
    for _ in range(2):  # and again: nothing stays broken for the next try
        t0 = time.monotonic()
        with pytest.raises(Exception):  # noqa: B017 - kombu's OperationalError or Celery's RuntimeError
            bg.celery.send_task("repgeom.nothing")
        assert time.monotonic() - t0 < 3


def test_a_job_asked_for_while_redis_is_unreachable_is_refused_with_a_notice_within_3_s(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = make_background(Settings(redis_url=f"redis://127.0.0.1:{port}/0"), tmp_path, "f" * 64).manager
    task = manager.make_job_fn(noticed_work, True, "noticed")
    key = _key("redis-down")
    for attempt in range(2):  # the second within the cool-down: Redis is not asked at all
        t0 = time.monotonic()
        job = manager.call_job_fn(key, task, [{"dir": str(tmp_path), "name": "redis-down"}], {})
        assert job == REFUSED and time.monotonic() - t0 < 3, (attempt, time.monotonic() - t0)
        t0 = time.monotonic()
        assert manager.get_progress(key) is None  # a poll reads progress, result, running, then the notice
        assert manager.get_result(key, job) is manager.UNDEFINED and not manager.job_running(job)
        assert manager.get_updated_props(key) == {"notice-board": {"children": REDIS_NOTICE}}
        assert manager.get_updated_props(key) == {}
        assert time.monotonic() - t0 < 3


def test_a_queued_celery_job_keeps_its_page_waiting_while_redis_is_unreachable(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    manager = make_background(Settings(redis_url=f"redis://127.0.0.1:{port}/0"), tmp_path, "f" * 64).manager
    key, job = _key("queued-before"), "8d0c8a5e-2f51-4c1e-9d3e-3f1f0c7a9b11"  # queued before Redis went away
    t0 = time.monotonic()
    for _ in range(2):  # the first poll finds Redis gone, the second asks no one
        assert manager.get_progress(key) == ["0", "1", REDIS_WAIT]
        assert manager.get_result(key, job) is manager.UNDEFINED
        assert manager.job_running(job), "not taken for cancelled: its result comes when Redis is back"
        assert manager.get_updated_props(key) == {}
    assert time.monotonic() - t0 < 3


def test_a_refusal_nobody_read_is_not_shown_to_the_job_that_later_starts(tmp_path):
    manager = _manager(tmp_path, slots=1, bounds=JobBounds(total=1, per_client=10))
    try:
        _, long_job = _start(manager, tmp_path, "long", seconds=30, steps=300)
        key, refused = _start(manager, tmp_path, "later")
        assert refused == REFUSED  # its notice is stored; its page never polled
        manager.terminate_job(long_job)
        _wait("the cancelled job still counts", lambda: not manager.job_running(long_job), 30)
        key, job = _start(manager, tmp_path, "later")
        assert job != REFUSED and _notice(manager, key) is None
        _wait("no result", lambda: manager.result_ready(key))
    finally:
        manager.close()


@pytest.fixture
def redis_url(tmp_path) -> Iterator[str]:
    """A real, private redis-server on a free loopback port."""
    import shutil
    import socket

    import redis

    server = shutil.which("redis-server")
    assert server, "redis-server is installed where this suite runs (apt install redis-server; .ci/run installs it)"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([server, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    try:
        _wait("redis-server", lambda: _pings(redis.Redis.from_url(url)), 20)
        yield url
    finally:
        proc.terminate()
        proc.wait(10)


def _pings(client: Any) -> bool:
    import redis

    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def test_a_celery_jobs_updates_are_shown_once_and_never_cost_it_its_result(redis_url, tmp_path):
    manager = make_background(Settings(redis_url=redis_url), tmp_path, "f" * 64).manager
    key = _key("updates")
    backend = manager.handle.backend
    backend.set(f"{key}-set_props", json.dumps({"notice-board": {"children": "2/3 · MDS"}}))
    assert manager.get_result(key, None) is manager.UNDEFINED  # a poll: no result yet ...
    backend.set(key, json.dumps({"figure": "drawn"}))  # ... the job ends here, between the poll's two reads ...
    assert manager.get_updated_props(key) == {"notice-board": {"children": "2/3 · MDS"}}
    assert manager.get_result(key, None) == {"figure": "drawn"}, "the result is still there for the next poll"
    assert manager.get_updated_props(key) == {}, "each update is shown once"

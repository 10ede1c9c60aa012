"""The served modes, for real: Redis + a Celery worker + two gunicorn workers, and two gunicorn workers alone on one machine.

What runs here is what ``docker-compose.yml`` runs: ``REDIS_URL`` set for every process,
``celery -A repgeom.worker:celery_app worker`` and ``gunicorn app:server``. The test drives
a long computation (the embeddings view, a background callback) through Redis and the
Celery worker to completion, cancels another one mid-way, and checks that the two
gunicorn workers replay each other's cached answers through Redis.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
UPDATE = "/_dash-update-component"


pytestmark = pytest.mark.load  # Redis, a Celery worker and gunicorn, for real

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait(what: str, ok, timeout_s: float, proc: subprocess.Popen | None = None, log: Path | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"{what} exited with {proc.returncode}: {log.read_text()[-3000:] if log else ''}")
        try:
            if ok():
                return
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} not ready after {timeout_s} s: {log.read_text()[-3000:] if log else ''}")


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@dataclass
class Cluster:
    """The running processes and how to reach them."""

    redis_url: str
    base: str
    worker_log: Path
    web_log: Path
    access_log: Path
    redis: list[subprocess.Popen] = field(default_factory=list)  # the running server last
    redis_argv: list[str] = field(default_factory=list)
    redis_log: Path | None = None

    def post(self, body: dict, query: str = "") -> tuple[int, bytes, dict[str, str]]:
        headers = {"Content-Type": "application/json", "Connection": "close"}
        req = urllib.request.Request(self.base + UPDATE + query, data=json.dumps(body).encode(), headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=60) as r:
                return r.status, r.read(), dict(r.headers)
        except urllib.error.HTTPError as e:
            return e.code, e.read(), dict(e.headers)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    redis_server = shutil.which("redis-server")
    if redis_server is None:
        reason = "the scale-out test needs Debian's redis-server (apt-get install redis-server; .ci/run installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    tmp = tmp_path_factory.mktemp("scaleout")
    procs: list[subprocess.Popen] = []
    try:
        rport = _free_port()
        redis_log = tmp / "redis.log"
        redis_argv = [redis_server, "--port", str(rport), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                      "--maxmemory", "256mb", "--maxmemory-policy", "allkeys-lru", "--dir", str(tmp)]
        procs.append(subprocess.Popen(redis_argv, stdout=redis_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True))
        redis_url = f"redis://127.0.0.1:{rport}/0"
        import redis

        client = redis.Redis.from_url(redis_url)
        _wait("redis", client.ping, 15, procs[-1], redis_log)

        env = {**os.environ, "REDIS_URL": redis_url, "REPGEOM_CACHE_DIR": str(tmp / "cache"), "REPGEOM_WARM": "0", "OMP_NUM_THREADS": "1"}
        worker_log = tmp / "celery.log"
        procs.append(subprocess.Popen(
            [str(BIN / "celery"), "-A", "repgeom.worker:celery_app", "worker", "--loglevel=INFO", "--concurrency=2", "-n", f"test{rport}@%h"],
            cwd=ROOT, env=env, stdout=worker_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        ))
        port = _free_port()
        web_log = tmp / "gunicorn.log"
        procs.append(subprocess.Popen(
            [str(BIN / "gunicorn"), "--workers", "2", "--threads", "4", "--bind", f"127.0.0.1:{port}", "--access-logfile", str(tmp / "access.log"),
             "--access-logformat", "%(p)s %(s)s %({x-repgeom-cache}o)s %(U)s", "app:server"],
            cwd=ROOT, env=env, stdout=web_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
        ))
        base = f"http://127.0.0.1:{port}"
        _wait("gunicorn", lambda: urllib.request.urlopen(base + "/healthz", timeout=5).status == 200, 90, procs[-1], web_log)
        _wait("celery worker", lambda: " ready." in worker_log.read_text(), 90, procs[1], worker_log)
        cluster = Cluster(redis_url, base, worker_log, web_log, tmp / "access.log", [procs[0]], redis_argv, redis_log)
        yield cluster
    finally:
        for p in reversed(procs):
            _stop(p)
        for p in cluster.redis[1:] if "cluster" in locals() else []:
            _stop(p)


def _dependencies(cluster: Cluster) -> list[dict]:
    with urllib.request.urlopen(cluster.base + "/_dash-dependencies", timeout=30) as r:
        return json.loads(r.read())


@functools.cache
def _engine():
    from repgeom.pipeline import Engine

    return Engine()


def _embed_body(cluster: Cluster, n: int) -> dict:
    from repgeom.ui.state import View

    engine = _engine()
    view = View.parse(engine, {**View.default(engine).controls(), "tab": "embeddings", "n_embed": n}).controls()
    spec = next(d for d in _dependencies(cluster) if d["output"].startswith("..embed-grid.figure"))
    outputs = [dict(zip(("id", "property"), o.split("."), strict=True)) for o in spec["output"].strip(".").split("...")]
    return {
        "output": spec["output"], "outputs": outputs, "state": [],
        "inputs": [{"id": "embed-request", "property": "data", "value": {"view": view, "selection": []}}],
        "changedPropIds": ["embed-request.data"],
    }


def _handle_query(answer: bytes) -> tuple[str, str]:
    handle = json.loads(answer)
    assert set(handle) >= {"cacheKey", "job"}, handle
    return "?" + urllib.parse.urlencode({"cacheKey": handle["cacheKey"], "job": handle["job"]}), handle["job"].split("~")[0]


def test_a_long_computation_runs_on_the_celery_worker_to_completion(cluster):
    body = _embed_body(cluster, 30)  # 300 stimuli × 5 nodes × PCA, MDS, t-SNE: several seconds
    status, answer, _ = cluster.post(body)
    assert status == 200
    query, task_id = _handle_query(answer)
    progress, final, t0 = [], None, time.monotonic()
    while time.monotonic() - t0 < 240:
        status, answer, _ = cluster.post(body, query)
        assert status == 200, (status, answer[:300])
        reply = json.loads(answer)
        if "progress" in reply:
            progress.append(reply["progress"]["embed-progress.value"])
        if "response" in reply:
            final = reply["response"]
            break
        time.sleep(0.25)
    assert final is not None, "the job finished"
    assert final["embed-message"]["children"] == ""
    traces = final["embed-grid"]["figure"]["data"]
    points = [t for t in traces if t["type"] in ("scatter", "scattergl") and t.get("legendgroup") in list("0123456789")]
    assert len(points) == 3 * 5 * 10, "3 methods × 5 nodes × 10 digits"
    assert progress and progress == sorted(progress, key=int), "progress was reported, in order"
    log = cluster.worker_log.read_text()
    assert f"[{task_id}] succeeded" in log, "the Celery worker, not the web server, ran it"
    # its embeddings went to the cache every process shares
    import redis

    assert redis.Redis.from_url(cluster.redis_url).keys("repgeom:arrays-*")


def test_a_running_job_is_cancelled(cluster):
    from repgeom.ui.background import make_celery

    body = _embed_body(cluster, 100)  # 1,000 stimuli: far longer than the test waits
    status, answer, _ = cluster.post(body)
    query, task_id = _handle_query(answer)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:  # wait until it is really running on the worker
        status, answer, _ = cluster.post(body, query)
        if "progress" in json.loads(answer or b"{}"):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the job never reported progress")
    cancel = {"output": "embed-cancel.id", "outputs": {"id": "embed-cancel", "property": "id"}, "state": [],
              "inputs": [{"id": "embed-cancel", "property": "n_clicks", "value": 1}], "changedPropIds": ["embed-cancel.n_clicks"]}
    signed_job = urllib.parse.parse_qs(query[1:])["job"][0]  # what the browser sends on Cancel
    status, _, _ = cluster.post(cancel, "?" + urllib.parse.urlencode({"cancelJob": signed_job}))
    assert status == 200
    celery = make_celery(cluster.redis_url)
    _wait("revocation", lambda: celery.AsyncResult(task_id).state == "REVOKED", 20)
    time.sleep(1.0)
    status, answer, _ = cluster.post(body, query)
    assert status == 204, "a cancelled job answers 'no update' and never a result"
    log = cluster.worker_log.read_text()
    assert f"Terminating {task_id}" in log and f"[{task_id}] succeeded" not in log


def test_two_gunicorn_workers_share_cached_answers_through_redis(cluster):
    deps = _dependencies(cluster)
    spec = next(d for d in deps if d["output"].startswith("..models-table.children"))  # a request-thread callback
    from repgeom.ui.state import View

    engine = _engine()
    view = View.parse(engine, {**View.default(engine).controls(), "tab": "models", "n_embed": 7}).controls()
    outputs = [dict(zip(("id", "property"), o.split("."), strict=True)) for o in spec["output"].strip(".").split("...")]
    body = {"output": spec["output"], "outputs": outputs, "state": [], "changedPropIds": ["view.data"],
            "inputs": [{"id": "view", "property": "data", "value": view}]}
    first, start = None, len(cluster.access_log.read_text().splitlines())
    for _ in range(200):
        status, answer, headers = cluster.post(body)
        assert status == 200
        first = first or answer
        assert answer == first, "every worker gives the same bytes"
        lines = [ln.split() for ln in cluster.access_log.read_text().splitlines()[start:] if ln.endswith(UPDATE)]
        if len({ln[0] for ln in lines}) >= 2:
            break
    served = [(pid, where) for pid, _status, where, _path in lines]
    pids = list(dict.fromkeys(pid for pid, _ in served))
    assert len(pids) == 2, f"both workers served the request: {served[:10]}"
    assert served[0][1] == "miss" and [w for _, w in served].count("miss") == 1, "computed once in all"
    other_first = next(where for pid, where in served if pid == pids[1])
    assert other_first == "shared", "the second worker's first answer came from Redis"
    import redis

    assert redis.Redis.from_url(cluster.redis_url).keys("repgeom:responses-*")


def _start_job(cluster: Cluster, n: int) -> tuple[float, bytes]:
    """Ask for an embeddings view of ``n`` per class: seconds to the answer, and the answer."""
    body = _embed_body(cluster, n)
    t0 = time.monotonic()
    status, answer, _ = cluster.post(body)
    assert status == 200, (status, answer[:300])
    return time.monotonic() - t0, answer


def _notice_after(cluster: Cluster, n: int, answer: bytes) -> str | None:
    """Poll the refused job once and return the message its page is shown."""
    query, _ = _handle_query(answer)
    status, polled, _ = cluster.post(_embed_body(cluster, n), query)
    if status != 200:
        return None
    return json.loads(polled).get("sideUpdate", {}).get("embed-message", {}).get("children")


def _pings(url: str) -> bool:
    import redis

    try:
        return bool(redis.Redis.from_url(url).ping())
    except redis.RedisError:
        return False


def _recovers(cluster: Cluster, n: int) -> float:
    """Seconds until a new job is queued on Celery again (each web worker retries Redis after its cool-down)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < 60:
        _, answer = _start_job(cluster, n)
        if not json.loads(answer)["job"].startswith("refused"):
            return time.monotonic() - t0
        time.sleep(0.5)
    raise AssertionError("jobs were still refused 60 s after Redis came back")


def test_with_redis_hung_or_stopped_a_job_is_refused_with_a_message_within_3_s_and_jobs_resume_when_it_returns(cluster):
    import redis

    from repgeom.ui.background import REDIS_NOTICE

    redis.Redis.from_url(cluster.redis_url).save()  # what a restarted Redis loads: the handles' signing secret
    succeeded = cluster.worker_log.read_text().count("] succeeded")
    figures = {}
    for how in ("hung", "stopped"):
        server = cluster.redis[-1]
        if how == "hung":
            os.kill(server.pid, signal.SIGSTOP)
        else:
            server.send_signal(signal.SIGKILL)
            server.wait(10)
        try:
            for attempt in range(3):  # both web workers, within and after their cool-down
                seconds, answer = _start_job(cluster, 7 + attempt)
                assert seconds < 3, f"Redis {how}: the job start took {seconds:.1f} s"
                assert json.loads(answer)["job"].startswith("refused"), answer[:300]
                notice = _notice_after(cluster, 7 + attempt, answer)
                assert notice in (REDIS_NOTICE, None), notice  # None: the poll went to the other worker
                figures.setdefault(how, []).append(seconds)
            assert any(_notice_after(cluster, 7, _start_job(cluster, 7)[1]) == REDIS_NOTICE for _ in range(6)), "no page was told"
        finally:
            if how == "hung":
                os.kill(server.pid, signal.SIGCONT)
            else:
                cluster.redis.append(subprocess.Popen(cluster.redis_argv, stdout=cluster.redis_log.open("a"), stderr=subprocess.STDOUT,
                                                      start_new_session=True))
                _wait("redis back", lambda: _pings(cluster.redis_url), 15, cluster.redis[-1], cluster.redis_log)
        figures[f"{how} recovery"] = _recovers(cluster, 12)
    t0 = time.monotonic()
    _recovers(cluster, 13)  # a view nobody asked for before: the Celery worker that lived through both outages computes it
    body = _embed_body(cluster, 13)
    while time.monotonic() - t0 < 120:
        _, answer = _start_job(cluster, 13)  # the other web worker may still be in its cool-down: ask until queued
        if json.loads(answer)["job"].startswith("refused"):
            continue
        status, polled, _ = cluster.post(body, _handle_query(answer)[0])
        if status == 200 and "response" in json.loads(polled):
            break
        time.sleep(0.25)
    else:
        raise AssertionError(f"the job queued after Redis came back never finished; the worker's log ends:\n{cluster.worker_log.read_text()[-3000:]}")
    figures["first new view after the outages"] = time.monotonic() - t0
    final = json.loads(polled)["response"]
    assert final.get("embed-message", {}).get("children") == "" and final["embed-grid"]["figure"]["data"], str(final)[:500]
    worker_log = cluster.worker_log.read_text()
    assert worker_log.count("] succeeded") > succeeded, "the Celery worker ran it"
    assert "Unrecoverable error" not in worker_log, worker_log[-3000:]
    print(f"\nRedis outages: job start {figures}")
    assert "Traceback" not in cluster.web_log.read_text()


# ------------------------------------------------------------------------------------ one machine, no Redis
@pytest.fixture(scope="module")
def machine(tmp_path_factory) -> Iterator[Cluster]:
    """Two gunicorn workers without Redis: background jobs in each worker's spawned pool, results in the shared folder."""
    tmp = tmp_path_factory.mktemp("machine")
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env.update(REPGEOM_CACHE_DIR=str(tmp / "cache"), REPGEOM_WARM="0", OMP_NUM_THREADS="1")
    port = _free_port()
    web_log = tmp / "gunicorn.log"
    proc = subprocess.Popen(
        [str(BIN / "gunicorn"), "--workers", "2", "--threads", "4", "--bind", f"127.0.0.1:{port}", "--access-logfile", str(tmp / "access.log"),
         "--access-logformat", "%(p)s %(s)s %({x-repgeom-cache}o)s %(U)s", "app:server"],
        cwd=ROOT, env=env, stdout=web_log.open("w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait("gunicorn", lambda: urllib.request.urlopen(base + "/healthz", timeout=5).status == 200, 90, proc, web_log)
        yield Cluster("", base, web_log, web_log, tmp / "access.log")
        assert proc.poll() is None, web_log.read_text()[-3000:]
    finally:
        _stop(proc)
    assert not list((tmp / "cache").glob("jobs-*/run-*.lock")), "a job outlived its server"


def _job_processes(master_pid: int) -> list[list[str]]:
    import psutil

    return [p.cmdline() for p in psutil.Process(master_pid).children(recursive=True) if "spawn_main" in " ".join(p.cmdline())]


def test_one_machine_runs_a_long_computation_in_a_started_process_and_any_worker_answers(machine):
    body = _embed_body(machine, 30)
    status, answer, _ = machine.post(body)
    assert status == 200
    query, _ = _handle_query(answer)
    progress, final, t0 = [], None, time.monotonic()
    while time.monotonic() - t0 < 300:
        status, answer, _ = machine.post(body, query)
        assert status == 200, (status, answer[:300])
        reply = json.loads(answer)
        if "progress" in reply:
            progress.append(reply["progress"]["embed-progress.value"])
        if "response" in reply:
            final = reply["response"]
            break
        time.sleep(0.25)
    assert final is not None, "the job finished"
    assert final["embed-message"]["children"] == ""
    traces = final["embed-grid"]["figure"]["data"]
    assert len([t for t in traces if t["type"] in ("scatter", "scattergl") and t.get("legendgroup") in list("0123456789")]) == 3 * 5 * 10
    assert progress and progress == sorted(progress, key=int), "progress was reported, in order"
    web = subprocess.run(["pgrep", "-f", "-o", f"gunicorn.*{machine.base.rsplit(':', 1)[1]}"], capture_output=True, text=True).stdout.split()
    assert web and _job_processes(int(web[0])), "the job ran in a spawned process under a worker"
    start = len(machine.access_log.read_text().splitlines())
    for _ in range(100):  # the result is kept: every worker answers a poll with it
        status, answer, _ = machine.post(body, query)
        assert status == 200 and "response" in json.loads(answer)
        lines = [ln.split() for ln in machine.access_log.read_text().splitlines()[start:] if UPDATE in ln]
        if len({ln[0] for ln in lines}) >= 2:
            break
    assert len({ln[0] for ln in lines}) == 2, "both workers answered the job's polls"


def test_one_machine_cancels_a_running_job(machine):
    body = _embed_body(machine, 100)  # 1,000 stimuli: far longer than the test waits
    status, answer, _ = machine.post(body)
    query, _ = _handle_query(answer)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        status, answer, _ = machine.post(body, query)
        reply = json.loads(answer or b"{}")
        if "progress" in reply and "/" in reply["progress"].get("embed-progress-text.children", ""):
            break
        time.sleep(0.2)
    else:
        raise AssertionError("the job never reported progress")
    cancel = {"output": "embed-cancel.id", "outputs": {"id": "embed-cancel", "property": "id"}, "state": [],
              "inputs": [{"id": "embed-cancel", "property": "n_clicks", "value": 1}], "changedPropIds": ["embed-cancel.n_clicks"]}
    signed_job = urllib.parse.parse_qs(query[1:])["job"][0]
    status, _, _ = machine.post(cancel, "?" + urllib.parse.urlencode({"cancelJob": signed_job}))
    assert status == 200
    deadline = time.monotonic() + 120  # it stops at its next progress update
    while time.monotonic() < deadline:
        status, answer, _ = machine.post(body, query)
        if status == 204:
            break
        assert "response" not in json.loads(answer), "a cancelled job delivered a result"
        time.sleep(0.5)
    assert status == 204, "a cancelled job answers 'no update' and never a result"

"""Byte stores and the atomic writer: memory, folder and Redis stores, embeddings across engines."""

from __future__ import annotations

import os

import numpy as np
import pytest

from repgeom.core.atomic import UnwritableTarget
from repgeom.shared_cache import CircuitBreaker, FolderStore, MemoryStore, RedisStore, SharedStore, open_atomically, open_store, write_atomically


def test_folder_store_round_trip_and_refuses_odd_keys(tmp_path):
    store = FolderStore(tmp_path / "s")
    assert isinstance(store, SharedStore)
    assert store.get("ab12") is None
    store.put("ab12", b"bytes")
    assert store.get("ab12") == b"bytes"
    for bad in ("../x", "AB", "", ".hidden", "a/b"):
        with pytest.raises(ValueError, match="lower-case hex"):
            store.put(bad, b"x")


def test_folder_store_survives_an_unwritable_folder(tmp_path):
    import shutil

    store = FolderStore(tmp_path / "gone")
    shutil.rmtree(store.directory)
    store.directory.write_bytes(b"")  # now a file: no one, not even root, can write inside it
    store.put("00", b"x")  # logged, not raised
    assert store.get("00") is None


def test_redis_store_without_a_server_is_only_a_miss():
    import socket

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    store = RedisStore(f"redis://127.0.0.1:{port}/0")
    store.put("00", b"x")
    assert store.get("00") is None


def test_open_store_picks_redis_then_folder_then_nothing(tmp_path):
    assert isinstance(open_store("redis://127.0.0.1:1/0", tmp_path, "ns"), RedisStore)
    assert isinstance(open_store(None, tmp_path / "f", "ns"), FolderStore)
    assert open_store(None, None, "ns") is None


def test_embeddings_travel_between_engines_through_the_store(tmp_path, monkeypatch):
    from repgeom import pipeline
    from repgeom.pipeline import Engine

    store = FolderStore(tmp_path)
    first = Engine(shared=store)
    spec = first.spec(4)
    made = first.embedding("recurrent", "conv2_4", spec, "mds")
    assert len(list(tmp_path.glob("*.bin"))) == 1

    second = Engine(shared=store)

    def must_not_compute(*args, **kwargs):
        raise AssertionError("the second engine recomputed a stored embedding")

    monkeypatch.setattr(pipeline, "embed", must_not_compute)
    got = second.embedding("recurrent", "conv2_4", spec, "mds")
    np.testing.assert_array_equal(got.coords, made.coords)
    np.testing.assert_array_equal(got.labels, made.labels)
    assert (got.method, got.model, got.node, got.trustworthiness, got.stress, got.perplexity) == (
        made.method, made.model, made.node, made.trustworthiness, made.stress, made.perplexity)
    # a PCA keeps its variance shares through the store
    monkeypatch.undo()
    pca = first.embedding("recurrent", "conv2_4", spec, "pca")
    monkeypatch.setattr(pipeline, "embed", must_not_compute)
    assert pca.explained is not None and second.embedding("recurrent", "conv2_4", spec, "pca").explained == pytest.approx(pca.explained)
    assert got.explained is None
    # a corrupt entry is recomputed, not trusted
    monkeypatch.undo()
    for f in tmp_path.glob("*.bin"):
        f.write_bytes(b"not an npz")
    third = Engine(shared=store)
    np.testing.assert_allclose(third.embedding("recurrent", "conv2_4", spec, "mds").coords, made.coords)


def test_write_atomically_replaces_a_file_whole_and_privately(tmp_path):
    target = tmp_path / "f.bin"
    write_atomically(target, b"old")
    write_atomically(target, b"new content")
    assert target.read_bytes() == b"new content" and (target.stat().st_mode & 0o777) == 0o600
    write_atomically(target, b"shared", mode=0o644)
    assert (target.stat().st_mode & 0o777) == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"], "no temporary file left behind"


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path):
    target = tmp_path / "f.bin"
    write_atomically(target, b"old")
    with pytest.raises(RuntimeError, match="half way"), open_atomically(target) as fh:
        fh.write(b"partial")
        raise RuntimeError("half way")
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["f.bin"]


def test_write_atomically_refuses_to_replace_anything_but_a_regular_file(tmp_path):
    outside = tmp_path / "outside"
    outside.write_bytes(b"keep")
    link = tmp_path / "link"
    link.symlink_to(outside)
    folder = tmp_path / "folder"
    folder.mkdir()
    for path in (link, folder):
        with pytest.raises(UnwritableTarget, match="not a regular file"):
            write_atomically(path, b"x")
    assert outside.read_bytes() == b"keep" and link.is_symlink() and folder.is_dir()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["folder", "link", "outside"]


def test_write_atomically_syncs_the_data_before_the_rename(tmp_path, monkeypatch):
    calls = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (calls.append("fsync"), real_fsync(fd))[1])
    monkeypatch.setattr(os, "replace", lambda a, b: (calls.append("replace"), real_replace(a, b))[1])
    write_atomically(tmp_path / "f", b"data")
    assert calls == ["fsync", "replace"]


def test_a_planted_link_in_a_folder_store_is_not_followed(tmp_path):
    store = FolderStore(tmp_path / "s")
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    (store.directory / "ab.bin").symlink_to(victim)
    store.put("ab", b"overwrite?")  # refused and logged, not raised
    assert victim.read_bytes() == b"precious"


def test_memory_store_is_an_lru_bounded_in_bytes():
    store = MemoryStore(100)
    assert isinstance(store, SharedStore)
    store.put("a", b"x" * 20)
    store.put("b", b"y" * 20)
    store.put("too-big", b"z" * 26)  # over a quarter of the bound: not kept
    assert store.get("too-big") is None
    assert store.get("a") == b"x" * 20  # now the most recently used
    for k in "cdef":
        store.put(k, b"w" * 20)
    assert store.nbytes <= 100 and store.get("b") is None and store.get("a") is not None
    store.put("a", b"short")
    assert store.get("a") == b"short" and store.nbytes == 5 + 20 * 4


def test_folder_store_values_expire_unless_touched(tmp_path):
    store = FolderStore(tmp_path, ttl_s=60)
    store.put("aa", b"1")
    store.put("bb", b"2")
    old = store.path("aa").stat().st_mtime - 120
    for key in ("aa", "bb"):
        os.utime(store.path(key), (old, old))
    store.touch("bb")
    assert store.get("aa") is None and not store.path("aa").exists(), "an expired value is gone"
    assert store.has("bb") and store.get("bb") == b"2"


# ---------------------------------------------------------------------------- self-healing, full disk, Redis outages
def test_a_corrupt_folder_entry_is_deleted_and_put_replaces_it(tmp_path, caplog):
    from repgeom.shared_cache import frame, unframe

    store = FolderStore(tmp_path)
    value = b'{"response": {"a": 1}}' * 50
    store.put("ab", value)
    path = store.path("ab")
    whole = path.read_bytes()
    assert unframe(whole) == value and whole == frame(value)
    damaged = {
        "truncated (a full disk)": whole[: len(whole) // 2],
        "empty": b"",
        "a flipped bit": whole[:-1] + bytes([whole[-1] ^ 1]),
        "longer than its header says": whole + b"x",
        "the bare bytes of another format": value,
    }
    for what, blob in damaged.items():
        path.write_bytes(blob)
        assert store.get("ab") is None, what
        assert not path.exists(), f"{what}: the corrupt entry is deleted"
        store.put("ab", value)  # the caller computed it again
        assert store.get("ab") == value, what
    assert store.corrupt == len(damaged)
    assert sum("is corrupt" in r.getMessage() for r in caplog.records) == len(damaged)
    path.write_bytes(whole[:10])
    store.put("ab", value)  # put overwrites a corrupt entry without reading it first
    assert store.get("ab") == value


def test_a_truncated_response_is_recomputed_not_served(tmp_path):
    from repgeom.ui.response_cache import ResponseCache

    shared = FolderStore(tmp_path)
    key, answer = b"\x01" * 32, b'{"response": {"graph": {"figure": {}}}}'
    ResponseCache(1 << 20, shared).put(key, answer)
    path = shared.path(key.hex())
    path.write_bytes(path.read_bytes()[:-7])  # cut off by a full disk
    fresh = ResponseCache(1 << 20, shared)  # another worker
    assert fresh.lookup(key) == (None, "miss")
    fresh.put(key, answer)  # the answer computed again replaces the corrupt one
    assert ResponseCache(1 << 20, shared).lookup(key) == (answer, "shared")


def test_a_full_disk_while_caching_is_a_miss_with_one_warning(tmp_path, monkeypatch, caplog):
    import errno

    store = FolderStore(tmp_path / "s")
    store.put("aa", b"kept")

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(os, "fsync", full)
        for key in ("bb", "cc", "dd"):
            store.put(key, b"x" * 1000)  # not raised
            assert store.get(key) is None
    warnings = [r.getMessage() for r in caplog.records if "not written" in r.getMessage()]
    assert len(warnings) == 1 and "not cached until it works again" in warnings[0], warnings
    assert sorted(p.name for p in store.directory.iterdir()) == ["aa.bin"], "nothing partial left"
    store.put("bb", b"y")
    assert store.get("bb") == b"y" and store.get("aa") == b"kept"
    assert any("written again" in r.getMessage() for r in caplog.records)
    if os.geteuid() != 0:
        return  # a real full disk needs a tmpfs mount (root); the simulation above covers the handling
    import subprocess

    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8k", "tmpfs", str(small)], capture_output=True).returncode:
        return
    try:
        tiny = FolderStore(small)
        tiny.put("aa", b"z" * 100)
        tiny.put("bb", b"z" * 100_000)  # does not fit
        assert tiny.get("aa") == b"z" * 100 and tiny.get("bb") is None
        assert sorted(p.name for p in small.iterdir()) == ["aa.bin"]
    finally:
        subprocess.run(["umount", str(small)], check=False)


def _closed_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_redis_down_is_a_quick_miss_logged_once_and_retried_after_a_cool_down(caplog):
    import time

    from repgeom.shared_cache import REDIS_TIMEOUT_S

    assert REDIS_TIMEOUT_S <= 2
    store = RedisStore(f"redis://127.0.0.1:{_closed_port()}/0", breaker=CircuitBreaker(0.5))
    tried = []
    real_get = store.client.get
    store.client.get = lambda *a, **k: (tried.append(1), real_get(*a, **k))[1]
    t0 = time.monotonic()
    assert store.get("aa") is None
    first = time.monotonic() - t0
    t0 = time.monotonic()
    for _ in range(50):
        assert store.get("aa") is None
        store.put("aa", b"x")
    skipped = time.monotonic() - t0
    assert first < 3 and skipped < 0.5 and len(tried) == 1, (first, skipped, tried)
    time.sleep(0.6)
    assert store.get("aa") is None and len(tried) == 2, "tried again after the cool-down"
    assert sum("shared cache read: Redis failed" in r.getMessage() for r in caplog.records) == 1
    print(f"Redis down: first miss {first * 1000:.0f} ms, 100 skipped calls {skipped * 1000:.1f} ms")


def test_celery_is_configured_with_short_redis_timeouts():
    from repgeom.shared_cache import celery_timeouts

    conf = celery_timeouts()
    assert conf["broker_connection_timeout"] <= 2 and conf["redis_socket_timeout"] <= 2
    assert conf["broker_transport_options"]["socket_timeout"] <= 2
    assert conf["broker_transport_options"]["socket_connect_timeout"] <= 2
    assert conf["task_publish_retry_policy"]["max_retries"] <= 1


@pytest.mark.slow
def test_redis_hung_by_sigstop_is_a_miss_within_3_s_and_recovers(tmp_path, caplog):
    import shutil
    import signal
    import subprocess
    import time

    server = shutil.which("redis-server")
    assert server, "redis-server is installed where this suite runs (apt install redis-server)"
    port = _closed_port()
    proc = subprocess.Popen([server, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        store = RedisStore(f"redis://127.0.0.1:{port}/0", breaker=CircuitBreaker(1.0))
        deadline = time.monotonic() + 20
        while store.get("aa") is None:
            store.put("aa", b"value")
            assert time.monotonic() < deadline, "redis-server did not start"
            store.breaker.worked()
            time.sleep(0.05)
        caplog.clear()
        proc.send_signal(signal.SIGSTOP)
        t0 = time.monotonic()
        assert store.get("aa") is None
        hung = time.monotonic() - t0
        t0 = time.monotonic()
        store.put("bb", b"x")
        assert store.get("aa") is None
        skipped = time.monotonic() - t0
        assert hung < 3 and skipped < 0.1, (hung, skipped)
        proc.send_signal(signal.SIGCONT)
        t0 = time.monotonic()
        while store.get("aa") != b"value":
            assert time.monotonic() - t0 < 10, "the store did not come back after Redis did"
            time.sleep(0.05)
        recovered = time.monotonic() - t0
        messages = [r.getMessage() for r in caplog.records]
        assert sum("shared cache read: Redis failed" in m for m in messages) == 1 and any("reachable again" in m for m in messages)
        print(f"Redis SIGSTOPped: miss after {hung * 1000:.0f} ms, then skipped in {skipped * 1000:.1f} ms; "
              f"served again {recovered:.2f} s after SIGCONT (cool-down 1 s)")
    finally:
        proc.send_signal(signal.SIGCONT)
        proc.terminate()
        proc.wait(timeout=10)

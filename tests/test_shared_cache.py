"""Shared stores and what goes through them: atomic folder files, Redis failures, embeddings across engines."""

from __future__ import annotations

import os
import threading

import numpy as np
import pytest

from repgeom.shared_cache import FolderStore, RedisStore, SharedStore, open_store


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
    # a corrupt entry is recomputed, not trusted
    monkeypatch.undo()
    for f in tmp_path.glob("*.bin"):
        f.write_bytes(b"not an npz")
    third = Engine(shared=store)
    np.testing.assert_allclose(third.embedding("recurrent", "conv2_4", spec, "mds").coords, made.coords)


def test_a_forked_child_does_not_wait_on_a_lock_its_parent_held(engine):
    """A background job forks the server; a computation in flight in another thread must not deadlock it."""
    spec = engine.spec(3)
    started, release = threading.Event(), threading.Event()

    def slow() -> int:
        started.set()
        release.wait(30)
        return 1

    key = ("test-fork-lock", spec)
    t = threading.Thread(target=lambda: engine._cache.get_or_compute(key, slow))
    t.start()
    started.wait(10)
    pid = os.fork()
    if pid == 0:  # child: the same key must be computable at once
        try:
            value = engine._cache.get_or_compute(key, lambda: 2)
            os._exit(0 if value == 2 else 1)
        except BaseException:
            os._exit(3)
    try:
        status = _wait_child(pid, 20)
    finally:
        release.set()
        t.join(10)
    assert status == 0, f"the child deadlocked or failed (status {status})"


def _wait_child(pid: int, timeout_s: float) -> int:
    """The child's exit code, or -1 after killing it when it has not ended in time."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(status)
        time.sleep(0.05)
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    return -1


def test_a_forked_child_computes_after_its_parent_used_several_threads(engine):
    """torch's OpenMP pool does not survive a fork: without the engine's fork hook this child hangs."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        spec = engine.spec(2)
        engine.prefetch_features("feedforward", ["conv1", "conv2"], spec)  # the parent's pool is busy
        pid = os.fork()
        if pid == 0:
            try:
                images = engine.stimuli(spec).tensor(engine.device)
                out = engine._extractors["feedforward"](images, ["conv2"])
                os._exit(0 if out["conv2"].shape[0] == 20 else 1)
            except BaseException:
                os._exit(3)
        assert _wait_child(pid, 30) == 0, "the child hung or failed"
    finally:
        torch.set_num_threads(before)

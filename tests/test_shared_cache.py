"""Byte stores and the atomic writer: memory, folder and Redis stores, embeddings across engines."""

from __future__ import annotations

import os

import numpy as np
import pytest

from repgeom.core.atomic import UnwritableTarget
from repgeom.shared_cache import FolderStore, MemoryStore, RedisStore, SharedStore, open_atomically, open_store, write_atomically


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

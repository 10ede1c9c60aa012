"""The command line: a public contract of outputs, keys and one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import rsatoolbox

from repgeom.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _run(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "repgeom", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300)


def test_models_lists_every_model(capsys):
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    ids = [ln.split("\t")[0] for ln in lines]
    assert ids == ["feedforward", "recurrent", "robust", "feedforward_seed2", "fashion_feedforward", "fashion_recurrent"]
    rec = lines[1].split("\t")
    assert rec[1] == "mnist" and rec[2] == "2650" and rec[3].endswith("%") and len(rec[4]) == 12


def test_nodes_in_graph_order(capsys):
    assert main(["nodes", "recurrent"]) == 0
    nodes = capsys.readouterr().out.split()
    assert len(nodes) == 22 and nodes[2] == "conv2" and nodes[14] == "conv2_4" and nodes[-1] == "softmax"


def test_listing_commands_import_no_heavy_library():
    # `models`, `nodes` and `--help` start in about the time of `import torch`: they must not
    # pull torchvision (torch._dynamo), the embedding libraries or the dashboard.
    heavy = ("torchvision", "openTSNE", "numba", "sklearn", "scipy.stats", "dash", "plotly", "rsatoolbox")
    code = (
        "import sys, contextlib, io; from repgeom.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['models']) == 0 and main(['nodes', 'recurrent']) == 0\n"
        f"print([m for m in {heavy!r} if m in sys.modules])"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"


def test_export_keys_shapes_and_rsatoolbox_file(tmp_path, capsys):
    out, h5 = tmp_path / "geo.npz", tmp_path / "geo.hdf5"
    code = main(
        ["export", "--out", str(out), "--models", "feedforward,recurrent", "--layers", "input,conv1,conv2",
         "--n-per-class", "3", "--embed", "pca,mds", "--save-features", "--rsatoolbox", str(h5), "--device", "cpu"]
    )
    assert code == 0, capsys.readouterr().err
    z = np.load(out)
    assert z["labels"].shape == (30,) and z["indices"].shape == (30,)
    assert list(z["class_names"]) == [str(d) for d in range(10)]
    for m in ("feedforward", "recurrent"):
        for n in ("input", "conv1", "conv2"):
            assert z[f"rdm/{m}/{n}"].shape == (30, 30)
            assert z[f"embed/pca/{m}/{n}"].shape == (30, 2)
            assert z[f"embed/mds/{m}/{n}"].shape == (30, 2)
            assert z[f"features/{m}/{n}"].shape[0] == 30
    assert z["features/recurrent/conv1"].shape == (30, 16 * 9 * 9)
    names = list(z["path/names"])
    assert names == [f"{m}/{n}" for m in ("feedforward", "recurrent") for n in ("input", "conv1", "conv2")] + ["labels"]
    assert z["path/distances"].shape == (7, 7) and z["path/coords"].shape == (7, 2)
    assert float(z["path/stress"]) >= 0
    loaded = rsatoolbox.rdm.load_rdm(str(h5))
    assert loaded.n_rdm == 6 and loaded.n_cond == 30
    assert list(loaded.rdm_descriptors["name"])[0] == "feedforward/input"
    np.testing.assert_allclose(loaded.get_matrices()[0], z["rdm/feedforward/input"], atol=1e-12)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["export", "--models", "alexnet"], "unknown model 'alexnet'; allowed: feedforward, recurrent"),
        (["export", "--layers", "conv9"], "unknown node 'conv9' for recurrent; allowed: input, conv1"),
        (["export", "--n-per-class", "500"], "images per class must be a whole number from 1 to 100"),
        (["export", "--n-per-class", "0"], "expected a whole number >= 1"),
        (["export", "--condition", "fgsm", "--epsilon", "1.5"], "epsilon must be in [0, 1]"),
        (["export", "--condition", "fgsm", "--epsilon", "abc"], "epsilon must be a number in [0, 1]"),
        (["export", "--rdm", "manhattan"], "invalid choice: 'manhattan'"),
        (["export", "--embed", "umap"], "unknown embedding method 'umap'; allowed: pca, mds, tsne"),
        (["export", "--condition", "fgsm", "--attack-model", "nope"], "unknown model 'nope'"),
        (["nodes", "resnet"], "unknown model 'resnet'"),
        (["train", "resnet"], "unknown model 'resnet'"),
    ],
)
def test_bad_input_is_one_line_exit_2_and_no_file(tmp_path, capsys, args, message):
    out = tmp_path / "x.npz"
    full = [*args, "--out", str(out)] if args[0] == "export" else args
    with pytest.raises(SystemExit) as exc_info:
        raise SystemExit(main(full))
    assert exc_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err, err
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_unreadable_checkpoint_is_a_one_line_error(tmp_path):
    import shutil

    models = tmp_path / "models"
    shutil.copytree(ROOT / "models", models)
    (models / "recurrent.pt").write_bytes(b"garbage")
    r = _run("export", "--out", str(tmp_path / "x.npz"), "--models-dir", str(models), "--n-per-class", "2")
    assert r.returncode == 2
    assert r.stderr.strip().startswith("repgeom: error:") and "recurrent.pt" in r.stderr and "SHA-256" in r.stderr
    assert "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "x.npz").exists()
    # the other models still serve
    ok = _run("export", "--out", str(tmp_path / "y.npz"), "--models-dir", str(models), "--models", "feedforward", "--n-per-class", "2", "--layers", "fc2")
    assert ok.returncode == 0, ok.stderr


def test_output_folder_missing_is_a_clear_error(tmp_path):
    r = _run("export", "--out", str(tmp_path / "nope" / "x.npz"), "--n-per-class", "2", "--layers", "conv1")
    assert r.returncode == 2
    assert "folder" in r.stderr and "does not exist" in r.stderr and "Traceback" not in r.stderr


def test_failed_export_leaves_no_partial_file(tmp_path, monkeypatch, capsys):
    import repgeom.export as export

    out = tmp_path / "x.npz"
    out.write_bytes(b"previous")

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(export.np, "savez", boom)
    with pytest.raises(OSError):
        main(["export", "--out", str(out), "--n-per-class", "2", "--layers", "conv1"])
    assert out.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["x.npz"]


def test_export_over_training_walks_the_recurrent_history(tmp_path, capsys):
    out = tmp_path / "hist.npz"
    code = main(["export", "--out", str(out), "--models", "recurrent", "--layers", "conv2_4,softmax", "--n-per-class", "3",
                 "--over-training", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    z = np.load(out)
    names = list(z["path/names"])
    assert names == [f"recurrent@{e}/{n}" for e in range(11) for n in ("conv2_4", "softmax")] + ["labels"]
    d = z["path/distances"]
    assert d.shape == (23, 23) and np.all(np.diag(d) == 0) and np.array_equal(d, d.T)
    # the last epoch's checkpoint is the shipped model: same geometry as the plain path
    plain = tmp_path / "plain.npz"
    assert main(["export", "--out", str(plain), "--models", "recurrent", "--layers", "conv2_4,softmax", "--n-per-class", "3", "--device", "cpu"]) == 0
    p = np.load(plain)["path/distances"]
    np.testing.assert_allclose(d[np.ix_([20, 21, 22], [20, 21, 22])], p, atol=1e-9)
    # learning moves the softmax towards the labels
    assert d[21, 22] < d[1, 22]


def test_over_training_needs_a_history(tmp_path, capsys):
    assert main(["export", "--out", str(tmp_path / "x.npz"), "--models", "feedforward", "--over-training", "--n-per-class", "2"]) == 2
    assert "has no training history" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_export_landmarks_bootstrap_and_difference(tmp_path, capsys):
    out = tmp_path / "trust.npz"
    code = main(["export", "--out", str(out), "--models", "recurrent", "--layers", "conv2,conv2_4", "--n-per-class", "4",
                 "--landmarks", "labels,noise,shuffled", "--landmarks", "group:parity=1,3,5,7,9|0,2,4,6,8",
                 "--bootstrap", "12", "--difference", "recurrent/conv2,recurrent/conv2_4", "--compare", "corr_cov", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    z = np.load(out)
    assert list(z["path/names"]) == ["recurrent/conv2", "recurrent/conv2_4", "noise", "shuffled", "group:parity", "labels"]
    assert z["path/boot_distances"].shape == (12, 6, 6) and z["path/ellipses"].shape == (6, 2, 2)
    assert np.all(z["path/ci_low"] <= z["path/ci_high"])
    diff, mask = z["diff/recurrent/conv2-recurrent/conv2_4"], z["diff/mask"]
    assert diff.shape == mask.shape == (40, 40) and mask.dtype == bool and np.array_equal(diff, diff.T)
    meta = json.loads(str(z["meta/json"]))
    assert meta["compare"] == "corr_cov" and meta["bootstrap"] == 12


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--landmarks", "colour"], "unknown landmark 'colour'"), (["--difference", "recurrent/conv2"], "--difference takes MODEL/NODE,MODEL/NODE"),
     (["--bootstrap", "1"], "bootstrap samples must be a whole number from 2 to 1000"), (["--compare", "tau_a", "--bootstrap", "5"], "not offered for tau_a")],
)
def test_bad_trust_options_are_one_line(tmp_path, capsys, args, message):
    assert main(["export", "--out", str(tmp_path / "x.npz"), "--n-per-class", "2", "--layers", "conv2", *args]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


# ---------------------------------------------------------------------------- safe writes
_SMALL = ["--n-per-class", "2", "--layers", "conv1", "--models", "feedforward"]


def test_export_writes_through_a_symlink_and_readable_by_others(tmp_path, capsys):
    real = tmp_path / "real.npz"
    real.write_bytes(b"old")
    link = tmp_path / "link.npz"
    link.symlink_to(real)
    assert main(["export", "--out", str(link), *_SMALL]) == 0
    assert link.is_symlink() and os.readlink(link) == str(real)
    with np.load(real) as f:
        assert "rdm/feedforward/conv1" in f.files
    assert real.stat().st_mode & 0o777 == 0o644
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link.npz", "real.npz"]


def test_export_refuses_a_fifo_a_device_and_a_folder_with_one_line(tmp_path, capsys):
    from repgeom.core.atomic import UnwritableTarget
    from repgeom.export import write_export

    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    folder = tmp_path / "folder"
    folder.mkdir()
    targets = {fifo: "a FIFO", folder: "a folder"}
    if os.geteuid() == 0:  # what `export --out /dev/null` met as root: a character device
        import stat

        device = tmp_path / "null"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets[device] = "a character device"
    arrays = {"labels": np.arange(3)}
    for target, kind in targets.items():
        with pytest.raises(UnwritableTarget, match=f"it is {kind}, not a regular file"):
            write_export(target, arrays)
    assert fifo.exists() and not fifo.is_file() and folder.is_dir()
    assert all(not p.name.endswith(".part") for p in tmp_path.iterdir())
    assert main(["export", "--out", str(fifo), *_SMALL]) == 2
    err = capsys.readouterr().err
    assert err == f"repgeom: error: refusing to replace {fifo}: it is a FIFO, not a regular file\n"


def _slow_export(out: Path, marker: Path) -> str:
    """A ``python -c`` script: the CLI's export, whose .npz write stalls half way (to be signalled)."""
    return f"""
import sys, time
import repgeom.export as e
def stalled(fh, **arrays):
    fh.write(b"x" * 100000)
    fh.flush()
    open({str(marker)!r}, "w").close()
    time.sleep(120)
e.np.savez = stalled
from repgeom.cli import main
sys.exit(main(["export", "--out", {str(out)!r}, *{_SMALL!r}]))
"""


@pytest.mark.parametrize("sig", ["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_mid_export_leave_no_part_file(tmp_path, sig):
    import signal
    import time

    out = tmp_path / "x.npz"
    out.write_bytes(b"previous")
    marker = tmp_path / "writing"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _slow_export(out, marker)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 240
        while not marker.exists():
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the export never started writing"
            time.sleep(0.1)
        assert [p for p in tmp_path.iterdir() if p.name.endswith(".part")], "a .part file is being written"
        proc.send_signal(getattr(signal, sig))
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 128 + getattr(signal, sig) and err.strip().endswith(f"repgeom: stopped by {sig}"), err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["writing", "x.npz"] and out.read_bytes() == b"previous"


def test_a_full_disk_is_one_line_exit_1_and_nothing_partial(tmp_path, monkeypatch, capsys):
    import errno

    import repgeom.export as export

    out = tmp_path / "x.npz"
    out.write_bytes(b"previous")

    def fills_the_disk(fh, **arrays):
        fh.write(b"x" * 5000)
        fh.flush()
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as m:
        m.setattr(export.np, "savez", fills_the_disk)
        assert main(["export", "--out", str(out), *_SMALL]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith(f"repgeom: error: no space left on the device for {out}: 5000 bytes written")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.npz"] and out.read_bytes() == b"previous"
    if os.geteuid() != 0:
        return  # a real full disk needs a tmpfs mount (root); the simulation above covers the handling
    small = tmp_path / "small"
    small.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4k", "tmpfs", str(small)], capture_output=True).returncode:
        return
    try:
        assert main(["export", "--out", str(small / "x.npz"), *_SMALL]) == 1
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"no space left on the device for {small / 'x.npz'}" in err, err
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


def test_saved_checkpoints_are_readable_by_others_and_cache_files_private(tmp_path):
    from repgeom.core.checkpoints import ModelEntry, load_checkpoint, read_manifest, save_checkpoint
    from repgeom.core.nets import Net
    from repgeom.shared_cache import FolderStore

    entry = ModelEntry("ff", "Net", "", "", 0, "mnist", {"clean": 0.1}, {"seed": 0})
    save_checkpoint(tmp_path, entry, Net(), history={0: Net().state_dict()})
    for name in ("ff.pt", "ff@0.pt", "manifest.json"):
        assert (tmp_path / name).stat().st_mode & 0o777 == 0o644, name
    load_checkpoint(read_manifest(tmp_path)[0], tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ff.pt", "ff@0.pt", "manifest.json"]
    store = FolderStore(tmp_path / "cache")
    store.put("ab", b"x")
    assert store.path("ab").stat().st_mode & 0o777 == 0o600

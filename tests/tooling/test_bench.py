"""The benchmark still runs end to end (a smoke run; it reports, it does not gate on time)."""

from __future__ import annotations

import json

import pytest

from benchmarks.bench import main


@pytest.mark.slow
@pytest.mark.load
def test_quick_bench_writes_a_report(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert main(["--quick", "--sections", "notebook,machine,scale", "--json", str(out)]) == 0
    report = json.loads(out.read_text())
    rows = {r["step"]: r for r in report["notebook"]["rows"]}
    assert set(rows) == {"rdms", "embed_pca", "embed_mds", "embed_tsne", "path", "total"}
    assert all(r["notebook_s"] > 0 and r["repgeom_s"] > 0 for r in rows.values())
    assert abs(report["notebook"]["worst_trust_delta"]) < 0.05
    assert report["notebook"]["quality"]["path"]["max_abs_distance_diff"] < 1e-5
    assert all(r["ratio"] > 0 for r in report["machine_limit"]["rows"])
    assert report["scale"]["n"] == 1000 and report["scale"]["rdm_grid_json_bytes"] < 3_000_000
    assert "speed-up" in capsys.readouterr().out


def test_bench_refuses_unknown_sections_and_missing_folders(tmp_path, capsys):
    assert main(["--sections", "gpu"]) == 2
    err = capsys.readouterr().err
    assert err == "python -m benchmarks.bench: error: unknown bench section 'gpu'; allowed: notebook, machine, browser, scale\n"
    assert main(["--json", str(tmp_path / "no" / "b.json")]) == 2
    assert "folder does not exist" in capsys.readouterr().err


def test_bench_is_no_longer_a_subcommand_of_the_package(capsys):
    from repgeom.cli import main as cli

    with pytest.raises(SystemExit) as exc:
        cli(["bench", "--quick"])
    assert exc.value.code == 2
    assert "invalid choice: 'bench'" in capsys.readouterr().err

"""The tooling lives beside the package: not in it, not in the Docker image, not in the build fingerprint."""

from __future__ import annotations

import fnmatch
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_the_package_holds_no_benchmark_load_test_or_locust():
    package = ROOT / "repgeom"
    names = {p.stem for p in package.rglob("*.py")}
    assert not names & {"bench", "bench_http", "loadtest", "locustfile", "dash_wire"}
    importing = re.compile(r"^\s*(from|import)\s+(benchmarks|locust|gevent)\b", re.M)
    for path in package.rglob("*.py"):
        assert not importing.search(path.read_text()), path


def _sent_to_docker(relpath: str) -> bool:
    """Whether ``.dockerignore`` lets ``relpath`` into the build context (its last matching rule wins)."""
    sent = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        rule = line.strip()
        if not rule or rule.startswith("#"):
            continue
        keep = rule.startswith("!")
        pattern = rule.lstrip("!").rstrip("/")
        parts = relpath.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes):
            sent = keep
    return sent


def test_the_docker_build_context_leaves_the_benchmarks_out():
    assert _sent_to_docker("repgeom/pipeline.py") and _sent_to_docker("app.py")
    for path in ("benchmarks/loadtest.py", "benchmarks/locustfile.py", "benchmarks/requirements.txt",
                 "tests/tooling/test_loadtest.py"):
        assert not _sent_to_docker(path), path
    assert "benchmarks" not in (ROOT / "Dockerfile").read_text()


def test_the_build_fingerprint_ignores_the_benchmarks(tmp_path, monkeypatch):
    from repgeom.ui import factory

    before = factory.build_fingerprint()
    probe = ROOT / "benchmarks" / "_fingerprint_probe.py"
    probe.write_text("# not part of the build\n")
    try:
        assert factory.build_fingerprint() == before
    finally:
        probe.unlink()

"""Shared fixtures: the shipped engine on the CPU, the full MNIST when present."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mnist_root() -> Path | None:
    for cand in (os.environ.get("REPGEOM_TEST_MNIST"), ROOT.parent / "shared" / "mnist"):
        if cand and (Path(cand) / "MNIST" / "raw" / "t10k-images-idx3-ubyte").is_file():
            return Path(cand)
    return None


def pytest_collection_modifyitems(config, items):
    """Mark every test that reads the full MNIST, so `make test-fast` can leave them out."""
    for item in items:
        if {"mnist_root", "fashion_mnist_root"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.full_mnist)


@pytest.fixture(scope="session")
def mnist_root() -> Path:
    """The full MNIST (torchvision layout). Skips off CI when absent; in CI it must be there."""
    root = _mnist_root()
    if root is None:
        if os.environ.get("CI"):
            pytest.fail("CI must provide the full MNIST (../shared/mnist or REPGEOM_TEST_MNIST)")
        pytest.skip("full MNIST not found (set REPGEOM_TEST_MNIST)")
    return root


FASHION_MNIST = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="session")
def fashion_mnist_root() -> Path:
    """The full Fashion-MNIST (Debian's dataset-fashion-mnist). Skips off CI when absent; in CI it must be there."""
    root = Path(os.environ.get("REPGEOM_TEST_FASHION_MNIST") or FASHION_MNIST)
    if not (root / "t10k-images-idx3-ubyte.gz").is_file() and not (root / "t10k-images-idx3-ubyte").is_file():
        if os.environ.get("CI"):
            pytest.fail(f"CI must provide the full Fashion-MNIST under {root} (apt-get install dataset-fashion-mnist)")
        pytest.skip("full Fashion-MNIST not found (apt-get install dataset-fashion-mnist)")
    return root


@pytest.fixture(scope="session")
def engine():
    """The shipped models and embedded probes, on the CPU."""
    from repgeom.pipeline import Engine

    return Engine(device="cpu")

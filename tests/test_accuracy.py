"""The shipped checkpoints meet issue 2's targets on the 10,000 MNIST test images."""

from __future__ import annotations

import pytest

from repgeom import load_model
from repgeom.core.checkpoints import read_manifest
from repgeom.core.datasets import get_dataset
from repgeom.core.stimuli import read_idx_split
from repgeom.core.training import evaluate

TARGETS = {"feedforward": (0.988, None), "feedforward_seed2": (0.988, None), "robust": (0.97, 0.90), "recurrent": (0.96, None)}


@pytest.mark.slow
@pytest.mark.parametrize("model_id", list(TARGETS))
def test_accuracy_targets_and_manifest(mnist_root, model_id):
    mnist = get_dataset("mnist")
    images, labels = read_idx_split(mnist_root, mnist, train=False)
    acc = evaluate(load_model(model_id), images, labels, mnist, epsilon=0.2)
    clean_min, fgsm_min = TARGETS[model_id]
    assert acc["clean"] >= clean_min
    if fgsm_min is not None:
        assert acc["fgsm"] >= fgsm_min
    entry = {e.id: e for e in read_manifest()}[model_id]
    assert acc["clean"] == pytest.approx(entry.accuracy["clean"], abs=2e-4)
    assert acc["fgsm"] == pytest.approx(entry.accuracy["fgsm"], abs=2e-3)


FASHION_TARGETS = {"fashion_feedforward": 0.90, "fashion_recurrent": 0.80}


@pytest.mark.slow
@pytest.mark.parametrize("model_id", list(FASHION_TARGETS))
def test_fashion_mnist_accuracy_targets_and_manifest(fashion_mnist_root, model_id):
    fashion = get_dataset("fashion-mnist")
    images, labels = read_idx_split(fashion_mnist_root, fashion, train=False)
    assert images.shape == (10000, 1, 28, 28)
    acc = evaluate(load_model(model_id), images, labels, fashion, epsilon=0.2)
    assert acc["clean"] >= FASHION_TARGETS[model_id]
    entry = {e.id: e for e in read_manifest()}[model_id]
    assert entry.dataset == "fashion-mnist"
    assert acc["clean"] == pytest.approx(entry.accuracy["clean"], abs=2e-4)
    assert acc["fgsm"] == pytest.approx(entry.accuracy["fgsm"], abs=2e-3)

"""Training by a manifest recipe, on any dataset, with a per-epoch history that does not change the result."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repgeom.core.datasets import DatasetInfo
from repgeom.core.errors import RepgeomError
from repgeom.core.training import Recipe, train

TOY = DatasetInfo.from_json({"id": "toy", "class_names": ["a", "b", "c"], "channels": 1, "image_size": [28, 28], "mean": [0.5], "std": [0.5]})


def _data(n: int = 96) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 3, n).astype(np.int64)
    images = (rng.random((n, 1, 28, 28)) * 60 + labels[:, None, None, None] * 60).astype(np.uint8)
    return images, labels


def test_history_callback_sees_every_epoch_and_leaves_training_unchanged():
    images, labels = _data()
    recipe = Recipe("RecurrentNet", seed=3, epochs=2, batch_size=32)
    seen: dict[int, dict[str, torch.Tensor]] = {}

    def keep(epoch: int, model: torch.nn.Module) -> None:
        assert not model.training
        seen[epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    with_history = train(recipe, images, labels, TOY, on_epoch=keep)
    plain = train(recipe, images, labels, TOY)
    assert sorted(seen) == [0, 1, 2]
    assert with_history.readout.linear.out_features == 3
    for k, v in plain.state_dict().items():
        assert torch.equal(v, with_history.state_dict()[k])
        assert torch.equal(v, seen[2][k])
    assert not torch.equal(seen[0]["conv2.weight"], seen[2]["conv2.weight"])


def test_recipe_from_manifest_needs_seed_and_epochs():
    assert Recipe.from_json({"seed": 1, "epochs": 4, "lr": 1.0, "optimizer": "Adadelta"}, "Net") == Recipe("Net", 1, 4)
    with pytest.raises(RepgeomError, match="needs seed and epochs"):
        Recipe.from_json({"seed": 1}, "Net")

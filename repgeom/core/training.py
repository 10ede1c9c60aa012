"""Training recipes: how each shipped checkpoint is reproduced from its dataset.

Design notes:
    The seed's recipe (seed-reference §3): Adadelta(lr=1.0), StepLR(step_size=1,
    gamma=0.7) stepped every epoch, batch 64, NLL on the log of the softmax output,
    ``torch.manual_seed(seed)``. The robust model replaces every batch by FGSM images
    (epsilon 0.2) made against the current model. We shuffle the training set with a
    seeded generator (the seed shuffles only on CUDA) and make FGSM batches in eval mode
    (no dropout noise in the attack); both are recorded in the recipe. Each model's
    recipe lives in its manifest entry; :meth:`Recipe.from_json` reads it back.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, fields
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .datasets import DatasetInfo
from .errors import RepgeomError
from .nets import build_net
from .stimuli import fgsm_pixels, normalize

__all__ = ["Recipe", "evaluate", "train"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Recipe:
    """How one shipped model is trained.

    Attributes:
        architecture: ``"Net"`` or ``"RecurrentNet"``.
        seed: ``torch.manual_seed`` before building the net; also seeds the shuffling.
        epochs: passes over the 60,000 training images.
        adversarial_epsilon: FGSM step for adversarial training (0 = clean training).
        lr: Adadelta learning rate.
        gamma: StepLR decay per epoch.
        batch_size: training batch size.
    """

    architecture: str
    seed: int
    epochs: int
    adversarial_epsilon: float = 0.0
    lr: float = 1.0
    gamma: float = 0.7
    batch_size: int = 64

    @classmethod
    def from_json(cls, raw: Mapping[str, Any], architecture: str) -> Recipe:
        """Read the recipe recorded in a manifest entry (descriptive keys are ignored).

        Raises:
            RepgeomError: when the seed or epochs are missing or a number is malformed.
        """
        known = {f.name for f in fields(cls)} - {"architecture"}
        try:
            values = {k: raw[k] for k in known if k in raw}
            recipe = cls(architecture=architecture, **values)
            return cls(
                architecture, int(recipe.seed), int(recipe.epochs), float(recipe.adversarial_epsilon),
                float(recipe.lr), float(recipe.gamma), int(recipe.batch_size),
            )
        except (TypeError, ValueError) as exc:
            raise RepgeomError(f"the manifest's recipe is incomplete or malformed ({exc}); it needs seed and epochs") from None

    def describe(self, dataset: DatasetInfo) -> dict[str, object]:
        """The recipe as a JSON-able dict, with the fixed parts of the procedure spelled out."""
        d: dict[str, object] = asdict(self)
        d.update(
            optimizer="Adadelta",
            scheduler="StepLR(step_size=1)",
            loss="nll_loss(log(softmax))",
            shuffle="torch.randperm with torch.Generator seeded by `seed`",
            data=f"{dataset.id} train, Normalize({', '.join(map(str, dataset.mean))}; {', '.join(map(str, dataset.std))})",
        )
        if self.adversarial_epsilon:
            d["adversarial"] = "every batch replaced by FGSM images made in eval mode against the current model"
        return d


def _nll(probs: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.nll_loss(torch.log(probs.clamp_min(1e-30)), target)


def train(
    recipe: Recipe,
    images: np.ndarray,
    labels: np.ndarray,
    dataset: DatasetInfo,
    device: torch.device | str = "cpu",
    progress: Callable[[int, int, float], None] | None = None,
    on_epoch: Callable[[int, nn.Module], None] | None = None,
) -> nn.Module:
    """Train a network from scratch by ``recipe``.

    Args:
        recipe: the recipe.
        images: (M, C, H, W) uint8 training images.
        labels: (M,) int64 labels.
        dataset: what the images are (class count, channels, normalisation).
        device: where to train.
        progress: called as ``progress(batches_done, batches_total, loss)``.
        on_epoch: called as ``on_epoch(epoch, model)`` with the freshly initialised
            network (epoch 0) and after every epoch (1..epochs), e.g. to keep a checkpoint
            history. The model is in eval mode during the call; training resumes after.

    Returns:
        The trained network, in eval mode, on the CPU.
    """
    torch.manual_seed(recipe.seed)
    model = build_net(recipe.architecture, dataset.n_classes, dataset.channels).to(device)
    optimizer = torch.optim.Adadelta(model.parameters(), lr=recipe.lr)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=1, gamma=recipe.gamma)
    pixels = torch.from_numpy(np.array(images)).to(device=device, dtype=torch.float32).div_(255.0)
    target = torch.from_numpy(labels).to(device)
    generator = torch.Generator().manual_seed(recipe.seed)
    m = pixels.shape[0]
    per_epoch = (m + recipe.batch_size - 1) // recipe.batch_size
    total = per_epoch * recipe.epochs
    done = 0
    if on_epoch is not None:
        on_epoch(0, model.eval())
    for epoch in range(recipe.epochs):
        order = torch.randperm(m, generator=generator).to(device)
        t0 = time.perf_counter()
        for start in range(0, m, recipe.batch_size):
            idx = order[start : start + recipe.batch_size]
            batch, y = pixels[idx], target[idx]
            if recipe.adversarial_epsilon:
                model.eval()
                batch = fgsm_pixels(model, batch, y, recipe.adversarial_epsilon, dataset)
            model.train()
            optimizer.zero_grad(set_to_none=True)
            loss = _nll(model(normalize(batch, dataset)), y)
            loss.backward()
            optimizer.step()
            done += 1
            if progress is not None:
                progress(done, total, loss.item())
        scheduler.step()
        log.info("epoch %d/%d done in %.1fs", epoch + 1, recipe.epochs, time.perf_counter() - t0)
        if on_epoch is not None:
            on_epoch(epoch + 1, model.eval())
    return model.eval().cpu()


@torch.no_grad()
def _accuracy(model: nn.Module, pixels: torch.Tensor, labels: torch.Tensor, dataset: DatasetInfo, batch_size: int) -> float:
    correct = 0
    for start in range(0, pixels.shape[0], batch_size):
        out = model(normalize(pixels[start : start + batch_size], dataset))
        correct += int((out.argmax(1) == labels[start : start + batch_size]).sum())
    return correct / pixels.shape[0]


def evaluate(
    model: nn.Module,
    images: np.ndarray,
    labels: np.ndarray,
    dataset: DatasetInfo,
    epsilon: float = 0.2,
    device: torch.device | str = "cpu",
    batch_size: int = 1000,
) -> dict[str, float]:
    """Clean and FGSM accuracy of ``model`` (FGSM images made against ``model`` itself).

    Args:
        model: the network (evaluated in eval mode).
        images: (M, C, H, W) uint8 test images.
        labels: (M,) int64 labels.
        dataset: what the images are (normalisation).
        epsilon: FGSM step in pixel units.
        device: where to compute.
        batch_size: images per pass.

    Returns:
        ``{"clean": acc, "fgsm": acc, "fgsm_epsilon": epsilon}``, accuracies in [0, 1].
    """
    model = model.eval().to(device)
    pixels = torch.from_numpy(np.array(images)).to(device=device, dtype=torch.float32).div_(255.0)
    target = torch.from_numpy(labels).to(device)
    adv = torch.cat(
        [
            fgsm_pixels(model, pixels[s : s + batch_size], target[s : s + batch_size], epsilon, dataset)
            for s in range(0, pixels.shape[0], batch_size)
        ]
    )
    return {
        "clean": _accuracy(model, pixels, target, dataset, batch_size),
        "fgsm": _accuracy(model, adv, target, dataset, batch_size),
        "fgsm_epsilon": float(epsilon),
    }

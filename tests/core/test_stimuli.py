"""Probe sampling, the embedded set, and FGSM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repgeom.core.datasets import DatasetInfo, builtin_datasets, get_dataset
from repgeom.core.errors import RepgeomError
from repgeom.core.nets import Net
from repgeom.core.stimuli import ImageSource, fgsm, load_source, normalize, read_idx_split, sample_stimuli

MNIST = get_dataset("mnist")


def test_sampling_takes_first_n_per_digit_sorted_by_class():
    src = load_source(MNIST)
    s = sample_stimuli(src, 5)
    assert s.n == 50
    assert list(s.labels) == [d for d in range(10) for _ in range(5)]
    for d in range(10):
        idx = s.indices[s.labels == d]
        assert list(idx) == sorted(idx)
    assert s.pixels.dtype == np.float32 and 0 <= s.pixels.min() and s.pixels.max() <= 1
    assert s.pixels.shape == (50, 1, 28, 28) and s.dataset is MNIST


def test_embedded_probes_equal_full_mnist(mnist_root):
    images, labels = read_idx_split(mnist_root, MNIST, train=False)
    assert images.shape == (10000, 1, 28, 28)
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    emb = sample_stimuli(load_source(MNIST), 100)
    full = sample_stimuli(load_source(MNIST, mnist_root), 100)
    np.testing.assert_array_equal(emb.indices, full.indices)
    np.testing.assert_array_equal(emb.pixels, full.pixels)
    np.testing.assert_array_equal(emb.pixels, images[emb.indices] / np.float32(255))
    # the seed's rule: first n of each digit among the first test images
    seed_rule = np.concatenate([np.flatnonzero(labels[:1000] == d)[:20] for d in range(10)])
    np.testing.assert_array_equal(sample_stimuli(load_source(MNIST), 20).indices, seed_rule)


@pytest.mark.parametrize("n", [101, -3, 2.5, True])
def test_out_of_range_n_is_refused_with_the_range(n):
    with pytest.raises(RepgeomError, match="from 1 to 100"):
        sample_stimuli(load_source(MNIST), n)


def test_missing_data_root_is_a_clear_error(tmp_path):
    with pytest.raises(RepgeomError, match="no MNIST test files under"):
        load_source(MNIST, tmp_path)


def test_fgsm_batched_equals_the_seeds_one_image_loop():
    torch.manual_seed(0)
    model = Net().eval()
    s = sample_stimuli(load_source(MNIST), 2)
    adv = fgsm(model, s, 0.2, "m", batch_size=7)
    for i in range(s.n):
        x = normalize(torch.from_numpy(s.pixels[i : i + 1]), MNIST).requires_grad_(True)
        loss = torch.nn.functional.nll_loss(torch.log(model(x)), torch.tensor([s.labels[i]]))
        loss.backward()
        pix = x.detach() * 0.3081 + 0.1307
        ref = (pix + 0.2 * x.grad.sign()).clamp(0, 1)
        np.testing.assert_allclose(adv.pixels[i], ref[0].numpy(), atol=1e-5)
    assert adv.condition == "fgsm" and adv.epsilon == 0.2 and adv.attack_model == "m"
    assert np.abs(adv.pixels - s.pixels).max() <= 0.2 + 1e-6
    assert not model.training


def test_fgsm_epsilon_range():
    with pytest.raises(RepgeomError, match=r"\[0, 1\]"):
        fgsm(Net(), sample_stimuli(load_source(MNIST), 1), 1.5)


def test_all_images_sorted_by_class(mnist_root):
    s = sample_stimuli(load_source(MNIST, mnist_root), 0)
    assert s.n == 10000 and np.all(np.diff(s.labels) >= 0)
    assert sorted(s.indices.tolist()) == list(range(10000))


def test_builtin_mnist_descriptor_matches_its_probe_file():
    assert "mnist" in builtin_datasets()
    src = load_source(MNIST)
    assert MNIST.n_classes == 10 and MNIST.input_shape == (1, 28, 28)
    assert src.images.shape[1:] == MNIST.input_shape
    assert set(np.unique(src.labels)) == set(range(MNIST.n_classes))


def _toy_dataset(n_classes: int, channels: int, size: tuple[int, int]) -> DatasetInfo:
    return DatasetInfo.from_json(
        {"id": "toy", "class_names": [f"c{i}" for i in range(n_classes)], "channels": channels,
         "image_size": list(size), "mean": [0.5] * channels, "std": [0.25] * channels}
    )


def test_sampling_and_normalisation_follow_the_dataset_not_mnist():
    ds = _toy_dataset(3, 3, (8, 6))
    rng = np.random.default_rng(0)
    labels = np.array([2, 0, 1, 0, 2, 1, 1, 0, 2], dtype=np.int64)
    images = rng.integers(0, 256, size=(9, 3, 8, 6), dtype=np.uint8)
    src = ImageSource(images, labels, np.arange(9), "toy", ds)
    s = sample_stimuli(src, 2)
    assert s.labels.tolist() == [0, 0, 1, 1, 2, 2]
    assert s.indices.tolist() == [1, 3, 2, 5, 0, 4]
    x = s.tensor()
    assert x.shape == (6, 3, 8, 6)
    np.testing.assert_allclose(x.numpy(), (images[s.indices] / np.float32(255) - 0.5) / 0.25, atol=1e-6)
    with pytest.raises(RepgeomError, match="from 1 to 3"):
        sample_stimuli(src, 4)


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [("class_names", ["one"], "2 to 100 classes"), ("channels", 2, "channels must be 1 or 3"),
     ("image_size", [0, 5], "image sides"), ("std", [0.0], "std must be positive"), ("mean", [0.1, 0.2], "mean needs 1")],
)
def test_bad_dataset_descriptors_are_refused_with_the_rule(field, value, message):
    raw = {"id": "bad", "class_names": ["a", "b"], "channels": 1, "image_size": [4, 4], "mean": [0.0], "std": [1.0]}
    raw[field] = value
    with pytest.raises(RepgeomError, match=message):
        DatasetInfo.from_json(raw)

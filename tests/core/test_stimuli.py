"""Probe sampling, the embedded set, and FGSM."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repgeom.core.errors import RepgeomError
from repgeom.core.nets import Net
from repgeom.core.stimuli import fgsm, load_source, normalize, read_mnist, sample_stimuli


def test_sampling_takes_first_n_per_digit_sorted_by_class():
    src = load_source(None)
    s = sample_stimuli(src, 5)
    assert s.n == 50
    assert list(s.labels) == [d for d in range(10) for _ in range(5)]
    for d in range(10):
        idx = s.indices[s.labels == d]
        assert list(idx) == sorted(idx)
    assert s.pixels.dtype == np.float32 and 0 <= s.pixels.min() and s.pixels.max() <= 1


def test_embedded_probes_equal_full_mnist(mnist_root):
    images, labels = read_mnist(mnist_root, train=False)
    assert images.shape == (10000, 28, 28)
    assert np.bincount(labels).tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    emb = sample_stimuli(load_source(None), 100)
    full = sample_stimuli(load_source(mnist_root), 100)
    np.testing.assert_array_equal(emb.indices, full.indices)
    np.testing.assert_array_equal(emb.pixels, full.pixels)
    np.testing.assert_array_equal(emb.pixels, images[emb.indices] / np.float32(255))
    # the seed's rule: first n of each digit among the first test images
    seed_rule = np.concatenate([np.flatnonzero(labels[:1000] == d)[:20] for d in range(10)])
    np.testing.assert_array_equal(sample_stimuli(load_source(None), 20).indices, seed_rule)


@pytest.mark.parametrize("n", [101, -3, 2.5, True])
def test_out_of_range_n_is_refused_with_the_range(n):
    with pytest.raises(RepgeomError, match="from 1 to 100"):
        sample_stimuli(load_source(None), n)


def test_missing_data_root_is_a_clear_error(tmp_path):
    with pytest.raises(RepgeomError, match="no MNIST test files under"):
        load_source(tmp_path)


def test_fgsm_batched_equals_the_seeds_one_image_loop():
    torch.manual_seed(0)
    model = Net().eval()
    s = sample_stimuli(load_source(None), 2)
    adv = fgsm(model, s, 0.2, "m", batch_size=7)
    for i in range(s.n):
        x = normalize(torch.from_numpy(s.pixels[i : i + 1]).unsqueeze(1)).requires_grad_(True)
        loss = torch.nn.functional.nll_loss(torch.log(model(x)), torch.tensor([s.labels[i]]))
        loss.backward()
        pix = x.detach() * 0.3081 + 0.1307
        ref = (pix + 0.2 * x.grad.sign()).clamp(0, 1)
        np.testing.assert_allclose(adv.pixels[i], ref[0, 0].numpy(), atol=1e-5)
    assert adv.condition == "fgsm" and adv.epsilon == 0.2 and adv.attack_model == "m"
    assert np.abs(adv.pixels - s.pixels).max() <= 0.2 + 1e-6
    assert not model.training


def test_fgsm_epsilon_range():
    with pytest.raises(RepgeomError, match=r"\[0, 1\]"):
        fgsm(Net(), sample_stimuli(load_source(None), 1), 1.5)


def test_all_images_sorted_by_class(mnist_root):
    s = sample_stimuli(load_source(mnist_root), 0)
    assert s.n == 10000 and np.all(np.diff(s.labels) >= 0)
    assert sorted(s.indices.tolist()) == list(range(10000))

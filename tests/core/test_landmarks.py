"""Reference landmarks: noise, shuffled labels and class-group hypothesis RDMs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.spatial.distance import pdist, squareform

from repgeom.core.errors import RepgeomError
from repgeom.core.landmarks import landmark_rdm, parse_landmarks

NAMES = [str(d) for d in range(10)]
LABELS = np.repeat(np.arange(10), 4)


def test_parse_the_cli_grammar_with_commas_inside_groups():
    lms = parse_landmarks("labels,noise,shuffled,group:parity=1,3,5,7,9|0,2,4,6,8,group:small=0,1", NAMES)
    assert [lm.name for lm in lms] == ["labels", "noise", "shuffled", "group:parity", "group:small"]
    assert lms[3].groups == ((1, 3, 5, 7, 9), (0, 2, 4, 6, 8))
    assert lms[4].groups == ((0, 1),)
    named = parse_landmarks(["group:x=T-shirt/top|Bag"], ["T-shirt/top", "Trouser", "Bag"])
    assert named[0].groups == ((0,), (2,))


@pytest.mark.parametrize(
    ("text", "message"),
    [("colour", "unknown landmark"), ("group:odd", "group:NAME=a,b|c,d"), ("group:x=1,12", "unknown class '12'"),
     ("group:x=1,2|2,3", "each class at most once"), ("labels,labels", "named once")],
)
def test_bad_landmarks_are_refused(text, message):
    with pytest.raises(RepgeomError, match=message):
        parse_landmarks(text, NAMES)


def test_group_rdm_is_the_one_hot_rdm_of_the_groups_against_scipy():
    (parity,) = parse_landmarks("group:parity=1,3,5,7,9|0,2,4,6,8", NAMES)
    ours = landmark_rdm(parity, LABELS, "euclidean", 10, 784).numpy()
    onehot = np.eye(2)[(LABELS % 2 == 0).astype(int)]
    ref = squareform(pdist(onehot, "sqeuclidean")) / 2
    np.testing.assert_allclose(ours, ref, atol=1e-12)
    # classes in no group form one more group
    (partial,) = parse_landmarks("group:small=0,1", NAMES)
    m = landmark_rdm(partial, LABELS, "euclidean", 10, 784).numpy()
    assert m[0, 4] == 0 and m[0, 8] > 0 and m[8, 39] == 0


def test_noise_and_shuffled_are_seeded_and_structureless():
    noise = parse_landmarks("noise", NAMES)[0]
    a = landmark_rdm(noise, LABELS, "correlation", 10, 784, seed=1)
    assert torch.equal(a, landmark_rdm(noise, LABELS, "correlation", 10, 784, seed=1))
    assert not torch.equal(a, landmark_rdm(noise, LABELS, "correlation", 10, 784, seed=2))
    off = a.numpy()[np.triu_indices(40, 1)]
    assert abs(off.mean() - 1.0) < 0.01 and off.std() < 0.06  # correlation distance of independent noise ~ 1
    shuffled = landmark_rdm(parse_landmarks("shuffled", NAMES)[0], LABELS, "euclidean", 10, 784, seed=0).numpy()
    labels_rdm = landmark_rdm(parse_landmarks("labels", NAMES)[0], LABELS, "euclidean", 10, 784).numpy()
    assert sorted(shuffled.ravel()) == sorted(labels_rdm.ravel()) and not np.array_equal(shuffled, labels_rdm)

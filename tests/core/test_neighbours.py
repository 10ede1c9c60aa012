"""A point's nearest neighbours in feature space and on the plot, against scikit-learn's NearestNeighbors."""

import numpy as np
import pytest
from sklearn.neighbors import NearestNeighbors

from repgeom.core.neighbours import point_neighbours


def _oracle(points: np.ndarray, row: int, k: int) -> tuple[np.ndarray, np.ndarray]:
    dist, rows = NearestNeighbors(n_neighbors=k + 1).fit(points).kneighbors(points[row : row + 1])
    keep = rows[0] != row
    return rows[0][keep][:k], dist[0][keep][:k]


@pytest.mark.parametrize(("row", "k"), [(0, 1), (7, 5), (59, 10), (23, 59)])
def test_neighbours_are_sklearns_in_feature_space_and_on_the_plot(row, k):
    rng = np.random.default_rng(row + k)
    features = rng.normal(size=(60, 3, 4, 4))  # a conv node's (C, H, W): flattened like the embeddings
    coords = rng.normal(size=(60, 2))
    nb = point_neighbours(features, coords, row, k)
    f_rows, f_dist = _oracle(features.reshape(60, -1), row, k)
    p_rows, p_dist = _oracle(coords, row, k)
    np.testing.assert_array_equal(nb.feature_rows, f_rows)
    np.testing.assert_allclose(nb.feature_distances, f_dist, rtol=1e-10)
    np.testing.assert_array_equal(nb.plot_rows, p_rows)
    np.testing.assert_allclose(nb.plot_distances, p_dist, rtol=1e-10)
    np.testing.assert_array_equal(nb.lost, ~np.isin(f_rows, p_rows))
    assert nb.kept == int(np.isin(f_rows, p_rows).sum())
    # each feature-space neighbour's rank on the plot, by sklearn's full ordering
    _, everyone = NearestNeighbors(n_neighbors=60).fit(coords).kneighbors(coords[row : row + 1])
    order = [r for r in everyone[0] if r != row]
    assert nb.plot_ranks.tolist() == [order.index(r) + 1 for r in f_rows]
    assert ((nb.plot_ranks > k) == nb.lost).all()


def test_a_faithful_picture_loses_nothing_and_a_shuffled_one_loses_neighbours():
    rng = np.random.default_rng(0)
    coords = rng.normal(size=(80, 2))
    features = np.hstack([coords * 3.0, np.zeros((80, 5))])  # the plot is the features, scaled
    nb = point_neighbours(features, coords, 4, 6)
    assert nb.kept == 6 and not nb.lost.any() and nb.plot_ranks.tolist() == list(range(1, 7))
    shuffled = point_neighbours(features, coords[rng.permutation(80)], 4, 6)
    assert shuffled.lost.any()


@pytest.mark.parametrize(
    ("features", "coords", "row", "k", "match"),
    [
        (np.zeros((5, 3)), np.zeros((4, 2)), 0, 1, "same N"),
        (np.zeros((5, 3)), np.zeros((5, 2)), 5, 1, "row 5 is outside 0..4"),
        (np.zeros((5, 3)), np.zeros((5, 2)), -1, 1, "outside"),
        (np.zeros((5, 3)), np.zeros((5, 2)), 0, 5, "k must be from 1 to 4"),
        (np.zeros((5, 3)), np.zeros((5, 2)), 0, 0, "k must be from 1 to 4"),
    ],
)
def test_bad_arguments_are_refused_with_the_allowed_range(features, coords, row, k, match):
    with pytest.raises(ValueError, match=match):
        point_neighbours(features, coords, row, k)

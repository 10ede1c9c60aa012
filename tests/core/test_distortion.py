import numpy as np
import pytest
from scipy.spatial import procrustes
from scipy.spatial.distance import pdist, squareform

from repgeom.core.distortion import neighbour_distortion, procrustes_align, shepard_pairs
from repgeom.core.embedding import stress1


@pytest.fixture
def picture():
    rng = np.random.default_rng(3)
    points = rng.normal(size=(30, 5))
    true = squareform(pdist(points))
    coords = rng.normal(size=(30, 2))
    return true, coords


def test_shepard_pairs_are_scipys_pdist(picture):
    true, coords = picture
    t, p, pairs = shepard_pairs(true, coords)
    np.testing.assert_allclose(t, squareform(true, checks=False), rtol=1e-12)
    np.testing.assert_allclose(p, pdist(coords), rtol=1e-12)
    assert pairs.shape == (30 * 29 // 2, 2) and (pairs[:, 0] < pairs[:, 1]).all()
    t2, p2, pairs2 = shepard_pairs(true, coords, max_pairs=50, seed=1)
    assert len(t2) == 50
    np.testing.assert_allclose(p2, np.linalg.norm(coords[pairs2[:, 0]] - coords[pairs2[:, 1]], axis=1))
    np.testing.assert_allclose(t2, true[pairs2[:, 0], pairs2[:, 1]])


def test_neighbour_distortion_against_a_loop(picture):
    true, coords = picture
    out = neighbour_distortion(true, coords, k=3)
    plotted = squareform(pdist(coords))
    for i in range(len(coords)):
        others = [j for j in range(len(coords)) if j != i]
        nearest = sorted(others, key=lambda j: (plotted[i, j], j))[:3]
        assert list(out.neighbours[i]) == nearest
        np.testing.assert_allclose(out.plotted[i], plotted[i, nearest])
        np.testing.assert_allclose(out.true[i], true[i, nearest])
        num = sum((plotted[i, j] - true[i, j]) ** 2 for j in others)
        den = sum(plotted[i, j] ** 2 for j in others)
        assert out.stress[i] == pytest.approx(np.sqrt(num / den))
    # the per-point sums add up to the global stress-1
    num = sum(((plotted[i] - true[i]) ** 2).sum() for i in range(30))
    den = sum((plotted[i] ** 2).sum() for i in range(30))
    assert np.sqrt(num / den) == pytest.approx(stress1(true, coords))


def test_a_perfect_picture_has_no_distortion():
    coords = np.random.default_rng(0).normal(size=(12, 2))
    out = neighbour_distortion(squareform(pdist(coords)), coords, k=2)
    np.testing.assert_allclose(out.stress, 0, atol=1e-12)
    np.testing.assert_allclose(out.true, out.plotted)


def test_procrustes_align_matches_scipy(picture):
    _, reference = picture
    rng = np.random.default_rng(5)
    theta = 0.7
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = 2.5 * (reference @ rot) * np.array([1, -1]) + 3.0 + rng.normal(scale=0.05, size=reference.shape)
    mtx1, mtx2, _ = procrustes(reference, moved)
    scaled = procrustes_align(moved, reference, scale=True)
    rc = reference - reference.mean(0)
    np.testing.assert_allclose((scaled - reference.mean(0)) / np.linalg.norm(rc), mtx2, atol=1e-10)
    unscaled = procrustes_align(moved, reference)
    # no scaling: the spread is kept, the orientation is scipy's
    assert np.linalg.norm(unscaled - unscaled.mean(0)) == pytest.approx(np.linalg.norm(moved - moved.mean(0)))
    np.testing.assert_allclose((unscaled - reference.mean(0)) / np.linalg.norm(unscaled - reference.mean(0)), mtx2 / np.linalg.norm(mtx2), atol=1e-10)
    with pytest.raises(ValueError, match="differ in shape"):
        procrustes_align(moved[:3], reference)


def test_confidence_ellipse_lies_on_the_mahalanobis_contour():
    from repgeom.core.distortion import confidence_ellipse

    cov = np.array([[0.04, 0.015], [0.015, 0.01]])
    centre = np.array([1.0, -2.0])
    pts = confidence_ellipse(cov, centre, scale=1.96, n_points=40)
    d = pts - centre
    maha = np.einsum("ni,ij,nj->n", d, np.linalg.inv(cov), d)
    np.testing.assert_allclose(maha, 1.96**2, rtol=1e-9)
    np.testing.assert_allclose(pts[0], pts[-1])
    # a sample's covariance ellipse holds about 95 % of each axis's spread: check the extent along x
    assert np.ptp(pts[:, 0]) / 2 == pytest.approx(1.96 * np.sqrt(cov[0, 0]), rel=1e-3)


def test_rms_radius():
    from repgeom.core.distortion import rms_radius

    pts = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 3.0], [0.0, -3.0]]) + 7
    assert rms_radius(pts) == pytest.approx(np.sqrt((1 + 1 + 9 + 9) / 4))

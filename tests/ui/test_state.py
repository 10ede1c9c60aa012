"""The view state: validation of anything a browser sends, and the URL round trip."""

from __future__ import annotations

import pytest

from repgeom.core.errors import RepgeomError
from repgeom.ui.state import View, default_nodes


def test_default_view_reproduces_the_seed(engine):
    v = View.default(engine)
    assert (v.model, v.attack_model) == (engine.defaults.model, engine.defaults.attack_model) == ("recurrent", "feedforward")
    assert v.nodes == engine.steps("recurrent") == ("conv2", "conv2_1", "conv2_2", "conv2_3", "conv2_4")
    assert (v.n_rdm, v.n_embed) == (20, 50)
    assert v.embed_methods == ("pca", "mds", "tsne") and v.perplexity == 40
    assert v.rdm_method == "correlation" and v.path_rdm == "euclidean" and v.compare == "cosine"
    assert View.parse(engine, {}) == v


def test_feedforward_default_nodes_are_its_conv_and_fc_layers(engine):
    assert engine.steps("feedforward") == ()
    assert default_nodes(engine, "feedforward") == ("conv1", "conv2", "fc1", "fc2")


class _Graph:
    """An engine's node and step answers for one model, without loading one."""

    def __init__(self, nodes, steps=()):
        self._nodes, self._steps = list(nodes), tuple(steps)

    def nodes(self, model):
        return self._nodes

    def steps(self, model):
        return self._steps


def test_default_nodes_follow_the_graph_not_the_names():
    assert default_nodes(_Graph(["input", "a", "b", "b_1", "b_2", "head"], steps=("b", "b_1", "b_2")), "m") == ("b", "b_1", "b_2")
    nodes = ["input"] + [f"block{k}" for k in range(9)]
    assert default_nodes(_Graph(nodes), "m") == ("block0", "block2", "block4", "block6", "block8")
    assert default_nodes(_Graph(["input", "x", "y"]), "m") == ("x", "y")


def test_default_view_follows_the_manifest_defaults(engine, monkeypatch):
    from repgeom.pipeline import ViewDefaults

    monkeypatch.setattr(engine, "defaults", ViewDefaults(model="feedforward", attack_model="robust"))
    v = View.default(engine)
    assert (v.model, v.nodes, v.attack_model, v.path_models) == ("feedforward", ("conv1", "conv2", "fc1", "fc2"), "robust", ("feedforward",))
    assert v.to_query(engine) == "" and View.from_query(engine, "") == v
    assert "model=recurrent" in View.parse(engine, {"model": "recurrent", "nodes": ["conv2"]}).to_query(engine)


def test_url_round_trip(engine):
    v = View.parse(
        engine,
        {
            "model": "feedforward",
            "nodes": ["fc2", "conv1"],
            "n_rdm": 7,
            "condition": "fgsm",
            "epsilon": 0.3,
            "attack_model": "robust",
            "path_models": ["feedforward", "recurrent"],
            "tab": "paths",
            "embed_methods": ["tsne", "pca"],
        },
    )
    assert v.nodes == ("conv1", "fc2")  # graph order
    assert v.embed_methods == ("pca", "tsne")
    q = v.to_query(engine)
    assert q.startswith("?") and "model=feedforward" in q
    assert View.from_query(engine, q) == v
    assert View.from_query(engine, "") == View.default(engine)
    assert View.from_query(engine, "?model=feedforward").nodes == ("conv1", "conv2", "fc1", "fc2")


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ({"model": "../../etc/passwd"}, "unknown model '../../etc/passwd'; allowed: feedforward"),
        ({"model": None}, "unknown model None"),
        ({"nodes": ["conv2", "bogus"]}, "unknown node 'bogus' for recurrent"),
        ({"nodes": []}, "choose at least one node"),
        ({"nodes": ["conv2"] * 1_000_000}, "at most 64 entries"),
        ({"n_rdm": -1}, "from 1 to 100"),
        ({"n_rdm": 10**9}, "from 1 to 100"),
        ({"n_rdm": "ten"}, "whole number"),
        ({"n_embed": 2.5}, "whole number"),
        ({"n_rdm": True}, "whole number"),
        ({"epsilon": 2}, "epsilon must be a number from 0 to 1"),
        ({"epsilon": "nan"}, "epsilon must be a number from 0 to 1"),
        ({"epsilon": {"a": 1}}, "epsilon must be a number"),
        ({"perplexity": 0}, "perplexity must be a number from 1 to 100"),
        ({"perplexity": 1e9}, "perplexity must be a number from 1 to 100"),
        ({"condition": "noisy"}, "unknown condition 'noisy'; allowed: clean, fgsm"),
        ({"rdm_method": 3}, "unknown RDM method 'int'"),
        ({"path_models": []}, "at least one model for the path"),
        ({"path_models": [{"x": 1}]}, "unknown model"),
        ({"embed_methods": ["umap"]}, "allowed: pca, mds, tsne"),
        ({"tab": "admin"}, "unknown tab"),
    ],
)
def test_bad_values_are_refused_with_what_is_allowed(engine, raw, message):
    with pytest.raises(RepgeomError, match=None) as exc_info:
        View.parse(engine, raw)
    assert message in str(exc_info.value)
    assert len(str(exc_info.value)) < 400


def test_bad_link_is_refused(engine):
    with pytest.raises(RepgeomError, match="unknown model"):
        View.from_query(engine, "?model=resnet")
    with pytest.raises(RepgeomError, match="too long"):
        View.from_query(engine, "?" + "a" * 5000)


def test_presentation_mode_is_kept_in_the_url_and_checked(engine):
    from repgeom.core.errors import RepgeomError
    from repgeom.ui.state import DISPLAY_MODES, View

    assert View.default(engine).mode == "explore" and DISPLAY_MODES == ("explore", "present")
    view = View.from_query(engine, "?mode=present&tab=paths")
    assert view.mode == "present" and "mode=present" in view.to_query(engine)
    assert "mode" not in View.default(engine).to_query(engine)
    with pytest.raises(RepgeomError, match="display mode.*explore.*present"):
        View.parse(engine, {**View.default(engine).controls(), "mode": "kiosk"})

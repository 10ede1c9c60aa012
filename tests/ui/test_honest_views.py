"""The path tab's landmarks, hypotheses, bootstrap and side-by-side view; the difference RDM;
paths over training; the animation's scale; models grouped by dataset (callbacks as plain functions)."""

from __future__ import annotations

import numpy as np
import pytest
from dash import no_update

from repgeom.core.comparisons import COMPARISON_DEFINITIONS, PATH_COMPARISONS
from repgeom.core.distortion import procrustes_align
from repgeom.core.errors import RepgeomError
from repgeom.ui import views
from repgeom.ui.callbacks import embeddings, paths, rdms, sync
from repgeom.ui.ids import ID
from repgeom.ui.layout import build_layout, hypothesis_options, model_options
from repgeom.ui.state import View, follow_model
from tests.ui.test_callbacks import _sync_out, _text, _view


def test_landmarks_hypotheses_and_new_fields_round_trip_through_the_url(engine):
    view = View.parse(
        engine,
        {
            **View.default(engine).controls(),
            "landmarks": ["shuffled", "noise"],
            "hypotheses": ["odd=1,3,5,7,9|0,2,4,6,8", "round=0,6,8,9"],
            "survive": ["spearman", "cosine", "cka"],
            "compare": "corr_cov",
            "path_mode": "training",
            "anim_scale": "rescaled",
            "diff_a": "feedforward/fc1",
            "diff_b": "feedforward_seed2/fc1",
        },
    )
    assert view.landmarks == ("noise", "shuffled") and view.survive == ("cosine", "spearman", "cka")
    assert view.landmark_spec() == "labels,noise,shuffled,group:odd=1,3,5,7,9|0,2,4,6,8,group:round=0,6,8,9"
    assert View.from_query(engine, view.to_query(engine)) == view
    assert "hypotheses=odd%3D1%2C3%2C5%2C7%2C9%7C0%2C2%2C4%2C6%2C8%3Bround" in view.to_query(engine)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"landmarks": ["noise", "labels"]}, "allowed: noise, shuffled"),
        ({"hypotheses": ["odd=1,3,5|12"]}, "unknown class '12'"),
        ({"hypotheses": ["odd"]}, "group:NAME=a,b|c,d"),
        ({"hypotheses": ["a=1|2", "a=3|4"]}, "its own name"),
        ({"hypotheses": [f"h{i}=1|2" for i in range(7)]}, "at most 6"),
        ({"survive": ["cosine"]}, "two or three"),
        ({"survive": ["cosine", "tau_a"]}, "side-by-side comparison"),
        ({"compare": "kendall"}, "cka"),
        ({"path_mode": "epochs"}, "training"),
        ({"anim_scale": "log"}, "rescaled"),
        ({"diff_a": "feedforward"}, "MODEL/NODE"),
        ({"diff_a": "feedforward/conv99"}, "unknown node"),
        ({"diff_b": ["feedforward/fc1"]}, "MODEL/NODE"),
    ],
)
def test_bad_new_fields_are_refused_with_what_is_allowed(engine, change, message):
    with pytest.raises(RepgeomError, match=None) as info:
        View.parse(engine, {**View.default(engine).controls(), **change})
    assert message in str(info.value)


def test_the_hypothesis_editor_adds_through_sync_and_the_server_checks_it(engine):
    controls = _view(engine)
    out = _sync_out(sync.sync(engine, ID.HYPOTHESIS_ADD, "", controls, ("odd", "1,3,5,7,9 | 0,2,4,6,8")))
    assert out["message"] == "" and out["hypotheses"] == ["odd=1,3,5,7,9 | 0,2,4,6,8"] and "hypotheses=" in out["url"]
    again = _sync_out(sync.sync(engine, ID.HYPOTHESIS_ADD, "", {**controls, "hypotheses": out["hypotheses"]}, ("odd", "0|1")))
    assert again["hypotheses"] == ["odd=0|1"]  # a name given again replaces its groups
    bad = _sync_out(sync.sync(engine, ID.HYPOTHESIS_ADD, "", controls, ("odd", "1,3,Trouser")))
    assert bad["view"] is no_update and "unknown class 'Trouser'" in _text(bad["message"])
    empty = _sync_out(sync.sync(engine, ID.HYPOTHESIS_ADD, "", controls, (None, "1|2")))
    assert empty["view"] is no_update and "needs a name and groups" in _text(empty["message"])
    assert hypothesis_options(["a=1|2", 5, None]) == [{"label": "a=1|2", "value": "a=1|2"}]
    assert hypothesis_options("a=1|2") == [] and hypothesis_options([0] * 100) == []


def test_model_options_are_grouped_by_dataset_and_a_header_is_no_model(engine):
    options = model_options(engine)
    assert options[0] == {"label": "— MNIST —", "value": "dataset:mnist", "disabled": True}
    assert [o["value"] for o in options if not o.get("disabled")] == engine.model_ids
    with pytest.raises(RepgeomError, match="unknown model"):
        View.parse(engine, {**View.default(engine).controls(), "model": "dataset:mnist"})
    page = str(build_layout(engine, View.default(engine)))
    assert "whitened" in page and all(COMPARISON_DEFINITIONS[c][:30] in page for c in PATH_COMPARISONS)


def test_follow_model_drops_what_does_not_fit_the_new_dataset(engine):
    raw = {**_view(engine), "hypotheses": ["odd=1,3|0,2", "pants=Trouser|Dress"], "diff_a": "feedforward/fc1"}
    out = follow_model(engine, raw, "feedforward")
    assert out["hypotheses"] == ["odd=1,3|0,2"] and out["diff_a"] == "feedforward/fc1"


def test_path_tab_with_landmarks_and_hypotheses(engine):
    view = _view(engine, tab="paths", n_embed=5, path_models=["recurrent"], landmarks=["noise", "shuffled"], hypotheses=["odd=1,3,5,7,9|0,2,4,6,8"])
    fig, to_labels, shepard, note, message = paths.path_figure(engine, view)
    assert message == ""
    names = [t.name for t in fig.data]
    assert {"noise", "shuffled", "group:odd", "labels", "input"} <= set(names)
    assert "group:odd" in "".join(fig.layout.yaxis.ticktext)
    assert {a.text.split(" ")[0] for a in to_labels.layout.annotations} >= {"noise", "shuffled", "group:odd"}
    assert "recurrent ± seed variability" not in [t.name for t in to_labels.data]  # no second seed of recurrent
    assert "Kruskal stress-1" in shepard.layout.annotations[0].text


def test_tau_a_path_has_no_bootstrap_and_says_so(engine):
    fig, _labels, _shepard, note, message = paths.path_figure(engine, _view(engine, tab="paths", n_embed=2, path_models=["recurrent"], compare="tau_a"))
    assert message == "" and "No bootstrap for Kendall's tau-a" in _text(note)
    assert not any("ellipses" in (t.name or "") for t in fig.data) and "Kendall τ-a angle (rad)" in fig.layout.title.text


def test_survive_view_aligns_each_comparison_to_the_first(engine):
    view = _view(engine, tab="paths", n_embed=5, path_models=["recurrent"], survive=["cosine", "corr_cov", "spearman"])
    fig, message = paths.survive_figure(engine, view)
    assert message == "" and len([t for t in fig.data if t.name == "recurrent"]) == 3
    spec = View.parse(engine, view).spec(engine, 5)
    first = engine.path(["recurrent"], None, spec, "euclidean", "cosine")
    second = engine.path(["recurrent"], None, spec, "euclidean", "corr_cov")
    aligned = procrustes_align(second.coords, first.coords)
    line = [t for t in fig.data if t.name == "recurrent"][2]  # panels in the chooser's order: cosine, spearman, corr_cov
    np.testing.assert_allclose(np.array([line.x, line.y]).T, aligned[second.rows_of("recurrent")], atol=1e-9)
    none, message = paths.survive_figure(engine, {**view, "survive": []})
    assert "Tick two or three" in none.layout.annotations[0].text


def test_paths_over_training(engine):
    view = _view(engine, tab="paths", n_embed=3, model="recurrent", nodes=["conv2", "conv2_4"], path_mode="training")
    fig, to_labels, _shepard, note, message = paths.path_figure(engine, view)
    epochs = list(engine.history("recurrent"))
    assert message == "" and [f.name for f in fig.frames] == [str(e) for e in epochs]
    assert [t.name for t in fig.data[1 : 1 + len(epochs)]] == [f"epoch {e}" for e in epochs]
    assert "Paths over training" in fig.layout.title.text and f"{len(epochs)} epochs" in _text(note)
    assert [t.name for t in to_labels.data] == [f"recurrent@{e}" for e in epochs]
    _fig, _l, _s, _n, refused = paths.path_figure(engine, {**view, "model": "feedforward", "nodes": ["fc1"]})
    assert "feedforward has no training history; models with one: recurrent" in _text(refused)


def test_difference_rdm_view(engine):
    # (no other test computes this difference on the session's engine: the first gate must find it uncached)
    view = _view(engine, n_rdm=3, diff_a="feedforward/fc1", diff_b="feedforward_seed2/fc1")
    figure, message, request, _abandon = rdms.difference_gate(engine, view)  # not computed yet: a job request
    assert figure is no_update and message == "" and request == {"view": View.parse(engine, view).controls()}
    steps = []
    fig, message = rdms.difference_job(engine, steps.append, request)
    assert [s[2] for s in steps] == ["0/2 · features of feedforward/fc1 and feedforward_seed2/fc1", f"1/2 · {views.DIFF_BOOT} bootstrap samples of both RDMs"]
    cached, message_again, no_request, abandon = rdms.difference_gate(engine, view)  # now cached: answered at once
    assert no_request is no_update and isinstance(abandon, str) and message_again == ""
    assert np.array_equal(np.asarray(cached.data[0].z, dtype=float), np.asarray(fig.data[0].z, dtype=float), equal_nan=True)
    spec = View.parse(engine, view).spec(engine, 3)
    diff, mask = engine.difference("feedforward", "fc1", "feedforward_seed2", "fc1", spec, "correlation", n_boot=views.DIFF_BOOT)
    z = np.asarray(fig.data[0].z, dtype=float)
    assert message == "" and np.isnan(z[~mask]).all() and np.allclose(z[mask], diff[mask], atol=1e-6)
    assert "A = feedforward/fc1 minus B = feedforward_seed2/fc1" in fig.layout.title.text
    hint, message, _r, _a = rdms.difference_gate(engine, _view(engine, n_rdm=3))
    assert "Choose A and B" in hint.layout.annotations[0].text
    _f, message, _r, _a = rdms.difference_gate(engine, _view(engine, n_rdm=100, diff_a="feedforward/fc1", diff_b="feedforward/fc2"))
    assert "up to 600 stimuli" in _text(message)


def test_animation_scale_switch(engine):
    base = _view(engine, tab="embeddings", n_embed=3, embed_methods=["pca"], anim_method="pca", nodes=["conv2", "conv2_4"])
    _g, true, _s, _m = embeddings.embedding_figures(engine, lambda _v: None, embeddings.embedding_request(engine, base, []))
    _g, scaled, _s, _m = embeddings.embedding_figures(engine, lambda _v: None, embeddings.embedding_request(engine, {**base, "anim_scale": "rescaled"}, []))
    assert "true scale, RMS radius" in true.layout.title.text and "rescaled to unit RMS radius" in scaled.layout.title.text

    def rms(trace_data):
        xy = np.concatenate([np.array([t.x, t.y], dtype=float).T for t in trace_data if t.name != "selected" and t.x is not None and len(t.x)])
        return float(np.sqrt(((xy - xy.mean(0)) ** 2).sum(1).mean()))

    assert rms(scaled.frames[1].data) == pytest.approx(1.0, rel=1e-6)
    spec = View.parse(engine, base).spec(engine, 3)
    raw = engine.embeddings("recurrent", ["conv2_4"], spec, "pca")[0].coords
    assert rms(true.frames[1].data) == pytest.approx(float(np.sqrt(((raw - raw.mean(0)) ** 2).sum(1).mean())), rel=1e-6)


def test_sync_gives_the_hypotheses_their_options(engine):
    options = -2  # the hypotheses' options, before the selection a link may carry
    out = sync.sync(engine, ID.HYPOTHESIS_ADD, "", _view(engine), ("odd", "1,3|0,2"))
    assert out[options] == [{"label": "odd=1,3|0,2", "value": "odd=1,3|0,2"}]
    assert sync.sync(engine, None, "?hypotheses=a%3D1%7C2", {})[options] == [{"label": "a=1|2", "value": "a=1|2"}]
    assert sync.sync(engine, ID.HYPOTHESIS_ADD, "", _view(engine), ("odd", "x"))[options] is no_update


def test_the_download_carries_the_landmarks_and_the_difference(engine):
    import base64
    import io

    from repgeom.ui.callbacks import download

    view = _view(engine, n_rdm=2, landmarks=["noise"], hypotheses=["odd=1,3,5,7,9"], diff_a="feedforward/fc1", diff_b="recurrent/conv2_4")
    data, message = download.download(engine, view)
    z = np.load(io.BytesIO(base64.b64decode(data["content"])))
    names = list(z["path/names"])
    assert message == "" and names[-3:] == ["noise", "group:odd", "labels"]
    assert z["diff/mask"].shape == (20, 20) and "diff/feedforward/fc1-recurrent/conv2_4" in z.files

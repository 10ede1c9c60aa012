"""The smaller defects of issue 13 (found, item 9): the images-per-class boxes, the FGSM controls, the steps hint."""

from __future__ import annotations

import json
import urllib.parse

from dash import dcc, no_update

from repgeom.ui.callbacks import sync
from repgeom.ui.ids import ID
from repgeom.ui.layout import build_layout
from repgeom.ui.state import View, per_class_limit


def _controls(engine, **changes):
    return {**View.default(engine).controls(), **changes}


def _out(result) -> dict:
    head = dict(zip(["url", "view", "node_options", "node_hint", "message"], result[:5], strict=False))
    return {**head, **dict(zip(sync.CONTROLS, result[5:], strict=False))}


def _text(component) -> str:
    return json.dumps(component.to_plotly_json() if hasattr(component, "to_plotly_json") else component, default=str, ensure_ascii=False)


def _walk(component):
    yield component
    children = getattr(component, "children", None)
    for c in children if isinstance(children, (list, tuple)) else [children] if children is not None else []:
        yield from _walk(c)


def test_too_many_images_per_class_are_brought_into_range_and_the_box_shows_the_value_used(engine):
    limit = per_class_limit(engine, engine.defaults.model)
    out = _out(sync.sync(engine, ID.N_RDM, "?n_rdm=5", _controls(engine, n_rdm=limit + 1)))
    assert out["n_rdm"] == limit and out["view"]["n_rdm"] == limit  # the box and the view hold what is drawn
    message = _text(out["message"])
    assert f"from 1 to {limit}" in message and f"got {limit + 1}" in message and f"using {limit}" in message and "None" not in message
    assert urllib.parse.parse_qs(out["url"].lstrip("?"))["n_rdm"] == [str(limit)]
    low = _out(sync.sync(engine, ID.N_EMBED, "", _controls(engine, n_embed=0)))
    assert low["n_embed"] == 1 and "using 1" in _text(low["message"])


def test_an_empty_or_non_numeric_box_keeps_the_links_value_and_names_the_range(engine):
    limit = per_class_limit(engine, engine.defaults.model)
    for typed in (None, "", "abc", float("nan"), True, [3]):
        out = _out(sync.sync(engine, ID.N_RDM, "?n_rdm=7", _controls(engine, n_rdm=typed)))
        assert out["n_rdm"] == 7 and out["view"]["n_rdm"] == 7, typed
        assert f"from 1 to {limit}" in _text(out["message"]) and "keeping 7" in _text(out["message"])
    assert _out(sync.sync(engine, ID.N_RDM, "?model=alexnet", _controls(engine, n_rdm=None)))["n_rdm"] == View.default(engine).n_rdm


def test_a_number_in_range_passes_without_a_message(engine):
    out = _out(sync.sync(engine, ID.N_RDM, "", _controls(engine, n_rdm=12)))
    assert out["message"] == "" and out["n_rdm"] is no_update and out["view"]["n_rdm"] == 12


def test_the_boxes_leave_the_range_to_the_server(engine):
    boxes = {c.id: c for c in _walk(build_layout(engine, View.default(engine))) if isinstance(c, dcc.Input) and c.id in (ID.N_RDM, ID.N_EMBED)}
    assert len(boxes) == 2
    for box in boxes.values():  # a browser sends None for a number outside min/max, and the server could not say what was typed
        assert getattr(box, "max", None) is None and getattr(box, "min", None) is None


def test_the_fgsm_controls_are_disabled_unless_the_condition_is_fgsm(engine):
    assert sync.fgsm_disabled("clean") == (True, True)
    assert sync.fgsm_disabled("fgsm") == (False, False)
    for forged in (None, 1, ["fgsm"], {"fgsm": 1}, "FGSM"):
        assert sync.fgsm_disabled(forged) == (True, True)
    for condition, off in (("clean", True), ("fgsm", False)):
        layout = build_layout(engine, View.parse(engine, _controls(engine, condition=condition)))
        controls = {c.id: c for c in _walk(layout) if getattr(c, "id", None) in (ID.EPSILON, ID.ATTACK_MODEL)}
        assert {k: c.disabled for k, c in controls.items()} == {ID.EPSILON: off, ID.ATTACK_MODEL: off}


def test_the_steps_hint_is_only_for_a_model_with_recurrent_steps(engine):
    for model in engine.model_ids:
        out = _out(sync.sync(engine, ID.MODEL, "", _controls(engine, model=model)))
        assert bool(out["node_hint"]) == bool(engine.steps(model)), model
        assert ("recurrent steps" in out["node_hint"]) == bool(engine.steps(model))


def _full(result) -> dict:
    """Every output of the sync callback by name (the last two: the hypotheses' options and the selection store)."""
    return {**_out(result), "hypothesis_options": result[-2], "selection": result[-1]}


def test_a_selected_pair_is_written_to_the_link(engine):
    out = _full(sync.sync(engine, ID.SELECTION, "?n_rdm=7", _controls(engine, n_rdm=7), selection=[123, 4567]))
    assert urllib.parse.parse_qs(out["url"].lstrip("?")) == {"n_rdm": ["7"], "pair": ["123,4567"]}
    assert out["view"] is no_update and out["selection"] is no_update and all(out[n] is no_update for n in sync.CONTROLS)
    cleared = _full(sync.sync(engine, ID.SELECTION, "?n_rdm=7&pair=123%2C4567", _controls(engine, n_rdm=7), selection=[]))
    assert cleared["url"] == "?n_rdm=7"


def test_a_control_change_keeps_the_pair_in_the_link(engine):
    out = _full(sync.sync(engine, ID.N_RDM, "?pair=1,2", _controls(engine, n_rdm=9), selection=[1, 2]))
    assert urllib.parse.parse_qs(out["url"].lstrip("?")) == {"n_rdm": ["9"], "pair": ["1,2"]}


def test_a_shared_link_restores_the_pair(engine):
    out = _full(sync.sync(engine, None, "?n_rdm=7&pair=123%2C4567", {}))
    assert out["selection"] == [123, 4567] and out["view"]["n_rdm"] == 7 and out["message"] == ""
    assert _full(sync.sync(engine, None, "?n_rdm=7", {}))["selection"] is no_update  # a link without a pair leaves the selection


def test_a_bad_pair_in_a_link_is_dropped_with_a_warning_naming_what_is_allowed(engine):
    for bad in ("x,y", "1,2,3", "-4", "1e9", "9999999", ""):
        out = _full(sync.sync(engine, ID.URL, f"?n_rdm=7&pair={bad}", {}))
        assert out["view"]["n_rdm"] == 7, bad  # the rest of the link is used
        if bad:
            assert out["selection"] is no_update and "one or two image indices from 0 to" in _text(out["message"]), bad


def test_a_forged_selection_never_reaches_the_link(engine):
    for forged in (None, "abc", [True, 3], [-1, 2], [10**12], {"a": 1}, list(range(100))):
        out = _full(sync.sync(engine, ID.SELECTION, "?n_rdm=7", _controls(engine, n_rdm=7), selection=forged))
        pair = urllib.parse.parse_qs(out["url"].lstrip("?")).get("pair", [""])[0]
        assert all(p.isdigit() for p in pair.split(",") if p) and len(pair.split(",")) <= 2, (forged, out["url"])

"""The URL, the controls and the view store, kept in step by one callback (so no cycles)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from dash import no_update

from ...core.errors import RepgeomError
from ...core.validate import shown
from ...pipeline import Engine
from ..ids import CONTROL_IDS, ID
from ..layout import hypothesis_options, steps_hint
from ..layout import node_options as layout_node_options
from ..state import MAX_LIST, View, follow_model, pair_from_query, per_class_limit, query_with_pair
from .common import alert, parse_selection

__all__ = ["CONTROLS", "added_hypothesis", "fgsm_disabled", "fit_count", "node_options", "preset_models", "sync"]

#: View fields in the order of the sync callback's control inputs and outputs.
CONTROLS = tuple(CONTROL_IDS)
#: The images-per-class boxes: their view field and what the page calls them.
_COUNTS = {ID.N_RDM: ("n_rdm", "images per class (RDMs)"), ID.N_EMBED: ("n_embed", "images per class (embeddings and paths)")}


def fgsm_disabled(condition: Any) -> tuple[bool, bool]:
    """Whether the FGSM controls (epsilon, attacked model) are disabled: they are, unless the condition is FGSM."""
    off = condition != "fgsm"
    return off, off


def fit_count(engine: Engine, raw: Mapping[str, Any], trigger: str, search: Any) -> tuple[dict[str, Any], str]:
    """``raw`` with the images-per-class box ``trigger`` set to a value the view can use, and what was changed.

    A number outside 1..the dataset's limit is brought to the nearest end; an empty box
    or anything that is not a number keeps the value the view had (from its link).

    Args:
        engine: the engine.
        raw: control values by view field (unvalidated).
        trigger: ``ID.N_RDM`` or ``ID.N_EMBED``.
        search: the URL's query string (the view before this change).

    Returns:
        ``(raw values, note)``: a new dict, and a message naming the allowed range when the
        box's value was not used as typed ("" when it was).

    Raises:
        RepgeomError: when the view's model is not a loaded model.
    """
    field, what = _COUNTS[trigger]
    model = engine.check_model(raw.get("model") if isinstance(raw.get("model"), str) else shown(raw.get("model")))
    limit = per_class_limit(engine, model)
    value = raw.get(field)
    allowed = f"{what}: a whole number from 1 to {limit}"
    if isinstance(value, (int, float)) and not isinstance(value, bool) and value == value and abs(value) < 1e12:
        used = min(max(round(value), 1), limit)
        note = "" if used == value else f"{allowed}; got {value:g}, using {used}"
    else:
        try:
            before = View.from_query(engine, search if isinstance(search, str) else "")
        except RepgeomError:
            before = View.default(engine)
        used = min(getattr(before, field), limit)
        note = f"{allowed}; got {shown(value) if value not in (None, '') else 'an empty box'}, keeping {used}"
    return {**raw, field: used}, note


def node_options(engine: Engine, view: View) -> list[dict[str, Any]]:
    """The node dropdown's options: every node of the view's model, in graph order, each with its description."""
    return layout_node_options(engine, view.model)


def preset_models(engine: Engine, trigger: Mapping[str, Any]) -> list[str]:
    """The models of the preset whose button is ``trigger`` (a preset button's dict id).

    Raises:
        RepgeomError: for an index that names no preset, or a preset whose models did not all load.
    """
    i = trigger.get("index")
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(engine.presets):
        raise RepgeomError(f"no such preset; there are {len(engine.presets)}")
    preset = engine.presets[i]
    missing = [m for m in preset.models if m not in engine.model_ids]
    if missing:
        raise RepgeomError(f"preset {preset.label!r} needs {', '.join(missing)}, which did not load")
    return list(preset.models)


def added_hypothesis(name: Any, groups: Any) -> str:
    """The hypothesis ``NAME=groups`` the editor's fields make (checked against the dataset by :meth:`View.parse`).

    Raises:
        RepgeomError: when either field is empty or not text.
    """
    if not isinstance(name, str) or not name.strip() or not isinstance(groups, str) or not groups.strip():
        raise RepgeomError("a class-group hypothesis needs a name and groups, e.g. odd and 1,3,5,7,9 | 0,2,4,6,8")
    if len(name) > 30 or len(groups) > 1000 or "=" in name or ";" in name + groups:
        raise RepgeomError("a hypothesis name is up to 30 letters, digits, '_', '.', '+', '-'; groups up to 1000 characters, without ';'")
    return f"{name.strip()}={groups.strip()}"


def _is_preset(trigger: Any) -> bool:
    return isinstance(trigger, Mapping) and trigger.get("type") == ID.PRESET


def sync(engine: Engine, trigger: Any, search: Any, values: Mapping[str, Any], hypothesis: tuple[Any, Any] = ("", ""), selection: Any = None) -> tuple:
    """The view store, the URL and the controls after ``trigger`` changed.

    Args:
        engine: the engine the view is validated against.
        trigger: what changed: ``None`` or ``ID.URL`` (page load or a typed link), a
            control's id, a preset button's dict id (``ids.preset_id(i)``), or
            ``ID.HYPOTHESIS_ADD`` (the hypothesis editor's add button).
        search: the URL's query string.
        values: the controls' values by view field (``CONTROLS``).
        hypothesis: the hypothesis editor's ``(name, groups)`` fields.
        selection: the selection store (the selected stimuli, kept in the URL as ``pair``);
            ``trigger == ID.SELECTION`` when it changed.

    Returns:
        ``(url search, view store, node options, node hint, global message, *control
        values, hypotheses' options, selection store)``; the selection store is set only
        from a link that names a pair. A bad link falls back to the defaults with a warning; a bad control
        value leaves everything as it was and shows why. A new model brings its default
        nodes (and, from another dataset, an attacked model and path models of its own
        dataset); a preset sets the path's models and shows the paths tab (and, for models
        of another dataset than the view's model, makes the preset's last model the view's).
    """
    selected = parse_selection(selection)
    if trigger in (None, ID.URL):
        try:
            view, note = View.from_query(engine, search), None
        except RepgeomError as exc:
            view, note = View.default(engine), alert(f"The link's settings were not used: {exc}", "warning")
        try:
            pair = pair_from_query(search)
        except RepgeomError as exc:
            pair, note = None, note or alert(f"The link's pair was not used: {exc}", "warning")
        controls = view.controls()
        values = [controls[n] for n in CONTROLS]
        options = hypothesis_options(controls["hypotheses"])
        restored = no_update if pair is None else pair
        return (no_update, controls, node_options(engine, view), steps_hint(engine, view.model), note or "", *values, options, restored)
    if trigger == ID.SELECTION:  # only the link changes: the view is as it was
        link = query_with_pair(search if isinstance(search, str) and len(search) <= 4000 else "", selected)
        return (link, no_update, no_update, no_update, no_update, *[no_update] * len(CONTROLS), no_update, no_update)
    raw = {n: values.get(n) for n in CONTROLS}
    note = ""
    try:
        if isinstance(trigger, str) and trigger in _COUNTS:
            raw, note = fit_count(engine, raw, trigger, search)
        elif trigger == ID.MODEL:
            model = engine.check_model(raw["model"] if isinstance(raw["model"], str) else type(raw["model"]).__name__)
            raw = follow_model(engine, raw, model)
        elif _is_preset(trigger):
            models = preset_models(engine, trigger)
            current = raw.get("model")
            if not (isinstance(current, str) and current in engine.model_ids and engine.dataset_of(current) == engine.dataset_of(models[0])):
                raw = follow_model(engine, raw, models[-1])  # a preset of another dataset brings its stimuli with it
                raw["model"] = models[-1]
            raw.update(path_models=models, tab="paths")
        elif trigger == ID.HYPOTHESIS_ADD:
            listed = raw.get("hypotheses")
            kept = [h for h in listed if isinstance(h, str)] if isinstance(listed, list) and len(listed) <= MAX_LIST else []
            new = added_hypothesis(*hypothesis)
            name = new.partition("=")[0]
            raw["hypotheses"] = [h for h in kept if h.partition("=")[0] != name] + [new]
        view = View.parse(engine, raw)
    except RepgeomError as exc:
        return (no_update, no_update, no_update, no_update, alert(str(exc)), *[no_update] * len(CONTROLS), no_update, no_update)
    controls = view.controls()
    forced = trigger in (ID.MODEL, ID.HYPOTHESIS_ADD) or _is_preset(trigger)
    changed = [controls[n] if forced or controls[n] != values.get(n) else no_update for n in CONTROLS]
    options = hypothesis_options(controls["hypotheses"])
    message = alert(note, "warning") if note else ""
    link = query_with_pair(view.to_query(engine), selected)
    return (link, controls, node_options(engine, view), steps_hint(engine, view.model), message, *changed, options, no_update)

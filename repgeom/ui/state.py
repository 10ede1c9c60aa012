"""The dashboard's view state: parsed and validated from controls or a URL, and written back to a URL.

Design notes:
    Anything the browser sends is untrusted: :meth:`View.parse` checks every field
    against the engine's loaded models and nodes and against fixed ranges, and raises
    :class:`~repgeom.core.errors.RepgeomError` with the allowed values. Callbacks only
    ever see a valid :class:`View`. The URL holds the fields that differ from the
    engine's default view as a query string, so a reload or a shared link rebuilds the
    same view. Which model, attacked model and nodes come first is the models manifest's
    and the graph's business (``engine.defaults``, ``engine.steps``), never written here.
    This module does not import Dash.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass, fields
from typing import Any
from urllib.parse import parse_qs, parse_qsl, urlencode

from ..core.comparisons import PATH_COMPARISONS
from ..core.embedding import EMBED_METHODS, PERPLEXITY_RANGE
from ..core.errors import RepgeomError
from ..core.landmarks import parse_landmarks
from ..core.rdm import RDM_METHODS
from ..core.stimuli import CONDITIONS, available_per_class
from ..core.validate import check_choice, check_float, check_int, shown
from ..figures.rdm import COLORSCALES, NORMALISE
from ..pipeline import Engine, StimulusSpec

__all__ = [
    "ANIM_SCALES",
    "DISPLAY_MODES",
    "LANDMARK_CHOICES",
    "MAX_HYPOTHESES",
    "MAX_LIST",
    "PAIR_KEY",
    "PATH_MODES",
    "SURVIVE_COMPARISONS",
    "TABS",
    "View",
    "default_nodes",
    "follow_model",
    "pair_from_query",
    "per_class_limit",
    "query_with_pair",
    "split_model_node",
]

TABS = ("rdms", "embeddings", "paths", "models", "probe", "glossary")
#: Reference landmarks a path can add beside ``labels`` (class-group hypotheses come separately).
LANDMARK_CHOICES = ("noise", "shuffled")
#: At most this many class-group hypotheses in a path.
MAX_HYPOTHESES = 6
#: Comparisons offered side by side ("do the conclusions survive?"); tau-a is left out (0.05 s a pair of RDMs).
SURVIVE_COMPARISONS = tuple(c for c in PATH_COMPARISONS if c != "tau_a")
#: The path tab draws the chosen models' nodes, or the chosen model's nodes at each epoch of its training.
PATH_MODES = ("models", "training")
#: How the page is shown: for exploring (controls and inspector beside the figures), or on a projector
#: (one figure across the screen, large type, a colour-blind-safe palette, keyboard shortcuts).
DISPLAY_MODES = ("explore", "present")
#: The embedding animation's frames at their true scale, or each scaled to unit RMS radius.
ANIM_SCALES = ("true", "rescaled")
#: No list control has more entries than this; longer lists are refused unread.
MAX_LIST = 64
#: A model without recurrent steps and without conv/fc layers starts with this many nodes, evenly spread.
_SPREAD_NODES = 5


def default_nodes(engine: Engine, model: str) -> tuple[str, ...]:
    """The nodes ``model`` starts with: its recurrent steps, else its conv and fc layers, else a spread.

    Args:
        engine: the engine (which knows each model's graph and steps).
        model: a loaded model id.

    Returns:
        Node names in graph order: ``engine.steps(model)`` when the model has recurrent
        steps; else the nodes named like convolution or fully connected layers
        (torchvision's and PyTorch's usual ``conv``/``fc`` names); else
        ``_SPREAD_NODES`` nodes evenly spread from the first after ``input`` to the last.
    """
    steps = tuple(engine.steps(model))
    if steps:
        return steps
    nodes = [n for n in engine.nodes(model) if n != "input"]
    layers = tuple(n for n in nodes if "conv" in n or "fc" in n)
    if layers or len(nodes) <= _SPREAD_NODES:
        return layers or tuple(nodes)
    picks = sorted({round(k * (len(nodes) - 1) / (_SPREAD_NODES - 1)) for k in range(_SPREAD_NODES)})
    return tuple(nodes[k] for k in picks)


def per_class_limit(engine: Engine, model: str) -> int:
    """Most images per class the dataset of ``model`` offers."""
    return available_per_class(engine.source_of(engine.dataset_of(model).id))


def follow_model(engine: Engine, raw: Mapping[str, Any], model: str, given: Collection[str] = ()) -> dict[str, Any]:
    """``raw`` control values with the fields that depend on the model made to fit ``model``.

    The nodes become ``model``'s default nodes; an attacked model or path models of
    another dataset are replaced by ones of ``model``'s dataset (its stimuli are that
    dataset's images); images per class are capped at what that dataset offers.

    Args:
        engine: the engine.
        raw: control values by view field (unvalidated).
        model: a loaded model id.
        given: fields to leave as they are (those a link names explicitly).

    Returns:
        A new dict; the other fields are copied unchanged.
    """
    out = dict(raw)
    dataset = engine.dataset_of(model).id

    def same(m: Any) -> bool:
        return isinstance(m, str) and m in engine.model_ids and engine.dataset_of(m).id == dataset

    if "nodes" not in given:
        out["nodes"] = list(default_nodes(engine, model))
    if "attack_model" not in given and not same(out.get("attack_model")):
        out["attack_model"] = engine.defaults.attack_model if same(engine.defaults.attack_model) else model
    if "path_models" not in given:
        listed = out.get("path_models")
        kept = [m for m in listed if same(m)] if isinstance(listed, (list, tuple)) and len(listed) <= MAX_LIST else []
        out["path_models"] = kept or [model]
    names = engine.dataset_of(model).class_names
    if "hypotheses" not in given:
        listed = out.get("hypotheses")
        out["hypotheses"] = [h for h in listed if _fits(h, names)] if isinstance(listed, (list, tuple)) and len(listed) <= MAX_LIST else []
    for key in ("diff_a", "diff_b"):
        if key not in given:
            value = out.get(key)
            base = value.partition("/")[0] if isinstance(value, str) else None
            out[key] = value if base is not None and same(base) else ""
    limit = per_class_limit(engine, model)
    for key in ("n_rdm", "n_embed"):
        value = out.get(key)
        if key not in given and isinstance(value, int) and not isinstance(value, bool) and value > limit:
            out[key] = limit
    return out


#: The URL key of the selected stimuli (kept beside the view's fields, outside the view store).
PAIR_KEY = "pair"
#: Test-set indices in a link are below this.
_MAX_PAIR_INDEX = 10**6


def pair_from_query(search: Any) -> list[int] | None:
    """The selected stimuli a link names (``pair=I,J``: one or two image indices), or ``None`` when it names none.

    Raises:
        RepgeomError: for a ``pair`` that is not one or two whole numbers from 0 to 999999.
    """
    if not isinstance(search, str) or len(search) > 4000:
        return None
    values = parse_qs(search.lstrip("?")).get(PAIR_KEY)
    if not values:
        return None
    items = values[-1].split(",")
    try:
        if not 1 <= len(items) <= 2:
            raise ValueError
        pair = [check_int("pair", item, 0, _MAX_PAIR_INDEX - 1) for item in items]
    except (RepgeomError, ValueError):
        allowed = f"one or two image indices from 0 to {_MAX_PAIR_INDEX - 1}, e.g. pair=3,7"
        raise RepgeomError(f"the selected pair must be {allowed}; got {shown(values[-1])}") from None
    return list(dict.fromkeys(pair))


def query_with_pair(query: str, pair: Sequence[int]) -> str:
    """``query`` (a :meth:`View.to_query` string) with the selected stimuli ``pair`` added (or its ``pair`` removed when empty)."""
    kept = [(k, v) for k, v in parse_qsl(query.lstrip("?")) if k != PAIR_KEY] if isinstance(query, str) else []
    if pair:
        kept.append((PAIR_KEY, ",".join(str(int(i)) for i in pair)))
    return "?" + urlencode(kept) if kept else ""


def _fits(hypothesis: Any, class_names: Sequence[str]) -> bool:
    """Whether ``hypothesis`` (``NAME=a,b|c,d``) parses for a dataset with ``class_names``."""
    if not isinstance(hypothesis, str):
        return False
    try:
        parse_landmarks(f"group:{hypothesis}", class_names)
    except RepgeomError:
        return False
    return True


def split_model_node(engine: Engine, value: Any, dataset: str, what: str) -> tuple[str, str]:
    """``(model, node)`` from ``"model/node"``, both loaded, the model on ``dataset``.

    Raises:
        RepgeomError: for anything else, naming what is allowed.
    """
    if not isinstance(value, str) or "/" not in value:
        raise RepgeomError(f"{what} must be MODEL/NODE, e.g. {engine.defaults.model}/{engine.nodes(engine.defaults.model)[-1]}; got {shown(value)}")
    model, _, node = value.partition("/")
    model = engine.check_model(model)
    if engine.dataset_of(model).id != dataset:
        raise RepgeomError(f"{what}: {model} is a model of {engine.dataset_of(model).name}; choose a model of the same dataset as the view's model")
    return model, engine.select_nodes(model, [node])[0]


def _hypotheses(engine: Engine, value: Any, class_names: Sequence[str]) -> tuple[str, ...]:
    items = _as_list(value, "class-group hypotheses")
    if len(items) > MAX_HYPOTHESES:
        raise RepgeomError(f"at most {MAX_HYPOTHESES} class-group hypotheses, got {len(items)}")
    out = []
    for h in items:
        if not isinstance(h, str) or len(h) > 2000:
            raise RepgeomError(f"a class-group hypothesis is NAME=a,b|c,d (class names or indices), got {shown(h)}")
        parse_landmarks(f"group:{h.strip()}", class_names)
        out.append(h.strip())
    if len({h.partition("=")[0] for h in out}) != len(out):
        raise RepgeomError("each class-group hypothesis needs its own name")
    return tuple(out)


def _as_list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if not isinstance(value, (list, tuple)):
        raise RepgeomError(f"{what} must be a list of names, got {type(value).__name__}")
    if len(value) > MAX_LIST:
        raise RepgeomError(f"{what} may hold at most {MAX_LIST} entries, got {len(value)}")
    return list(value)


def _hashable(value: Any) -> Any:
    return value if isinstance(value, (str, int, float, type(None))) else shown(value)


_SEPARATORS = {"hypotheses": ";"}


@dataclass(frozen=True)
class View:
    """Everything that decides what the dashboard shows.

    The field defaults are what holds for every engine; :meth:`default` fills in the
    models and nodes from the engine's manifest and graph.
    """

    tab: str = "rdms"
    model: str = ""
    nodes: tuple[str, ...] = ()
    n_rdm: int = 20
    n_embed: int = 50
    condition: str = "clean"
    epsilon: float = 0.2
    attack_model: str = ""
    rdm_method: str = "correlation"
    normalise: str = "per"
    colorscale: str = "Magma_r"
    embed_methods: tuple[str, ...] = ("pca", "mds", "tsne")
    anim_method: str = "pca"
    perplexity: float = 40.0
    path_models: tuple[str, ...] = ()
    path_rdm: str = "euclidean"
    compare: str = "cosine"
    landmarks: tuple[str, ...] = ()
    hypotheses: tuple[str, ...] = ()
    survive: tuple[str, ...] = ("cosine", "corr_cov")
    path_mode: str = "models"
    anim_scale: str = "true"
    diff_a: str = ""
    diff_b: str = ""
    mode: str = "explore"

    # ------------------------------------------------------------------ parsing
    @classmethod
    def default(cls, engine: Engine) -> View:
        """The first view: the manifest's default model (with its default nodes) and attacked model.

        Images per class are capped at what the model's dataset offers; an attacked
        model of another dataset gives way to the default model.

        Raises:
            RepgeomError: when no model is loaded.
        """
        if not engine.model_ids:
            raise RepgeomError("no model could be loaded; check the models folder and the server log")
        model = engine.defaults.model
        fitted = follow_model(engine, {**asdict(cls()), "attack_model": engine.defaults.attack_model, "path_models": [model]}, model)
        return cls(
            model=model,
            nodes=tuple(fitted["nodes"]),
            attack_model=fitted["attack_model"],
            path_models=tuple(fitted["path_models"]),
            n_rdm=fitted["n_rdm"],
            n_embed=fitted["n_embed"],
        )

    @classmethod
    def parse(cls, engine: Engine, raw: Mapping[str, Any]) -> View:
        """Validate raw control values (from the browser) into a :class:`View`.

        Missing keys take the defaults; unknown keys are ignored. Raises
        :class:`RepgeomError` naming the first bad field and what is allowed.
        """
        base = cls.default(engine)
        get = {f.name: raw.get(f.name, getattr(base, f.name)) for f in fields(cls)}
        model = engine.check_model(_hashable(get["model"]))
        node_list = _as_list(get["nodes"], "nodes")
        if not node_list:
            raise RepgeomError(f"choose at least one node of {model}")
        nodes = tuple(engine.select_nodes(model, [n if isinstance(n, str) else shown(n) for n in node_list]))
        path_models = _as_list(get["path_models"], "path models")
        if not path_models:
            raise RepgeomError(f"choose at least one model for the path; allowed: {', '.join(engine.model_ids)}")
        path_models = tuple(engine.check_model(m) for m in dict.fromkeys(map(_hashable, path_models)))
        methods = _as_list(get["embed_methods"], "embedding methods")
        if not methods:
            raise RepgeomError(f"choose at least one embedding method; allowed: {', '.join(EMBED_METHODS)}")
        chosen = {check_choice("embedding method", x, EMBED_METHODS) for x in methods}
        methods = tuple(m for m in EMBED_METHODS if m in chosen)
        limit = per_class_limit(engine, model)
        dataset = engine.dataset_of(model)
        marks = {check_choice("landmark", x, LANDMARK_CHOICES) for x in _as_list(get["landmarks"], "landmarks")}
        survive = {check_choice("side-by-side comparison", x, SURVIVE_COMPARISONS) for x in _as_list(get["survive"], "side-by-side comparisons")}
        if len(survive) == 1 or len(survive) > 3:
            raise RepgeomError(f"choose two or three comparisons to draw side by side (or none), got {len(survive)}")
        diffs = ["" if get[k] in ("", None) else "/".join(split_model_node(engine, get[k], dataset.id, what)) for k, what in (("diff_a", "A"), ("diff_b", "B"))]
        return cls(
            tab=check_choice("tab", get["tab"], TABS),
            model=model,
            nodes=nodes,
            n_rdm=check_int("images per class (RDMs)", get["n_rdm"], 1, limit),
            n_embed=check_int("images per class (embeddings and paths)", get["n_embed"], 1, limit),
            condition=check_choice("condition", get["condition"], CONDITIONS),
            epsilon=check_float("epsilon", get["epsilon"], 0.0, 1.0),
            attack_model=engine.check_model(_hashable(get["attack_model"])),
            rdm_method=check_choice("RDM method", get["rdm_method"], RDM_METHODS),
            normalise=check_choice("colour normalisation", get["normalise"], NORMALISE),
            colorscale=check_choice("colour scale", get["colorscale"], COLORSCALES),
            embed_methods=methods,
            anim_method=check_choice("animation method", get["anim_method"], EMBED_METHODS),
            perplexity=check_float("perplexity", get["perplexity"], *PERPLEXITY_RANGE),
            path_models=path_models,
            path_rdm=check_choice("path RDM method", get["path_rdm"], RDM_METHODS),
            compare=check_choice("comparison method", get["compare"], PATH_COMPARISONS),
            landmarks=tuple(m for m in LANDMARK_CHOICES if m in marks),
            hypotheses=_hypotheses(engine, get["hypotheses"], dataset.class_names),
            survive=tuple(c for c in SURVIVE_COMPARISONS if c in survive),
            path_mode=check_choice("path mode", get["path_mode"], PATH_MODES),
            anim_scale=check_choice("animation scale", get["anim_scale"], ANIM_SCALES),
            diff_a=diffs[0],
            diff_b=diffs[1],
            mode=check_choice("display mode", get["mode"], DISPLAY_MODES),
        )

    # ------------------------------------------------------------------ URL
    def to_query(self, engine: Engine) -> str:
        """``?key=value&...`` holding every field that differs from the engine's default view."""
        base = View.default(engine)
        pairs: list[tuple[str, str]] = []
        for f in fields(self):
            value = getattr(self, f.name)
            if value == getattr(base, f.name):
                continue
            joiner = _SEPARATORS.get(f.name, ",")
            pairs.append((f.name, joiner.join(value) if isinstance(value, tuple) else f"{value:g}" if isinstance(value, float) else str(value)))
        return "?" + urlencode(pairs) if pairs else ""

    @classmethod
    def from_query(cls, engine: Engine, search: str | None) -> View:
        """Parse a URL query string (from :meth:`to_query` or typed by hand).

        Raises:
            RepgeomError: for a bad value, naming the field and what is allowed.
        """
        if not search:
            return cls.default(engine)
        if not isinstance(search, str) or len(search) > 4000:
            raise RepgeomError("the link's settings are too long or malformed")
        parsed = parse_qs(search.lstrip("?"), keep_blank_values=False)
        raw: dict[str, Any] = {}
        list_fields = {"nodes", "embed_methods", "path_models", "landmarks", "hypotheses", "survive"}
        for f in fields(cls):
            if f.name in parsed:
                value = parsed[f.name][-1]
                raw[f.name] = [v for v in value.split(_SEPARATORS.get(f.name, ",")) if v] if f.name in list_fields else value
        if "model" in raw:
            model = engine.check_model(raw["model"])
            raw = follow_model(engine, {**cls.default(engine).controls(), **raw}, model, given=set(raw))
        return cls.parse(engine, raw)

    # ------------------------------------------------------------------ derived
    def controls(self) -> dict[str, Any]:
        """Field values as the controls hold them (lists, not tuples)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(self).items()}

    def landmark_spec(self) -> str:
        """The path's landmarks for :meth:`~repgeom.pipeline.Engine.path`: ``labels``, the chosen ones, each hypothesis."""
        return ",".join(["labels", *self.landmarks, *(f"group:{h}" for h in self.hypotheses)])

    def spec(self, engine: Engine, n: int) -> StimulusSpec:
        """The stimulus spec of this view at ``n`` images per class: images of the model's dataset."""
        return engine.spec(n, self.condition, self.epsilon, self.attack_model, dataset=engine.dataset_of(self.model).id)

"""The page: a control sidebar, four tabs of figures, a hover panel and the selected pair.

The layout is a pure function of the engine (its dataset, models, presets and limits) and
a starting :class:`~repgeom.ui.state.View`; the figures are filled in by callbacks on page
load. Nothing about a dataset or a model is written here: names, steps and presets come
from the engine.
"""

from __future__ import annotations

from typing import Any

from dash import dcc, html

from ..core.comparisons import COMPARISON_DEFINITIONS, PATH_COMPARISONS
from ..core.embedding import EMBED_METHODS, PERPLEXITY_RANGE
from ..core.probe import ImageLimits
from ..core.rdm import RDM_METHODS
from ..figures.embedding import METHOD_NAMES
from ..figures.rdm import COLORSCALES
from ..figures.style import COMPARE_LABELS
from ..pipeline import Engine
from .explanations import FIGURE_NOTES, GLOSSARY
from .ids import DIFF_JOB, DOWNLOAD_JOB, EMBED_JOB, ID, JOBS, METRICS_JOB, PATH_JOB, RDM_JOB, SIDE_JOB, JobIds, note_id, preset_id
from .state import LANDMARK_CHOICES, SURVIVE_COMPARISONS, View, per_class_limit

__all__ = [
    "IMAGE_FORMATS",
    "PROBE_LIMITS",
    "build_layout",
    "figure_note",
    "glossary_panel",
    "graph_config",
    "hypothesis_options",
    "model_options",
    "node_options",
    "node_pairs",
    "steps_hint",
]

IMAGE_FORMATS = ("png", "svg")
#: Bounds on a probe image (the upload control's own bound; the server checks them again).
PROBE_LIMITS = ImageLimits()


#: Toolbar buttons that are never offered: sharing to Plotly's cloud (which the page's security policy blocks anyway).
_CLOUD_BUTTONS = ["sendChartToCloud", "sendDataToCloud", "editInChartStudio"]


def graph_config(image_format: str = "png", filename: str = "repgeom") -> dict[str, Any]:
    """Plotly toolbar settings: no logo, no cloud sharing; the camera button saves ``filename.image_format``."""
    return {
        "displaylogo": False,
        "showSendToCloud": False,
        "showEditInChartStudio": False,
        "modeBarButtonsToRemove": list(_CLOUD_BUTTONS),
        "toImageButtonOptions": {"format": image_format, "scale": 2, "filename": filename},
    }


_GRAPH_CONFIG = graph_config()
_RDM_NAMES = {"correlation": "correlation (1 − r)", "euclidean": "squared Euclidean / D", "cosine": "cosine (1 − cos)"}
_LANDMARK_NAMES = {"noise": " noise (i.i.d. Gaussian features, seeded)", "shuffled": " shuffled labels"}


def model_options(engine: Engine) -> list[dict[str, Any]]:
    """The loaded models grouped by dataset: a disabled header per dataset, then its models."""
    out: list[dict[str, Any]] = []
    by_dataset: dict[str, list[str]] = {}
    for m in engine.model_ids:
        by_dataset.setdefault(engine.dataset_of(m).id, []).append(m)
    for dataset, models in by_dataset.items():
        info = engine.dataset_of(models[0])
        out.append({"label": f"— {info.name} —", "value": f"dataset:{dataset}", "disabled": True})
        out += [{"label": m, "value": m} for m in models]
    return out


def node_pairs(engine: Engine) -> list[dict[str, str]]:
    """Every ``model/node`` of the loaded models (the difference RDM's A and B), grouped by model."""
    return [{"label": f"{m} / {n}", "value": f"{m}/{n}"} for m in engine.model_ids for n in engine.nodes(m) if n != "input"]


def hypothesis_options(values: Any) -> list[dict[str, str]]:
    """The hypotheses dropdown's options: the hypotheses it holds (anything else in ``values`` is left out)."""
    items = values if isinstance(values, list) and len(values) <= 64 else []
    return [{"label": h, "value": h} for h in items if isinstance(h, str) and len(h) <= 2000]


def _compare_options() -> list[dict[str, Any]]:
    return [
        {"label": html.Span([html.B(f" {COMPARE_LABELS[c]}"), html.Span(f": {COMPARISON_DEFINITIONS[c]}", className="option-definition")]), "value": c}
        for c in PATH_COMPARISONS
    ]


def node_options(engine: Engine, model: str) -> list[dict[str, Any]]:
    """The node selector's options: every node of ``model`` in graph order, each with its description (beside it, and as its tooltip)."""
    described = engine.node_descriptions(model)
    return [
        {
            "label": html.Span([n, html.Span(f" · {described[n]}", className="option-definition")]) if n in described else n,
            "value": n,
            "title": described.get(n, n),
            "search": f"{n} {described.get(n, '')}",
        }
        for n in engine.nodes(model)
    ]


def steps_hint(engine: Engine, model: str) -> str:
    """The node control's hint: the recurrent steps of ``model`` by name, or "" for a model without steps."""
    steps = engine.steps(model)
    return f"recurrent steps: {', '.join(steps)}" if steps else ""


def _field(label: str, control: Any, hint: str | None = None, hint_id: str | None = None) -> html.Div:
    children: list[Any] = [html.Label(label, className="field-label"), control]
    if hint_id is not None:
        children.append(html.Div(hint, id=hint_id, className="field-hint"))
    elif hint:
        children.append(html.Div(hint, className="field-hint"))
    return html.Div(children, className="field")


def _presets(engine: Engine) -> list[html.Button]:
    """One button per manifest preset; a preset whose models did not all load is disabled."""
    loaded = set(engine.model_ids)
    return [html.Button(p.label, id=preset_id(i), className="button", n_clicks=0, disabled=not set(p.models) <= loaded) for i, p in enumerate(engine.presets)]


def figure_note(graph_id: str) -> html.Details:
    """The ⓘ note beside figure ``graph_id``: what is plotted, how to read it, what to be careful about (closed until clicked)."""
    note = FIGURE_NOTES[graph_id]
    return html.Details(
        id=note_id(graph_id),
        className="figure-note",
        children=[
            html.Summary([html.Span("i", className="figure-note-icon", **{"aria-hidden": "true"}), f" What am I looking at? {note.title}"]),
            html.Dl(
                [
                    html.Dt("What is plotted"),
                    html.Dd(note.what),
                    html.Dt("How to read it"),
                    html.Dd(note.read),
                    html.Dt("Be careful"),
                    html.Dd(note.careful),
                ]
            ),
        ],
    )


def glossary_panel() -> html.Div:
    """Every term the page shows, with its meaning (the glossary tab)."""
    entries: list[Any] = []
    for entry in sorted(GLOSSARY, key=lambda e: e.term.lower()):
        also = f" (also: {', '.join(entry.aliases)})" if entry.aliases else ""
        entries += [html.Dt([entry.term, html.Span(also, className="glossary-aliases")]), html.Dd(entry.definition)]
    return html.Div(id=ID.GLOSSARY, className="glossary", children=[html.H3("Glossary"), html.Dl(entries)])


def _graph(graph_id: str, height: int) -> html.Div:
    children: list[Any] = [figure_note(graph_id)] if graph_id in FIGURE_NOTES else []
    children.append(
        dcc.Loading(
            dcc.Graph(id=graph_id, config=_GRAPH_CONFIG, style={"minHeight": f"{height}px"}),
            type="dot",
            delay_show=150,
        )
    )
    return html.Div(children, className="figure-block")


def _message(message_id: str) -> html.Div:
    return html.Div(id=message_id, className="message", role="status", **{"aria-live": "polite"})


def _progress(job: JobIds) -> html.Div:
    """A background job's panel: progress and Cancel while it runs; after Cancel (or a lost job) a notice and "Compute again"."""
    return html.Div(
        className="job-panel",
        children=[
            html.Div(
                id=job.busy,
                className="job-progress",
                style={"display": "none"},
                children=[
                    html.Progress(id=job.progress, value="0", max="1"),
                    html.Span(id=job.text, className="job-progress-text", role="status", **{"aria-live": "polite"}),
                    html.Button("Cancel", id=job.cancel, className="cancel-button", n_clicks=0),
                ],
            ),
            html.Div(
                id=job.notice,
                className="job-notice message-box warning",
                style={"display": "none"},
                children=[
                    html.Span(id=job.notice_text, role="status", **{"aria-live": "polite"}),
                    html.Button("Compute again", id=job.again, className="button", n_clicks=0),
                ],
            ),
        ],
    )


def _point_tools(engine: Engine, view: View) -> html.Div:
    """Above the embeddings: the point search and the isolated group's reset."""
    names = engine.dataset_of(view.model).class_names
    example = ", ".join([names[0], f"#{int(engine.stimuli(view.spec(engine, view.n_embed)).indices[0])}"])
    return html.Div(
        className="point-tools",
        children=[
            _field(
                "Find points (class names or #image index, comma-separated)",
                dcc.Input(id=ID.POINT_SEARCH, type="text", debounce=True, placeholder=f"e.g. {example}", maxLength=400),
            ),
            html.Div(id=ID.POINT_SEARCH_MESSAGE, className="field-hint", role="status"),
            html.Button("show all points", id=ID.GROUP_RESET, className="button", n_clicks=0, title="undo a box or lasso isolation"),
            html.Div(
                id=ID.GROUP_MESSAGE,
                className="field-hint",
                role="status",
                children="Drag a box or a lasso (toolbar) around points to isolate them in every panel; click a point for its neighbours.",
            ),
        ],
    )


def _hypothesis_editor(engine: Engine, view: View) -> html.Div:
    """Class-group hypotheses: the list (remove with ×) and a name + groups editor (checked by the server)."""
    names = engine.dataset_of(view.model).class_names
    example = f"{', '.join(names[1::2][:3])} | {', '.join(names[0::2][:3])}"
    return html.Div(
        className="field",
        children=[
            html.Label("Class-group hypotheses", className="field-label"),
            dcc.Dropdown(id=ID.HYPOTHESES, options=hypothesis_options(list(view.hypotheses)), value=list(view.hypotheses), multi=True, placeholder="none"),
            html.Div(
                className="hypothesis-editor",
                children=[
                    dcc.Input(id=ID.HYPOTHESIS_NAME, type="text", placeholder="name, e.g. odd", maxLength=30, debounce=False),
                    dcc.Input(id=ID.HYPOTHESIS_GROUPS, type="text", placeholder=f"groups, e.g. {example}", maxLength=1000, debounce=False),
                    html.Button("add", id=ID.HYPOTHESIS_ADD, className="button", n_clicks=0),
                ],
            ),
            html.Div("Groups of class names (or indices) separated by |; classes left out form one more group.", className="field-hint"),
        ],
    )


def _sidebar(engine: Engine, view: View) -> html.Aside:
    models = model_options(engine)
    limits = {engine.dataset_of(m).name: per_class_limit(engine, m) for m in engine.model_ids}
    return html.Aside(
        className="sidebar",
        children=[
            html.H2("Model and nodes"),
            _field("Model", dcc.Dropdown(id=ID.MODEL, options=models, value=view.model, clearable=False)),
            _field(
                "Nodes (graph order)",
                dcc.Dropdown(id=ID.NODES, options=node_options(engine, view.model), value=list(view.nodes), multi=True),
                steps_hint(engine, view.model),
                hint_id=ID.NODES_HINT,
            ),
            html.H2("Stimuli"),
            # no min/max on the boxes: a browser sends None for a number outside them; the server brings it into range and says so
            _field("Images per class · RDMs", dcc.Input(id=ID.N_RDM, type="number", step=1, value=view.n_rdm, debounce=True)),
            _field(
                "Images per class · embeddings & paths",
                dcc.Input(id=ID.N_EMBED, type="number", step=1, value=view.n_embed, debounce=True),
                "; ".join(f"1 to {n} for {name}" for name, n in limits.items()),
            ),
            _field(
                "Condition",
                dcc.RadioItems(
                    id=ID.CONDITION, options=[{"label": " clean", "value": "clean"}, {"label": " FGSM", "value": "fgsm"}], value=view.condition, inline=True
                ),
            ),
            _field(
                "FGSM ε",
                dcc.Slider(
                    id=ID.EPSILON,
                    min=0,
                    max=1,
                    step=0.05,
                    value=view.epsilon,
                    marks={0: "0", 0.2: ".2", 0.4: ".4", 0.6: ".6", 0.8: ".8", 1: "1"},
                    disabled=view.condition != "fgsm",
                ),
            ),
            _field(
                "Attacked model",
                dcc.Dropdown(id=ID.ATTACK_MODEL, options=models, value=view.attack_model, clearable=False, disabled=view.condition != "fgsm"),
            ),
            html.H2("RDMs"),
            _field(
                "Dissimilarity",
                dcc.Dropdown(id=ID.RDM_METHOD, options=[{"label": _RDM_NAMES[m], "value": m} for m in RDM_METHODS], value=view.rdm_method, clearable=False),
            ),
            _field("Colour", dcc.Dropdown(id=ID.COLORSCALE, options=[{"label": c, "value": c} for c in COLORSCALES], value=view.colorscale, clearable=False)),
            _field(
                "Scale",
                dcc.RadioItems(
                    id=ID.NORMALISE, options=[{"label": " each RDM ÷ its max", "value": "per"}, {"label": " shared", "value": "shared"}], value=view.normalise
                ),
            ),
            html.H2("Embeddings"),
            _field(
                "Methods",
                dcc.Checklist(
                    id=ID.EMBED_METHODS,
                    options=[{"label": f" {METHOD_NAMES[m]}", "value": m} for m in EMBED_METHODS],
                    value=list(view.embed_methods),
                    inline=True,
                ),
            ),
            _field(
                "Animate",
                dcc.RadioItems(
                    id=ID.ANIM_METHOD, options=[{"label": f" {METHOD_NAMES[m]}", "value": m} for m in EMBED_METHODS], value=view.anim_method, inline=True
                ),
            ),
            _field(
                "Animation scale",
                dcc.RadioItems(
                    id=ID.ANIM_SCALE,
                    options=[{"label": " true scale", "value": "true"}, {"label": " rescale frames (unit RMS radius)", "value": "rescaled"}],
                    value=view.anim_scale,
                ),
            ),
            _field(
                "t-SNE perplexity",
                dcc.Input(id=ID.PERPLEXITY, type="number", min=PERPLEXITY_RANGE[0], max=PERPLEXITY_RANGE[1], step=1, value=view.perplexity, debounce=True),
            ),
            html.H2("Paths"),
            _field(
                "Path of",
                dcc.RadioItems(
                    id=ID.PATH_MODE,
                    options=[{"label": " the models below", "value": "models"}, {"label": " the model over training", "value": "training"}],
                    value=view.path_mode,
                ),
                "Over training: the chosen nodes at each epoch of the model's training history.",
            ),
            _field("Models in the path", dcc.Checklist(id=ID.PATH_MODELS, options=models, value=list(view.path_models))),
            *_presets(engine),
            _field(
                "RDMs inside the path",
                dcc.Dropdown(id=ID.PATH_RDM, options=[{"label": _RDM_NAMES[m], "value": m} for m in RDM_METHODS], value=view.path_rdm, clearable=False),
            ),
            _field(
                "RDM comparison (as an angle, rad)",
                dcc.RadioItems(id=ID.COMPARE, options=_compare_options(), value=view.compare, className="compare-choices"),
            ),
            _field(
                "Reference landmarks (besides labels)",
                dcc.Checklist(id=ID.LANDMARKS, options=[{"label": _LANDMARK_NAMES[m], "value": m} for m in LANDMARK_CHOICES], value=list(view.landmarks)),
            ),
            _hypothesis_editor(engine, view),
            _field(
                "Side by side (two or three)",
                dcc.Checklist(
                    id=ID.SURVIVE,
                    options=[{"label": f" {COMPARE_LABELS[c]}", "value": c} for c in SURVIVE_COMPARISONS],
                    value=list(view.survive),
                ),
            ),
            html.Hr(),
            _field(
                "Figure downloads (camera button)",
                dcc.RadioItems(id=ID.IMAGE_FORMAT, options=[{"label": f" {f.upper()}", "value": f} for f in IMAGE_FORMATS], value="png", inline=True),
            ),
            html.Button("Download this view (.npz)", id=ID.DOWNLOAD_BUTTON, className="button primary", n_clicks=0),
            _progress(DOWNLOAD_JOB),
            _message(ID.DOWNLOAD_MESSAGE),
            dcc.Download(id=ID.DOWNLOAD),
        ],
    )


def _probe_panel() -> list[Any]:
    """The live probe: a canvas to draw on (``assets/probe.js``), an upload, what the model sees, and three figures."""
    return [
        html.Div(
            className="probe-input",
            children=[
                html.Div(
                    className="probe-draw",
                    children=[
                        html.Label("Draw with the mouse (or a finger)", className="field-label"),
                        html.Canvas(id=ID.PROBE_CANVAS, width=280, height=280, className="probe-canvas"),
                        html.Div(
                            className="probe-buttons",
                            children=[
                                html.Button("clear", id=ID.PROBE_CLEAR, className="button", n_clicks=0),
                                dcc.Upload(
                                    html.Button("…or upload a PNG/JPEG", className="button"),
                                    id=ID.PROBE_UPLOAD,
                                    accept="image/png,image/jpeg",
                                    max_size=PROBE_LIMITS.max_bytes,
                                    multiple=False,
                                ),
                            ],
                        ),
                    ],
                ),
                html.Div(
                    className="probe-seen",
                    children=[
                        html.Label("What the model sees", className="field-label"),
                        html.Img(id=ID.PROBE_SEEN, className="probe-seen-image", alt="your image, prepared like the dataset's"),
                        html.Div(
                            "Drawn or uploaded images are prepared like the dataset's images (ink made bright, fitted to the dataset's box, "
                            "centred, normalised with its mean and std).",
                            id=ID.PROBE_NOTE,
                            className="field-hint",
                        ),
                        html.Div(
                            "The sidebar's model, nodes, dissimilarity, embedding methods and images per class (embeddings) apply here.",
                            className="field-hint",
                        ),
                    ],
                ),
            ],
        ),
        _message(ID.PROBE_UPLOAD_MESSAGE),
        _message(ID.PROBE_MESSAGE),
        _graph(ID.PROBE_PROBS, 320),
        _graph(ID.PROBE_EMBED, 500),
        _graph(ID.PROBE_ROWS, 300),
    ]


def _tabs(engine: Engine, view: View) -> dcc.Tabs:
    pairs = node_pairs(engine)
    return dcc.Tabs(
        id=ID.TAB,
        value=view.tab,
        className="tabs",
        children=[
            dcc.Tab(
                label="RDMs",
                value="rdms",
                children=[
                    _message(ID.RDM_MESSAGE),
                    _progress(RDM_JOB),
                    _graph(ID.RDM_GRID, 380),
                    _graph(ID.RDM_SLIDER, 640),
                    html.H3("Difference RDM"),
                    html.Div(
                        className="diff-controls",
                        children=[
                            _field("A (model / node)", dcc.Dropdown(id=ID.DIFF_A, options=pairs, value=view.diff_a or None, placeholder="choose A")),
                            _field("B (model / node)", dcc.Dropdown(id=ID.DIFF_B, options=pairs, value=view.diff_b or None, placeholder="choose B")),
                        ],
                    ),
                    _message(ID.DIFF_MESSAGE),
                    _progress(DIFF_JOB),
                    _graph(ID.DIFF_GRAPH, 200),
                ],
            ),
            dcc.Tab(
                label="Embeddings",
                value="embeddings",
                children=[
                    _message(ID.EMBED_MESSAGE),
                    _progress(EMBED_JOB),
                    _point_tools(engine, view),
                    _graph(ID.EMBED_GRID, 600),
                    _graph(ID.EMBED_ANIM, 620),
                    _graph(ID.EMBED_SHEPARD, 300),
                ],
            ),
            dcc.Tab(
                label="Representational paths",
                value="paths",
                children=[
                    _message(ID.PATH_MESSAGE),
                    _progress(PATH_JOB),
                    html.Div(id=ID.PATH_NOTE, className="field-hint", role="status"),
                    _graph(ID.PATH_GRAPH, 620),
                    _graph(ID.PATH_LABELS_GRAPH, 420),
                    _message(ID.SURVIVE_MESSAGE),
                    _graph(ID.SURVIVE_GRAPH, 480),
                    _graph(ID.PATH_SHEPARD_GRAPH, 420),
                ],
            ),
            dcc.Tab(
                label="Models",
                value="models",
                children=[
                    _message(ID.MODELS_MESSAGE),
                    html.Div(id=ID.MODELS_TABLE),
                    _message(ID.METRICS_MESSAGE),
                    _progress(METRICS_JOB),
                    _graph(ID.METRICS_GRAPH, 560),
                    html.H3("Models side by side"),
                    _message(ID.SIDE_MESSAGE),
                    _progress(SIDE_JOB),
                    _graph(ID.SIDE_GRAPH, 600),
                ],
            ),
            dcc.Tab(label="Live probe", value="probe", children=_probe_panel()),
            dcc.Tab(label="Glossary", value="glossary", children=[glossary_panel()]),
        ],
    )


#: The keys assets/shortcuts.js answers, as the page lists them.
SHORTCUTS = (("Space", "play / pause"), ("← →", "previous / next node"), ("T", "next tab"), ("Esc", "leave presentation"))


def _mode_switch(view: View) -> html.Div:
    """Explore / present (projector) switch, and the keyboard shortcuts (shown in presentation mode)."""
    keys = [html.Span([html.Kbd(k), f" {what}"], className="shortcut") for k, what in SHORTCUTS]
    return html.Div(
        className="mode-switch",
        children=[
            dcc.RadioItems(
                id=ID.MODE,
                options=[{"label": " explore", "value": "explore"}, {"label": " present (projector)", "value": "present"}],
                value=view.mode,
                inline=True,
            ),
            html.Div(keys, id=ID.SHORTCUTS, className="shortcuts", title="keyboard shortcuts"),
        ],
    )


def build_layout(engine: Engine, view: View) -> html.Div:
    """The whole page for ``engine``'s models, starting at ``view``."""
    refused = [html.Div(f"Model {m} was not loaded: {why}", className="message error") for m, why in engine.load_errors.items()]
    datasets = list(dict.fromkeys(engine.dataset_of(m) for m in engine.model_ids))
    credits = [c for c in (d.credit for d in datasets) if c]  # a dataset descriptor may carry its licence line
    return html.Div(
        className="page",
        children=[
            dcc.Location(id=ID.URL, refresh=False),
            dcc.Store(id=ID.SELECTION, data=[]),
            dcc.Store(id=ID.VIEW, data=None),
            dcc.Store(id=ID.PROBE_IMAGE, data=None),
            dcc.Store(id=ID.GRAPH_CONFIGS, data=None),
            dcc.Store(id=ID.HIGHLIGHT, data=[]),
            dcc.Store(id=ID.GROUP, data=None),
            dcc.Store(id=ID.VIEWPORT, data=None),
            *(dcc.Store(id=i, data=None) for job in JOBS.values() for i in (job.request, job.abandon)),
            html.Header(
                className="header",
                children=[
                    html.H1("repgeom"),
                    html.Span(
                        f"representational geometry of {' and '.join(d.name for d in datasets)} networks, layer by layer and step by step", className="subtitle"
                    ),
                    _mode_switch(view),
                ],
            ),
            html.Div(id=ID.GLOBAL_MESSAGE, className="global-message", children=refused),
            html.Div(
                className="body",
                children=[
                    _sidebar(engine, view),
                    html.Main(className="main", children=[_tabs(engine, view)]),
                    html.Aside(
                        className="inspector",
                        children=[
                            html.H2("Hover"),
                            html.Div(
                                id=ID.HOVER_PANEL,
                                className="hover-panel",
                                children=html.Div("Hover over an RDM cell or a point to see the images.", className="field-hint"),
                            ),
                            html.H2("Nearest neighbours"),
                            html.Div(
                                id=ID.NEIGHBOURS_PANEL,
                                children=html.Div(
                                    "Click a point of an embedding to list its nearest neighbours in feature space and on the plot.",
                                    className="field-hint",
                                ),
                            ),
                            html.H2("Selected pair"),
                            html.Div(
                                "Click an RDM cell, or two points, to follow a pair through the nodes (a cell of a block-mean map selects its block).",
                                className="field-hint",
                            ),
                            _message(ID.PAIR_MESSAGE),
                            html.Div(id=ID.PAIR_BLOCK, className="pair-block"),
                            figure_note(ID.PAIR_GRAPH),
                            dcc.Graph(id=ID.PAIR_GRAPH, config=_GRAPH_CONFIG, style={"height": "340px"}),
                            html.Button("clear selection", id=ID.CLEAR_SELECTION, className="button", n_clicks=0),
                        ],
                    ),
                ],
            ),
            html.Footer(
                " ".join([*credits, "Views are kept in the address bar: copy it to share."]),
                className="footer",
            ),
        ],
    )

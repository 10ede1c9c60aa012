"""Every component id in the dashboard, in one place.

Ids are plain strings grouped by role; a repeated component (one button per preset) has a
dict id ``{"type": ..., "index": i}`` made by a function here. Nothing else in the code
spells an id.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "CONTROL_IDS", "DIFF_JOB", "DOWNLOAD_JOB", "EMBED_JOB", "GRAPH_IDS", "ID", "JOBS",
    "METRICS_JOB", "PATH_JOB", "RDM_JOB", "SIDE_JOB", "JobIds", "note_id", "preset_id",
]


class ID:
    """Component ids."""

    # routing and state
    URL = "url"
    VIEW = "view"
    SELECTION = "selection"
    GLOBAL_MESSAGE = "global-message"
    # controls
    TAB = "tab"
    MODEL = "model"
    NODES = "nodes"
    N_RDM = "n-rdm"
    N_EMBED = "n-embed"
    CONDITION = "condition"
    EPSILON = "epsilon"
    ATTACK_MODEL = "attack-model"
    RDM_METHOD = "rdm-method"
    NORMALISE = "normalise"
    COLORSCALE = "colorscale"
    EMBED_METHODS = "embed-methods"
    ANIM_METHOD = "anim-method"
    PERPLEXITY = "perplexity"
    PATH_MODELS = "path-models"
    PATH_RDM = "path-rdm"
    COMPARE = "compare"
    LANDMARKS = "landmarks"
    HYPOTHESES = "hypotheses"
    HYPOTHESIS_NAME = "hypothesis-name"
    HYPOTHESIS_GROUPS = "hypothesis-groups"
    HYPOTHESIS_ADD = "hypothesis-add"
    SURVIVE = "survive"
    PATH_MODE = "path-mode"
    ANIM_SCALE = "anim-scale"
    DIFF_A = "diff-a"
    DIFF_B = "diff-b"
    NODES_HINT = "nodes-hint"
    #: the ``type`` of the preset buttons' dict ids (see :func:`preset_id`)
    PRESET = "preset"
    #: the ``type`` of the figures' ⓘ notes' dict ids (see :func:`note_id`)
    FIGURE_NOTE = "figure-note"
    GLOSSARY = "glossary"
    # views
    RDM_GRID = "rdm-grid"
    RDM_SLIDER = "rdm-slider"
    RDM_MESSAGE = "rdm-message"
    EMBED_GRID = "embed-grid"
    EMBED_ANIM = "embed-anim"
    EMBED_MESSAGE = "embed-message"
    EMBED_REQUEST = "embed-request"
    EMBED_BUSY = "embed-busy"
    EMBED_PROGRESS = "embed-progress"
    EMBED_PROGRESS_TEXT = "embed-progress-text"
    EMBED_CANCEL = "embed-cancel"
    PATH_GRAPH = "path-graph"
    PATH_MESSAGE = "path-message"
    PATH_NOTE = "path-note"
    PATH_LABELS_GRAPH = "path-labels-graph"
    PATH_SHEPARD_GRAPH = "path-shepard-graph"
    SURVIVE_GRAPH = "survive-graph"
    SURVIVE_MESSAGE = "survive-message"
    EMBED_SHEPARD = "embed-shepard"
    DIFF_GRAPH = "diff-graph"
    DIFF_MESSAGE = "diff-message"
    METRICS_GRAPH = "metrics-graph"
    METRICS_MESSAGE = "metrics-message"
    MODELS_TABLE = "models-table"
    MODELS_MESSAGE = "models-message"
    SIDE_GRAPH = "side-graph"
    PROBE_CANVAS = "probe-canvas"
    PROBE_CLEAR = "probe-clear"
    PROBE_UPLOAD = "probe-upload"
    PROBE_IMAGE = "probe-image"
    PROBE_SEEN = "probe-seen"
    PROBE_NOTE = "probe-note"
    PROBE_MESSAGE = "probe-message"
    PROBE_UPLOAD_MESSAGE = "probe-upload-message"
    PROBE_PROBS = "probe-probs"
    PROBE_EMBED = "probe-embed"
    PROBE_ROWS = "probe-rows"
    SIDE_MESSAGE = "side-message"
    HOVER_PANEL = "hover-panel"
    # point exploration in the embeddings
    POINT_SEARCH = "point-search"
    POINT_SEARCH_MESSAGE = "point-search-message"
    HIGHLIGHT = "highlight"
    GROUP = "group"
    GROUP_MESSAGE = "group-message"
    GROUP_RESET = "group-reset"
    NEIGHBOURS_PANEL = "neighbours-panel"
    PAIR_GRAPH = "pair-graph"
    PAIR_MESSAGE = "pair-message"
    PAIR_BLOCK = "pair-block"
    CLEAR_SELECTION = "clear-selection"
    DOWNLOAD_BUTTON = "download-button"
    DOWNLOAD = "download"
    DOWNLOAD_MESSAGE = "download-message"
    IMAGE_FORMAT = "image-format"
    MODE = "mode"
    SHORTCUTS = "shortcuts"
    GRAPH_CONFIGS = "graph-configs"
    #: the browser window's size, bucketed (see :mod:`repgeom.ui.viewport`)
    VIEWPORT = "viewport"


@dataclass(frozen=True)
class JobIds:
    """The components around one view's background job (see :func:`_job_ids` for their names).

    Attributes:
        request: store: what the job computes (set by the view's gate; a change starts the job).
        abandon: store: set when the gate answered directly, so that a job still running is cancelled.
        busy: the progress panel, shown while the job runs.
        progress: its ``<progress>`` bar.
        text: its text (what is being computed).
        cancel: its Cancel button.
        notice: the panel shown after Cancel.
        notice_text: what the notice says.
        again: the notice's "Compute again" button.
    """

    request: str
    abandon: str
    busy: str
    progress: str
    text: str
    cancel: str
    notice: str
    notice_text: str
    again: str


def _job_ids(prefix: str) -> JobIds:
    return JobIds(*(f"{prefix}-{part}" for part in ("request", "abandon", "busy", "progress", "progress-text", "cancel", "notice", "notice-text", "again")))


#: The embeddings tab's job (its ids are also ``ID.EMBED_REQUEST`` ...).
EMBED_JOB = _job_ids("embed")
#: The paths tab's job (the path, its companions and the side-by-side figure).
PATH_JOB = _job_ids("path")
#: The RDM tab's job (large stimulus sets).
RDM_JOB = _job_ids("rdm")
#: The ``.npz`` download's job.
DOWNLOAD_JOB = _job_ids("download")
#: The RDM tab's difference RDM (its bootstrap takes seconds).
DIFF_JOB = _job_ids("diff")
#: The models tab's per-node metrics of every model (every node's RDM).
METRICS_JOB = _job_ids("metrics")
#: The models tab's models side by side (up to four models' RDMs at once).
SIDE_JOB = _job_ids("side")
#: Every job by the name the page shows it under.
JOBS = {"embeddings": EMBED_JOB, "paths": PATH_JOB, "RDMs": RDM_JOB, "download": DOWNLOAD_JOB, "difference RDM": DIFF_JOB, "metrics": METRICS_JOB,
        "side-by-side": SIDE_JOB}


def preset_id(index: int) -> dict[str, str | int]:
    """The id of the button for the manifest's ``index``-th preset."""
    return {"type": ID.PRESET, "index": index}


def note_id(graph_id: str) -> dict[str, str]:
    """The id of the ⓘ note beside the figure ``graph_id``."""
    return {"type": ID.FIGURE_NOTE, "index": graph_id}


#: Every figure on the page (their toolbar's image format follows ``ID.IMAGE_FORMAT``).
GRAPH_IDS = (
    ID.RDM_GRID,
    ID.RDM_SLIDER,
    ID.DIFF_GRAPH,
    ID.EMBED_GRID,
    ID.EMBED_ANIM,
    ID.EMBED_SHEPARD,
    ID.PATH_GRAPH,
    ID.PATH_LABELS_GRAPH,
    ID.PATH_SHEPARD_GRAPH,
    ID.SURVIVE_GRAPH,
    ID.METRICS_GRAPH,
    ID.SIDE_GRAPH,
    ID.PROBE_PROBS,
    ID.PROBE_EMBED,
    ID.PROBE_ROWS,
    ID.PAIR_GRAPH,
)


#: View field -> the control that holds it (the order of the URL sync callback's arguments).
CONTROL_IDS: dict[str, str] = {
    "tab": ID.TAB,
    "model": ID.MODEL,
    "nodes": ID.NODES,
    "n_rdm": ID.N_RDM,
    "n_embed": ID.N_EMBED,
    "condition": ID.CONDITION,
    "epsilon": ID.EPSILON,
    "attack_model": ID.ATTACK_MODEL,
    "rdm_method": ID.RDM_METHOD,
    "normalise": ID.NORMALISE,
    "colorscale": ID.COLORSCALE,
    "embed_methods": ID.EMBED_METHODS,
    "anim_method": ID.ANIM_METHOD,
    "perplexity": ID.PERPLEXITY,
    "path_models": ID.PATH_MODELS,
    "path_rdm": ID.PATH_RDM,
    "compare": ID.COMPARE,
    "landmarks": ID.LANDMARKS,
    "hypotheses": ID.HYPOTHESES,
    "survive": ID.SURVIVE,
    "path_mode": ID.PATH_MODE,
    "anim_scale": ID.ANIM_SCALE,
    "diff_a": ID.DIFF_A,
    "diff_b": ID.DIFF_B,
    "mode": ID.MODE,
}

"""RDM heat maps: the seed's row of panels, and one large map with a node slider."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import CONTROLS_PAD, DEFAULT_FIGURE_PX, METRIC_LABELS, base_layout, frame_slider, grid_fit, play_menu, wrap_label

if TYPE_CHECKING:
    from ..core.rdm import RDM

__all__ = ["COLORSCALES", "NORMALISE", "STIMULUS_AXIS", "class_ticks", "difference_figure", "rdm_grid", "rdm_models", "rdm_slider"]

#: Colour scales offered; "magma_r"-like first (the seed: small dissimilarity is bright).
COLORSCALES = ("Magma_r", "Viridis_r", "Greys", "Cividis_r")
NORMALISE = ("per", "shared")
#: At most this many class names are written along an axis; with more classes every k-th is.
MAX_TICK_LABELS = 20
#: The title of an RDM's rows and columns.
STIMULUS_AXIS = "stimulus (sorted by class)"
#: The same, short enough for a grid panel's side at a projector's 18 px type.
_GRID_AXIS = "stimulus (by class)"


def class_ticks(
    labels: np.ndarray, class_names: Sequence[str] | None = None, max_labels: int = MAX_TICK_LABELS
) -> tuple[list[float], list[str], list[float]]:
    """Tick positions at class-block centres, their class names, and block boundaries.

    Args:
        labels: (N,) class labels, sorted so that each class is one block.
        class_names: the name of each label (default: the label as text). With more than
            ``max_labels`` blocks, only every k-th block's name is written (the
            others get an empty tick) so the names stay readable.
        max_labels: the most names written along the axis (default :data:`MAX_TICK_LABELS`).

    Returns:
        ``(centres, texts, boundaries)``: one centre and text per block, and the
        positions between blocks (half-way between two stimuli) for grid lines.
    """
    labels = np.asarray(labels)
    change = np.flatnonzero(np.diff(labels)) + 1
    starts = np.concatenate([[0], change]).astype(int)
    ends = np.concatenate([change, [len(labels)]]).astype(int)
    centres = [(s + e - 1) / 2 for s, e in zip(starts, ends, strict=False)]
    names = [str(labels[s]) if class_names is None else str(class_names[int(labels[s])]) for s in starts]
    every = -(-len(names) // max(int(max_labels), 1))
    texts = [n if k % every == 0 else "" for k, n in enumerate(names)]
    return centres, texts, [float(b) - 0.5 for b in change]


def _scaled(rdms: Sequence[RDM], normalise: str) -> tuple[list[np.ndarray], float, float, str]:
    method = rdms[0].method
    if normalise == "per":  # the seed: each RDM divided by its own max
        mats = [r.matrix / r.matrix.max() if r.matrix.max() > 0 else r.matrix for r in rdms]
        return mats, 0.0, 1.0, f"{METRIC_LABELS[method]}<br>÷ max of each RDM"
    lo = min(float(r.matrix.min()) for r in rdms)
    hi = max(float(r.matrix.max()) for r in rdms)
    return [r.matrix for r in rdms], lo, hi if hi > lo else lo + 1.0, METRIC_LABELS[method]


def _grid_shapes(boundaries: Sequence[float], n: int, xref: str, yref: str) -> list[dict]:
    line = {"color": "rgba(255,255,255,0.55)", "width": 1}
    shapes = []
    for b in boundaries:
        shapes.append({"type": "line", "x0": b, "x1": b, "y0": -0.5, "y1": n - 0.5, "xref": xref, "yref": yref, "line": line})
        shapes.append({"type": "line", "y0": b, "y1": b, "x0": -0.5, "x1": n - 0.5, "xref": xref, "yref": yref, "line": line})
    return shapes


def _selection_shapes(selection: Sequence[int], xref: str, yref: str) -> list[dict]:
    if len(selection) < 2:
        return []
    i, j = int(selection[-2]), int(selection[-1])
    style = {"color": "#00E5FF", "width": 2}
    return [
        {"type": "rect", "x0": b - 0.5, "x1": b + 0.5, "y0": a - 0.5, "y1": a + 0.5, "xref": xref, "yref": yref, "line": style} for a, b in ((i, j), (j, i))
    ]


def _heatmap(mat: np.ndarray, coloraxis: str, name: str, scaled: bool, binned: bool, about: str = "") -> go.Heatmap:
    # float32 is plenty for colour and a 4-digit hover, and halves the payload; the raw
    # value of a scaled cell is looked up by the server for the hover panel
    what = "block" if binned else "stimulus"
    value = "%{z:.4g} of the max" if scaled else "dissimilarity %{z:.4g}"
    node = f"<br><i>{about}</i>" if about else ""  # the node in plain words
    return go.Heatmap(
        z=np.asarray(mat, dtype=np.float32),
        coloraxis=coloraxis,
        name=name,
        hovertemplate=f"{what} %{{y}} × %{{x}}<br>{value}{node}<extra>{name}</extra>",
    )


#: Pixels of a grid's width that are not panels: the margins, the first column's class names and the colour bar.
_GRID_CHROME_X = 200
#: Pixels between two columns of a grid.
_GRID_GAP_X = 20
#: Pixels of a grid panel's side per class name written along it (room for a projector's 18 px type).
_TICK_PX = 16
#: Pixels of a grid panel's side per character of its title (node names are broken into lines to fit).
_TITLE_CHAR_PX = 10
#: The smallest panel side that holds the x-axis title at a projector's 18 px: smaller panels
#: (a grid fitted into a small screen) title only the first column's.
_AXIS_TITLE_MIN_PX = 170


def _grid_geometry(k: int, width: int, height: int | None, top: int, bottom: int, gap: int) -> tuple[int, int, int, float, float, int]:
    """``(rows, cols, panel side, horizontal spacing, vertical spacing, figure height)`` of ``k`` panels wrapped into rows.

    The columns and the panel side come from :func:`~.style.grid_fit` for a figure
    ``width`` px wide (and ``height`` px high, when it must fit one); every row is one
    panel side high whatever the number of rows, and ``gap`` pixels separate rows (room
    for the next row's titles).
    """
    fit = grid_fit(k, width, _GRID_CHROME_X, _GRID_GAP_X, height, top + bottom, gap)
    plot = fit.rows * fit.side + (fit.rows - 1) * gap
    across = max(width - _GRID_CHROME_X, 1)
    hspace = min(_GRID_GAP_X / across, 0.5 / fit.cols) if fit.cols > 1 else 0.1
    return fit.rows, fit.cols, fit.side, hspace, (gap / plot if fit.rows > 1 else 0.0), plot + top + bottom


def rdm_grid(
    rdms: Sequence[RDM],
    normalise: str = "per",
    colorscale: str = "Magma_r",
    selection: Sequence[int] = (),
    title: str | None = None,
    class_names: Sequence[str] | None = None,
    descriptions: Mapping[str, str] | None = None,
    width: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """Square RDM heat maps, one per node (the seed's ``plot_rdms``), wrapped into rows.

    As many panels share a row as ``width`` allows at a readable side
    (:data:`~.style.MIN_PANEL_PX`; at most :data:`~.style.MAX_GRID_COLS`), so every panel
    keeps a readable size at any node count; each row has the same height and the figure
    grows with the rows. Given ``height``, the panels are instead sized (and the columns
    chosen) so that the whole grid fits into it (a projector).

    Args:
        rdms: RDMs of one stimulus set, in display order.
        normalise: ``"per"`` (each RDM ÷ its max, as the seed) or ``"shared"`` (one scale).
        colorscale: a Plotly colour scale name.
        selection: stimulus row indices; the last two are outlined as a pair.
        title: figure title.
        class_names: the name of each label, written at class-block centres (default: the label).
        descriptions: node -> plain-language description, shown on hover.
        width: the figure's width on the page in CSS px (default
            :data:`~.style.DEFAULT_FIGURE_PX`, the main column at 1366 px).
        height: the height (CSS px) the whole figure must fit into, or ``None`` to grow with its rows.

    Returns:
        A figure with one ``Heatmap`` per RDM sharing one colour axis, rows from the top,
        class names at class-block centres (down the first column, and under the lowest
        panel of each column) and class-block grid lines.
    """
    k = len(rdms)
    top, bottom, gap = 90, 60, 48
    rows, cols, side, hspace, vspace, height = _grid_geometry(k, width or DEFAULT_FIGURE_PX, height, top, bottom, gap)
    titles = [wrap_label(r.node, min(18, max(8, side // _TITLE_CHAR_PX))) for r in rdms] + [""] * (rows * cols - k)
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles, horizontal_spacing=hspace, vertical_spacing=vspace)
    mats, lo, hi, cbar = _scaled(rdms, normalise)
    n = rdms[0].matrix.shape[0]
    centres, texts, bounds = class_ticks(rdms[0].labels, class_names, min(MAX_TICK_LABELS, side // _TICK_PX))
    shapes: list[dict] = []
    for p in range(rows * cols):
        row, col = p // cols + 1, p % cols + 1
        sfx = "" if p == 0 else str(p + 1)
        if p >= k:  # the last row's empty cells
            fig.update_xaxes(visible=False, row=row, col=col)
            fig.update_yaxes(visible=False, row=row, col=col)
            continue
        r, mat = rdms[p], mats[p]
        about = (descriptions or {}).get(r.node, "")
        fig.add_trace(_heatmap(mat, "coloraxis", r.name, normalise == "per", r.bins is not None, about), row=row, col=col)
        shapes += _grid_shapes(bounds, n, f"x{sfx}", f"y{sfx}")
        shapes += _selection_shapes(selection, f"x{sfx}", f"y{sfx}")
        lowest = p + cols >= k  # no panel below this one: its class names and axis title do not run into another's title
        fig.update_xaxes(
            tickvals=centres,
            ticktext=texts if lowest else [""] * len(texts),
            title={"text": _GRID_AXIS if lowest and (col == 1 or side >= _AXIS_TITLE_MIN_PX) else "", "font": {"size": 11}},
            showgrid=False,
            zeroline=False,
            constrain="domain",
            row=row,
            col=col,
        )
        fig.update_yaxes(  # the rows of every panel are the first panel's: named once, at the left of each row
            tickvals=centres,
            ticktext=texts,
            showticklabels=col == 1,
            title={"text": _GRID_AXIS if col == 1 else "", "font": {"size": 11}},
            automargin=True,
            autorange="reversed",
            showgrid=False,
            zeroline=False,
            scaleanchor=f"x{sfx}",
            constrain="domain",
            constraintoward="top",
            row=row,
            col=col,
        )
    fig.update_annotations(font={"size": 14})
    fig.update_layout(
        **base_layout(
            title=title or f"RDMs of {rdms[0].model} ({n} stimuli) · {METRIC_LABELS[rdms[0].method]}",
            coloraxis={
                "colorscale": colorscale,
                "cmin": lo,
                "cmax": hi,
                "colorbar": {"title": {"text": cbar, "side": "right"}, "len": min(1.0, 420 / (height - top - bottom)), "y": 1, "yanchor": "top"},
            },
            shapes=shapes,
            height=height,
            margin={"l": 60, "r": 30, "t": top, "b": bottom},
        )
    )
    return fig


def rdm_models(
    rows: Sequence[Sequence[RDM]],
    colorscale: str = "Magma_r",
    title: str | None = None,
    class_names: Sequence[str] | None = None,
) -> go.Figure:
    """Several models' RDM grids, one row per model, on one shared colour scale.

    Every panel shows raw dissimilarities (never ÷ its own max) on one colour axis whose
    ``cmin``/``cmax`` are the smallest and largest value over all panels, so the same
    colour means the same dissimilarity in every model and one colour bar serves them all.

    Args:
        rows: per model, its RDMs (one stimulus set and method for all), in display order.
        colorscale: a Plotly colour scale name.
        title: figure title.
        class_names: the name of each label, written at class-block centres.

    Returns:
        A figure with one ``Heatmap`` per RDM, all on ``coloraxis``; each panel titled by
        its node, each row's model named on its first panel's y axis.
    """
    rows = [list(r) for r in rows if r]
    if not rows:
        raise ValueError("rdm_models needs at least one model's RDMs")
    cols = max(len(r) for r in rows)
    # A panel is titled by its node alone (a narrow panel has room for little more); each row's
    # model names its first panel's y axis.
    titles = [r[c].node if c < len(r) else "" for r in rows for c in range(cols)]
    fig = make_subplots(rows=len(rows), cols=cols, subplot_titles=titles, horizontal_spacing=0.03 if cols > 1 else 0.1, vertical_spacing=0.12)
    for annotation in fig.layout.annotations:
        annotation.font = {"size": 11}
    every = [rdm for r in rows for rdm in r]
    lo = min(float(r.matrix.min()) for r in every)
    hi = max(float(r.matrix.max()) for r in every)
    hi = hi if hi > lo else lo + 1.0
    method = every[0].method
    shapes: list[dict] = []
    for i, row in enumerate(rows, start=1):
        for c, r in enumerate(row, start=1):
            n = r.matrix.shape[0]
            centres, texts, bounds = class_ticks(r.labels, class_names)
            fig.add_trace(_heatmap(r.matrix, "coloraxis", r.name, False, r.bins is not None), row=i, col=c)
            k = (i - 1) * cols + c
            sfx = "" if k == 1 else str(k)
            shapes += _grid_shapes(bounds, n, f"x{sfx}", f"y{sfx}")
            fig.update_xaxes(
                tickvals=centres,
                ticktext=texts,
                title={"text": STIMULUS_AXIS if c == 1 else "stimulus by class", "font": {"size": 11}},  # in full once a row: no room in narrow panels
                showgrid=False,
                zeroline=False,
                constrain="domain",
                row=i,
                col=c,
            )
            fig.update_yaxes(  # a row's panels share the rows of its first panel: named once, at the left
                tickvals=centres,
                ticktext=texts,
                showticklabels=c == 1,
                title={"text": f"<b>{r.model}</b><br>{STIMULUS_AXIS}" if c == 1 else "", "font": {"size": 11}},
                autorange="reversed",
                showgrid=False,
                zeroline=False,
                scaleanchor=f"x{sfx}",
                constrain="domain",
                row=i,
                col=c,
            )
    models = [r[0].model for r in rows]
    fig.update_layout(
        **base_layout(
            title=title or f"RDMs of {' and '.join(models)} on one colour scale · {METRIC_LABELS[method]}",
            coloraxis={"colorscale": colorscale, "cmin": lo, "cmax": hi, "colorbar": {"title": {"text": METRIC_LABELS[method], "side": "right"}}},
            shapes=shapes,
            height=80 + len(rows) * min(420, 120 + int(1000 / max(cols, 1))),
        )
    )
    return fig


def _slider_title(r: RDM, about: str = "") -> str:
    node = f" · {about}" if about else ""
    return f"{r.model} · {r.node}<br><sup>{METRIC_LABELS[r.method]}{node}</sup>"


def rdm_slider(
    rdms: Sequence[RDM],
    normalise: str = "per",
    colorscale: str = "Magma_r",
    selection: Sequence[int] = (),
    active: int = 0,
    class_names: Sequence[str] | None = None,
    descriptions: Mapping[str, str] | None = None,
) -> go.Figure:
    """One large RDM heat map with a slider (and play button) that steps through the nodes.

    The frames travel with the figure, so moving the slider needs no server round trip.
    Arguments as :func:`rdm_grid`; ``active`` is the node shown first; each frame's
    title and hover give its node's description.
    """
    about = descriptions or {}
    mats, lo, hi, cbar = _scaled(rdms, normalise)
    n = rdms[0].matrix.shape[0]
    centres, texts, bounds = class_ticks(rdms[0].labels, class_names)
    active = max(0, min(active, len(rdms) - 1))
    scaled, binned = normalise == "per", rdms[0].bins is not None
    first = rdms[active]
    fig = go.Figure(data=[_heatmap(mats[active], "coloraxis", first.name, scaled, binned, about.get(first.node, ""))])
    fig.frames = [
        go.Frame(
            name=r.node,
            data=[_heatmap(m, "coloraxis", r.name, scaled, binned, about.get(r.node, ""))],
            layout={"title": {"text": _slider_title(r, about.get(r.node, ""))}},
        )
        for r, m in zip(rdms, mats, strict=False)
    ]
    fig.update_layout(
        **base_layout(
            title=_slider_title(first, about.get(first.node, "")),
            coloraxis={"colorscale": colorscale, "cmin": lo, "cmax": hi, "colorbar": {"title": {"text": cbar, "side": "right"}}},
            shapes=_grid_shapes(bounds, n, "x", "y") + _selection_shapes(selection, "x", "y"),
            height=760,
            sliders=[frame_slider([r.node for r in rdms], active, "node: ", lead=0.0, pad_top=CONTROLS_PAD[1])],
            updatemenus=[play_menu(500, transition=0, pad_top=CONTROLS_PAD[0])],
            margin={"l": 60, "r": 30, "t": 70, "b": CONTROLS_PAD[1] + 80},
        )
    )
    fig.update_xaxes(tickvals=centres, ticktext=texts, title_text=STIMULUS_AXIS, showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(
        tickvals=centres, ticktext=texts, title_text=STIMULUS_AXIS, autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x", constrain="domain"
    )
    return fig


def difference_figure(
    diff: np.ndarray,
    mask: np.ndarray,
    labels: np.ndarray,
    a: str,
    b: str,
    method: str,
    n_boot: int,
    class_names: Sequence[str] | None = None,
) -> go.Figure:
    """A difference RDM (rank of A minus rank of B) on a diverging scale, unreliable cells grey.

    Args:
        diff: (N, N) rank-transformed A minus B, in [-1, 1].
        mask: (N, N) True where the bootstrap confirms the cell's sign.
        labels: (N,) class labels, sorted into blocks.
        a: what A is (``model/node``).
        b: what B is.
        method: the RDM method of both.
        n_boot: bootstrap samples behind ``mask``.
        class_names: the name of each label.

    Returns:
        One heat map: reliable cells coloured (red: A more dissimilar), the others left
        blank over a grey background, class blocks marked by lines and named on the axes.
    """
    n = diff.shape[0]
    shown = np.where(mask, diff, np.nan).astype(np.float32)
    centres, texts, bounds = class_ticks(labels, class_names)
    line = {"color": "rgba(0,0,0,0.45)", "width": 1}
    shapes = []
    for x in bounds:
        shapes.append({"type": "line", "x0": x, "x1": x, "y0": -0.5, "y1": n - 0.5, "xref": "x", "yref": "y", "line": line})
        shapes.append({"type": "line", "y0": x, "y1": x, "x0": -0.5, "x1": n - 0.5, "xref": "x", "yref": "y", "line": line})
    reliable = float(mask[np.triu_indices(n, 1)].mean()) if n > 1 else 0.0
    fig = go.Figure(
        go.Heatmap(
            z=shown,
            colorscale="RdBu_r",
            zmin=-1,
            zmax=1,
            zmid=0,
            colorbar={"title": {"text": "rank(A) − rank(B)<br>(each RDM's ranks in [0, 1])", "side": "right"}},
            hovertemplate="stimulus %{y} × %{x}<br>rank difference %{z:.3f}<extra></extra>",
        )
    )
    fig.update_layout(
        **base_layout(
            title=f"Difference RDM<br>A = {a} minus B = {b}<br><sup>RDMs: {METRIC_LABELS.get(method, method)}, rank-transformed</sup><br><sup>grey: sign "
            f"not reliable in 95 % of {n_boot} bootstrap samples ({100 * reliable:.0f} % of cells reliable)</sup>",
            shapes=shapes,
            height=640,
            plot_bgcolor="#C8C8C8",
            margin={"l": 60, "r": 30, "t": 120, "b": 50},
        )
    )
    fig.update_xaxes(tickvals=centres, ticktext=texts, title_text=STIMULUS_AXIS, showgrid=False, zeroline=False, constrain="domain")
    fig.update_yaxes(
        tickvals=centres, ticktext=texts, title_text=STIMULUS_AXIS, autorange="reversed", showgrid=False, zeroline=False, scaleanchor="x", constrain="domain"
    )
    return fig

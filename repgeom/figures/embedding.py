"""Embedding figures: a methods × nodes grid (the seed's ``plot_dim_reduction``) and an animation.

Points are coloured by class; the class names and the images' indices come in as
arguments, so the same figures draw any dataset.

Design notes:
    Every point carries ``customdata = [image index, node, method]`` as plain JSON lists.
    Plotly encodes a numeric NumPy array as a typed array, and the browser's hover and
    click events then hold that point's row as a typed array, which Dash sends as an
    object (``{"0": ..., "1": ...}``): the server would get events without the point's
    ids. An object array (mixed ints and strings) is written as plain lists, and Plotly
    validates it at once, where a list of lists is walked item by item.
    Highlights (search matches, the selected pair) are extra ring traces that take no
    hover; an isolated group is drawn with Plotly's ``selectedpoints`` (the other points
    dimmed), in every panel and every frame alike.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import CONTROLS_PAD, DEFAULT_FIGURE_PX, STRESS_NAME, base_layout, class_colors, frame_slider, grid_fit, play_menu, wrap_label

if TYPE_CHECKING:
    from ..core.distortion import NeighbourDistortion
    from ..core.embedding import Embedding

__all__ = [
    "DIMMED_OPACITY",
    "METHOD_NAMES",
    "POINT_FIELDS",
    "axis_titles",
    "default_class_names",
    "embedding_animation",
    "embedding_grid",
    "quality_lines",
    "quality_text",
]

METHOD_NAMES = {"pca": "PCA", "mds": "MDS", "tsne": "t-SNE"}
#: What each point's ``customdata`` holds, in order (the hover and click callbacks read it back).
POINT_FIELDS = ("index", "node", "method")
#: Opacity of the points outside an isolated group.
DIMMED_OPACITY = 0.08
_SEARCH_COLOR = "#D50000"
_SELECTED_COLOR = "#00B8D4"


def quality_lines(e: Embedding, trust_k: int = 5) -> list[str]:
    """``trustworthiness (k=5) 0.93``, then ``Kruskal stress-1 0.21`` for MDS or ``perp 40`` for t-SNE.

    Args:
        e: the embedding.
        trust_k: the neighbours its trustworthiness counted (the engine's rule: 5, fewer for tiny N).

    Returns:
        One short line per measure (panel titles stack them, so none runs into another).
    """
    lines = [f"trustworthiness (k={trust_k}) {e.trustworthiness:.3f}"]
    if e.stress is not None:
        lines.append(f"{STRESS_NAME} {e.stress:.3f}")
    if e.perplexity is not None:
        lines.append(f"perp {e.perplexity:.3g}")
    return lines


def quality_text(e: Embedding, trust_k: int = 5) -> str:
    """The measures of :func:`quality_lines` on one line, separated by `` · ``."""
    return " · ".join(quality_lines(e, trust_k))


def axis_titles(e: Embedding) -> tuple[str, str]:
    """The titles of a panel's two axes: ``PC 1 (34 % var.)``, ``PC 2 (12 %)``, ``MDS dim 1``, ``t-SNE dim 2``...

    A PCA axis gives its share of the features' variance when the embedding carries it.
    MDS and t-SNE axes have no units (any rotation of the plot is as good), so they are only named.
    """
    if e.method != "pca":
        return f"{METHOD_NAMES[e.method]} dim 1", f"{METHOD_NAMES[e.method]} dim 2"
    if e.explained is None:
        return "PC 1", "PC 2"
    return f"PC 1 ({100 * e.explained[0]:.0f} % var.)", f"PC 2 ({100 * e.explained[1]:.0f} %)"


def _panel_title(e: Embedding, trust_k: int, method: bool = False) -> str:
    head = f"<b>{METHOD_NAMES[e.method]}</b> · {wrap_label(e.node)}" if method else wrap_label(e.node)
    return head + "".join(f"<br><sup>{line}</sup>" for line in quality_lines(e, trust_k))


def default_class_names(labels: np.ndarray) -> tuple[str, ...]:
    """Class names when none are given: the labels ``0..max`` as text."""
    return tuple(str(c) for c in range(int(np.max(labels)) + 1 if len(labels) else 0))


def _check_names(labels: np.ndarray, class_names: Sequence[str] | None) -> tuple[str, ...]:
    names = default_class_names(labels) if class_names is None else tuple(class_names)
    if len(labels) and not 0 <= int(np.min(labels)) <= int(np.max(labels)) < len(names):
        raise ValueError(f"labels run from {int(np.min(labels))} to {int(np.max(labels))}; {len(names)} class names given")
    return names


def _distortion_notes(d: NeighbourDistortion | None, indices: np.ndarray) -> np.ndarray:
    """Per stimulus, its stress-1 share and its nearest points on the plot (by image index), true vs plotted (feature distances)."""
    n = len(indices)
    if d is None:
        return np.full(n, "", dtype=object)
    return np.array(
        [
            f"<br>{STRESS_NAME} of this point {d.stress[i]:.3f}; nearest on the plot: "
            + ", ".join(f"#{indices[j]} plotted {p:.3g}, true {t:.3g}" for j, p, t in zip(d.neighbours[i], d.plotted[i], d.true[i], strict=True))
            for i in range(n)
        ],
        dtype=object,
    )


def _rings(coords: np.ndarray, rows: Sequence[int], name: str, color: str, size: int, show_legend: bool) -> go.BaseTraceType:
    """Open rings around ``rows`` (no hover: the point underneath answers it)."""
    sel = [int(s) for s in rows if 0 <= int(s) < len(coords)]
    return go.Scatter(
        x=coords[sel, 0] if sel else [],
        y=coords[sel, 1] if sel else [],
        mode="markers",
        marker={"size": size, "color": "rgba(0,0,0,0)", "line": {"color": color, "width": 3}},
        name=name,
        legendgroup=name,
        showlegend=show_legend and bool(sel),
        hoverinfo="skip",
    )


def _point_ids(indices: np.ndarray, node: str, method: str) -> np.ndarray:
    """``(n, 3)`` object array of ``[image index, node, method]`` rows: plain JSON lists in the figure."""
    out = np.empty((len(indices), 3), dtype=object)
    out[:, 0] = [int(i) for i in indices]
    out[:, 1] = node
    out[:, 2] = method
    return out


def _class_traces(
    e: Embedding,
    indices: np.ndarray,
    class_names: Sequence[str],
    show_legend: bool,
    selection: Sequence[int],
    distortion: NeighbourDistortion | None = None,
    highlight: Sequence[int] = (),
    group: Sequence[int] | None = None,
) -> list[go.BaseTraceType]:
    coords = e.coords
    notes = _distortion_notes(distortion, indices)
    colors = class_colors(len(class_names))
    in_group = None if group is None else np.isin(np.arange(len(coords)), np.asarray(list(group), dtype=int))
    traces: list[go.BaseTraceType] = []
    for c, name in enumerate(class_names):
        rows = np.flatnonzero(e.labels == c)
        if rows.size == 0:
            continue
        isolate = {} if in_group is None else {"selectedpoints": np.flatnonzero(in_group[rows]).tolist(), "unselected": {"marker": {"opacity": DIMMED_OPACITY}}}
        traces.append(
            go.Scatter(
                x=coords[rows, 0],
                y=coords[rows, 1],
                mode="markers",
                marker={"color": colors[c], "size": 6, "line": {"width": 0}},
                name=name,
                legendgroup=name,
                showlegend=show_legend,
                customdata=_point_ids(indices[rows], e.node, e.method),
                text=notes[rows].tolist() if distortion is not None else None,
                hovertemplate=f"class {_escape(name)}<br>image #%{{customdata[0]}} · {_escape(e.node)}"
                + ("%{text}" if distortion is not None else "")
                + "<extra></extra>",
                **isolate,
            )
        )
    traces.append(_rings(coords, highlight, "search matches", _SEARCH_COLOR, 13, show_legend))
    traces.append(_rings(coords, selection, "selected", _SELECTED_COLOR, 15, False))
    return traces


def _escape(text: str) -> str:
    """``text`` safe inside a Plotly hover template (no ``%{...}`` fields, no HTML)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("%", "&#37;")


def _square_range(coords: np.ndarray) -> list[float]:
    """The seed's square limits: centre of the overall min/max, half-width 5/8 of the span."""
    lo, hi = float(np.min(coords)), float(np.max(coords))
    centre, half = (lo + hi) / 2, max(hi - lo, 1e-9) * 5 / 8
    return [centre - half, centre + half]


def _class_legend(y: float = 0.0) -> dict:
    """A horizontal class legend under the panels (its top at paper ``y``): it wraps into lines and never needs a scrollbar."""
    return {"title": {"text": "class"}, "itemsizing": "constant", "orientation": "h", "x": 0, "xanchor": "left", "y": y, "yanchor": "top"}


def _legend_px(n_classes: int) -> int:
    """Pixels below the panels for :func:`_class_legend` (about eight classes a line at 1366 px)."""
    return 30 + 24 * -(-n_classes // 8)


#: Pixels of an embedding grid's width that are not panels: the margins, with the method names and the first column's axis titles.
_GRID_CHROME_X = 90
#: Pixels between two columns (room for the right one's y-axis title, at a projector's 18 px too).
_GRID_GAP_X = 40
#: Pixels under a panel for its x-axis title (at a projector's 18 px too).
_AXIS_TITLE_PX = 28
#: Pixels a line of a panel title takes (at a projector's 18 px too).
_TITLE_LINE_PX = 24
#: The axis titles' type size (px).
_AXIS_TITLE_FONT = 11
#: An embedding's axes: a titled frame without ticks or numbers (its coordinates have no units to read).
_BARE_AXIS = {
    "visible": True, "showticklabels": False, "ticks": "", "showgrid": False, "zeroline": False, "showline": True, "linecolor": "#d0d4da", "mirror": True,
}


def embedding_grid(
    grid: Sequence[Sequence[Embedding]],
    indices: np.ndarray,
    selection: Sequence[int] = (),
    class_names: Sequence[str] | None = None,
    distortions: Sequence[Sequence[NeighbourDistortion | None]] | None = None,
    trust_k: int = 5,
    highlight: Sequence[int] = (),
    group: Sequence[int] | None = None,
    width: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """Methods × nodes panels; points coloured by class; each panel's quality measures under its title.

    Nodes are wrapped into blocks of as many columns as ``width`` allows at a readable panel
    side (see :func:`~.style.grid_fit`); each block has one row per method (named at the
    left), so panels keep a readable size at any node count. A single node puts its methods
    side by side in one row, each panel titled with its method. Every panel's axes are
    titled (:func:`axis_titles`); the class legend runs horizontally under the panels.

    Args:
        grid: ``grid[row][col]`` embeddings; every row one method over the same nodes.
        indices: (N,) indices of the stimuli in their image set (shown on hover).
        selection: stimulus rows to ring in every panel.
        class_names: the name of each label (default: the labels as text).
        distortions: ``distortions[row][col]``: per-point distortion shown on hover (MDS), or ``None``.
        trust_k: the neighbours the trustworthiness counted (named in the panel titles).
        highlight: stimulus rows ringed as search matches in every panel.
        group: stimulus rows of an isolated group (the others dimmed in every panel), or ``None``.
        width: the figure's width on the page in CSS px (default :data:`~.style.DEFAULT_FIGURE_PX`).
        height: the height (CSS px) the whole figure must fit into, or ``None`` to grow with its rows.

    Raises:
        ValueError: when a label has no class name.
    """
    names = _check_names(grid[0][0].labels, class_names)
    n_methods, n_nodes = len(grid), len(grid[0])
    single = n_nodes == 1
    width = width or DEFAULT_FIGURE_PX
    lines = 1 + max(len(quality_lines(e, trust_k)) + wrap_label(e.node).count("<br>") for row in grid for e in row)
    gap, top, bottom = _TITLE_LINE_PX * lines + 12 + _AXIS_TITLE_PX, 66 + _TITLE_LINE_PX * lines, _legend_px(len(names)) + _AXIS_TITLE_PX
    if single:
        fit = grid_fit(n_methods, width, _GRID_CHROME_X, _GRID_GAP_X, height, top + bottom, gap)
        blocks, cols, rows, side = 1, n_methods, 1, fit.side
    else:
        fit = grid_fit(n_nodes, width, _GRID_CHROME_X, _GRID_GAP_X, height, top + bottom, gap, rows_per_block=n_methods)
        blocks, cols, side = fit.rows, fit.cols, fit.side
        rows = blocks * n_methods
    # panel (method m, node j) -> (row, col), 1-based
    place = {(m, j): (1, m + 1) if single else ((j // cols) * n_methods + m + 1, j % cols + 1) for m in range(n_methods) for j in range(n_nodes)}
    at = {rc: mj for mj, rc in place.items()}
    titles = [_panel_title(grid[at[(r, c)][0]][at[(r, c)][1]], trust_k, single) if (r, c) in at else "" for r in range(1, rows + 1) for c in range(1, cols + 1)]
    plot = rows * side + (rows - 1) * gap
    across = max(width - _GRID_CHROME_X, 1)
    fig = make_subplots(
        rows=rows,
        cols=cols,
        subplot_titles=titles,
        horizontal_spacing=min(_GRID_GAP_X / across, 0.5 / cols) if cols > 1 else 0.1,
        vertical_spacing=gap / plot if rows > 1 else 0.0,
    )
    for r in range(1, rows + 1):
        for c in range(1, cols + 1):
            fig.update_xaxes(visible=False, row=r, col=c)
            fig.update_yaxes(visible=False, row=r, col=c)
    for (m, j), (r, c) in place.items():
        e = grid[m][j]
        dist = distortions[m][j] if distortions is not None else None
        for t in _class_traces(e, indices, names, m == 0 and j == 0, selection, dist, highlight, group):
            fig.add_trace(t, row=r, col=c)
        rng = _square_range(e.coords)
        k = (r - 1) * cols + c
        x_title, y_title = axis_titles(e)
        fig.update_xaxes(
            range=rng, constrain="domain", title={"text": x_title, "font": {"size": _AXIS_TITLE_FONT}, "standoff": 6}, **_BARE_AXIS, row=r, col=c
        )
        fig.update_yaxes(
            range=rng,
            scaleanchor=f"x{'' if k == 1 else k}",
            constrain="domain",
            constraintoward="top",
            title={"text": y_title, "font": {"size": _AXIS_TITLE_FONT}, "standoff": 6},
            **_BARE_AXIS,
            row=r,
            col=c,
        )
    if not single:
        for r in range(1, rows + 1):
            y0, y1 = fig.get_subplot(r, 1).yaxis.domain
            fig.add_annotation(
                text=f"<b>{METHOD_NAMES[grid[(r - 1) % n_methods][0].method]}</b>",
                xref="paper",
                yref="paper",
                x=-30 / across,
                xanchor="right",
                y=(y0 + y1) / 2,
                textangle=-90,
                showarrow=False,
                font={"size": 14},
            )
    fig.update_layout(
        **base_layout(
            title=f"Embeddings of {grid[0][0].model} ({len(indices)} stimuli)<br><sup>from the Euclidean distances of each node's features · "
            "trustworthiness counts the k nearest neighbours kept</sup>",
            height=top + plot + bottom,
            legend=_class_legend(-_AXIS_TITLE_PX / plot),
            margin={"l": 70, "r": 20, "t": top, "b": bottom},
        )
    )
    return fig


def embedding_animation(
    frames: Sequence[Embedding],
    indices: np.ndarray,
    selection: Sequence[int] = (),
    class_names: Sequence[str] | None = None,
    radii: Sequence[float] | None = None,
    rescaled: bool = False,
    trust_k: int = 5,
    highlight: Sequence[int] = (),
    group: Sequence[int] | None = None,
) -> go.Figure:
    """One panel that plays a method through the nodes/steps (frames Procrustes-aligned upstream).

    Args:
        frames: one embedding per node, in play order.
        indices: (N,) indices of the stimuli in their image set (shown on hover).
        selection: stimulus rows to ring.
        class_names: the name of each label (default: the labels as text).
        radii: each frame's root-mean-square radius as computed (before any rescaling),
            written in its title so the true spread stays visible.
        rescaled: whether the frames were scaled to unit RMS radius (said in the titles).
        trust_k: the neighbours the trustworthiness counted.
        highlight: stimulus rows ringed as search matches.
        group: stimulus rows of an isolated group (the others dimmed in every frame), or ``None``.
    """
    radii = list(radii) if radii is not None else [None] * len(frames)
    all_coords = np.concatenate([e.coords for e in frames])
    rng = _square_range(all_coords)
    first = frames[0]
    names = _check_names(first.labels, class_names)
    fig = go.Figure(data=_class_traces(first, indices, names, True, selection, None, highlight, group))
    fig.frames = [
        go.Frame(
            name=e.node,
            data=_class_traces(e, indices, names, True, selection, None, highlight, group),
            layout={"title": {"text": _anim_title(e, r, rescaled, trust_k)}},
        )
        for e, r in zip(frames, radii, strict=True)
    ]
    fig.update_layout(
        **base_layout(
            title=_anim_title(first, radii[0], rescaled, trust_k),
            height=720,
            xaxis={"range": rng, **_BARE_AXIS, "title": {"text": f"{METHOD_NAMES[first.method]} dim 1 (frames aligned)", "standoff": 4}},
            yaxis={"range": rng, **_BARE_AXIS, "scaleanchor": "x", "title": {"text": f"{METHOD_NAMES[first.method]} dim 2", "standoff": 4}},
            legend={"title": {"text": "class"}, "itemsizing": "constant"},
            sliders=[frame_slider([e.node for e in frames], 0, "node: ", redraw=False, lead=0.0, pad_top=CONTROLS_PAD[1] - 30 + _AXIS_TITLE_PX)],
            updatemenus=[play_menu(900, pad_top=CONTROLS_PAD[0] - 30 + _AXIS_TITLE_PX)],
            margin={"l": 50, "r": 30, "t": 80, "b": CONTROLS_PAD[1] + 50 + _AXIS_TITLE_PX},
        )
    )
    return fig


def _anim_title(e: Embedding, radius: float | None = None, rescaled: bool = False, trust_k: int = 5) -> str:
    if radius is None:
        scale = ""
    elif rescaled:
        scale = f" · frames rescaled to unit RMS radius (this one's: {radius:.3g})"
    else:
        scale = f" · true scale, RMS radius {radius:.3g}"
    return f"{METHOD_NAMES[e.method]} of {e.model} · {e.node}<br><sup>{quality_text(e, trust_k)}{scale}</sup>"

"""Representational paths: the RDM-angle matrix beside the animated 2-D path, and what qualifies it.

Figures here draw what the engine computed: the path (:class:`~repgeom.core.paths.RepPath`),
its bootstrap (:class:`~repgeom.core.uncertainty.PathUncertainty`), the per-point distortion
of its MDS (:class:`~repgeom.core.distortion.NeighbourDistortion`) and ellipse outlines made
by :func:`~repgeom.core.distortion.confidence_ellipse`. Every title names the RDM metric,
the comparison and the unit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .style import COMPARE_LABELS, CONTROLS_PAD, STRESS_NAME, base_layout, frame_slider, model_colors, path_basis, play_menu

if TYPE_CHECKING:
    from ..core.distortion import NeighbourDistortion
    from ..core.paths import RepPath
    from ..core.uncertainty import PathUncertainty

__all__ = [
    "LABELS_COLOR",
    "LANDMARK_COLOR",
    "LANDMARK_SYMBOLS",
    "labels_distance_figure",
    "path_figure",
    "shepard_figure",
    "survive_figure",
    "training_path_figure",
]

LABELS_COLOR = "#CC00CC"  # the seed's magenta 'm'
LANDMARK_COLOR = "#555555"
#: Marker of each landmark kind in the path (``labels`` is the star).
LANDMARK_SYMBOLS = {"noise": "diamond-open", "shuffled": "x-thin-open", "group": "triangle-up-open"}
#: The angle matrix's node names: 12 px, and at most this many written (every k-th beyond), so they stay readable.
TICK_FONT_PX = 12
MAX_NODE_TICKS = 18
#: The angle matrix's axis titles: rows named by node (in the model's colour), columns the same points.
MATRIX_AXIS = "path point (node, coloured by model)"
MATRIX_X_AXIS = "path point"
#: The two panels' domains (paper fractions): the angle matrix, then the path.
MATRIX_DOMAIN = (0.0, 0.42)
PATH_DOMAIN = (0.58, 1.0)


def _kind(name: str) -> str:
    return "group" if name.startswith("group:") else name


def _model_order(path: RepPath) -> list[str]:
    seen: list[str] = []
    for m in path.models[:-1]:
        if m not in seen and m != "landmark":
            seen.append(m)
    return seen


def _ci(uncertainty: PathUncertainty | None, i: int, j: int) -> str:
    if uncertainty is None:
        return ""
    return f" (95 % CI {uncertainty.low[i, j]:.3f}–{uncertainty.high[i, j]:.3f})"


def _point_notes(path: RepPath, uncertainty: PathUncertainty | None, distortion: NeighbourDistortion | None) -> list[str]:
    """Per row: the angle to labels with its interval, and the nearest points on the plot (true vs plotted)."""
    last = len(path.names) - 1
    notes = []
    for i in range(len(path.names)):
        text = f"to labels: {path.to_labels[i]:.3f} rad{_ci(uncertainty, i, last)}"
        if distortion is not None:
            near = [
                f"{path.names[j]}: plotted {p:.3f}, true {t:.3f} rad"
                for j, p, t in zip(distortion.neighbours[i], distortion.plotted[i], distortion.true[i], strict=True)
            ]
            text += f"<br>point's {STRESS_NAME} {distortion.stress[i]:.3f}; nearest on the plot:<br>" + "<br>".join(near)
        notes.append(text)
    return notes


def _path_traces(path: RepPath, upto: int, colors: Mapping[str, str], notes: Sequence[str]) -> list[go.Scatter]:
    traces = []
    for model in _model_order(path):
        rows = path.rows_of(model)[:upto]
        traces.append(
            go.Scatter(
                x=path.coords[rows, 0],
                y=path.coords[rows, 1],
                mode="lines+markers",
                line={"color": colors[model], "width": 2},
                marker={"size": 7},
                name=model,
                legendgroup=model,
                customdata=np.stack([np.asarray(path.nodes)[rows], np.asarray(notes, dtype=object)[rows]], axis=1) if len(rows) else None,
                hovertemplate=f"{model} · %{{customdata[0]}}<br>%{{customdata[1]}}<extra></extra>",
                xaxis="x2",
                yaxis="y2",
            )
        )
    return traces


def _ellipse_traces(path: RepPath, ellipses: Sequence[np.ndarray | None], colors: Mapping[str, str]) -> list[go.Scatter]:
    """One outline trace per model (and one for the landmarks): the 95 % bootstrap ellipses of its rows."""
    groups: dict[str, list[np.ndarray]] = {}
    for i, pts in enumerate(ellipses):
        if pts is None:
            continue
        key = path.models[i] if path.models[i] in colors else "landmark"
        groups.setdefault(key, []).append(pts)
    traces = []
    for key, outlines in groups.items():
        xs = np.concatenate([np.append(o[:, 0], np.nan) for o in outlines])
        ys = np.concatenate([np.append(o[:, 1], np.nan) for o in outlines])
        traces.append(
            go.Scatter(
                x=xs,
                y=ys,
                mode="lines",
                line={"color": colors.get(key, LANDMARK_COLOR), "width": 1},
                opacity=0.55,
                name=f"{key} · 95 % ellipses",
                legendgroup=key,
                showlegend=False,
                hoverinfo="skip",
                connectgaps=False,
                xaxis="x2",
                yaxis="y2",
            )
        )
    return traces


def _matrix(fig: go.Figure, path: RepPath, colors: Mapping[str, str], uncertainty: PathUncertainty | None) -> None:
    """The display rows' angle matrix in the first column, tick labels in model colours."""
    rows = path.display_rows
    names = [path.names[i] for i in rows]

    def tick_color(i: int) -> str:
        if path.nodes[i] == "input":
            return "#000000"
        return LANDMARK_COLOR if path.models[i] == "landmark" else colors.get(path.models[i], LABELS_COLOR)

    every = -(-len(rows) // MAX_NODE_TICKS)
    ticktext = [f'<span style="color:{tick_color(i)}">{path.nodes[i]}</span>' if k % every == 0 else "" for k, i in enumerate(rows)]
    sub = path.distances[np.ix_(rows, rows)]
    hover = np.array(
        [[f"{names[a]} ↔ {names[b]}<br>{sub[a, b]:.3f} rad{_ci(uncertainty, i, j)}" for b, j in enumerate(rows)] for a, i in enumerate(rows)],
        dtype=object,
    )
    fig.add_trace(
        go.Heatmap(
            z=sub,
            x=list(range(len(rows))),
            y=list(range(len(rows))),
            colorscale="Viridis_r",
            # beside the matrix with a one-word title on top: nothing of it reaches the path's axis titles
            colorbar={
                "x": MATRIX_DOMAIN[1] + 0.01,
                "xanchor": "left",
                "y": 1,
                "yanchor": "top",
                "len": 0.6,
                "thickness": 14,
                "title": {"text": "rad", "side": "top"},
            },
            customdata=hover,
            hovertemplate="%{customdata}<extra></extra>",
        ),
        row=1,
        col=1,
    )
    # the matrix is symmetric: the rows name the nodes, the columns (named on hover) need no labels
    fig.update_xaxes(tickvals=list(range(len(rows))), showticklabels=False, showgrid=False, title_text=MATRIX_X_AXIS, row=1, col=1)
    fig.update_yaxes(
        tickvals=list(range(len(rows))),
        ticktext=ticktext,
        tickfont={"size": TICK_FONT_PX},
        title_text=MATRIX_AXIS,
        automargin=True,
        showgrid=False,
        autorange="reversed",
        scaleanchor="x",
        constrain="domain",
        row=1,
        col=1,
    )


def _two_panels(compare: str) -> go.Figure:
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=[
            f"Angles between the path's points<br><sup>{COMPARE_LABELS.get(compare, compare)}</sup>",
            "Representational path<br><sup>metric MDS of the angles</sup>",
        ],
    )
    fig.update_xaxes(domain=list(MATRIX_DOMAIN), row=1, col=1)
    fig.update_xaxes(domain=list(PATH_DOMAIN), row=1, col=2)
    for a, d in zip(fig.layout.annotations, (MATRIX_DOMAIN, PATH_DOMAIN), strict=True):
        a.x = (d[0] + d[1]) / 2
    return fig


#: Right of the path's dim-2 axis title (about 70 px at 1366 px wide): the legend needs no scrollbar for a dozen entries.
_LEGEND = {"x": 1.13, "xanchor": "left", "y": 1, "font": {"size": 12}}


def _controls(labels: list[str], active: int, prefix: str, duration: int) -> dict:
    """The play buttons, then the slider in a row of its own, both under the path panel.

    The frames change only the path's traces; every step redraws the figure and none tweens:
    Plotly leaves the angle matrix blank after a frame drawn without a redraw, and while a
    tween runs.
    """
    x, length = PATH_DOMAIN[0], PATH_DOMAIN[1] - PATH_DOMAIN[0]
    return {
        "sliders": [frame_slider(labels, active, prefix, redraw=True, x=x, length=length, lead=0.0, pad_top=CONTROLS_PAD[1] + 15)],
        "updatemenus": [play_menu(duration, transition=0, x=x, pad_top=CONTROLS_PAD[0] + 15)],
    }


def _square_axes(fig: go.Figure, coords: np.ndarray) -> None:
    lo, hi = float(np.nanmin(coords)), float(np.nanmax(coords))
    c, h = (lo + hi) / 2, max(hi - lo, 1e-9) * 5 / 8
    fig.update_xaxes(range=[c - h, c + h], title_text="MDS dim 1 (rad)", zeroline=False, row=1, col=2)
    # dim 2 on the right: the matrix's colour bar sits between the panels, clear of this axis's title
    fig.update_yaxes(range=[c - h, c + h], title_text="MDS dim 2 (rad)", side="right", zeroline=False, scaleanchor="x2", row=1, col=2)


def _landmark_traces(path: RepPath, notes: Sequence[str]) -> list[go.Scatter]:
    """``input`` (black square), every reference landmark (its own open marker) and ``labels`` (magenta star)."""
    out = [
        go.Scatter(
            x=[path.coords[0, 0]],
            y=[path.coords[0, 1]],
            mode="markers",
            name="input",
            marker={"symbol": "square", "size": 13, "color": "black"},
            customdata=[notes[0]],
            hovertemplate="input<br>%{customdata}<extra></extra>",
            xaxis="x2",
            yaxis="y2",
        )
    ]
    for i in path.landmark_rows:
        name = path.names[i]
        out.append(
            go.Scatter(
                x=[path.coords[i, 0]],
                y=[path.coords[i, 1]],
                mode="markers+text",
                name=name,
                text=[name],
                textposition="top center",
                textfont={"size": 10, "color": LANDMARK_COLOR},
                marker={"symbol": LANDMARK_SYMBOLS[_kind(name)], "size": 13, "color": LANDMARK_COLOR, "line": {"width": 2}},
                customdata=[notes[i]],
                hovertemplate=f"landmark {name}<br>%{{customdata}}<extra></extra>",
                xaxis="x2",
                yaxis="y2",
            )
        )
    out.append(
        go.Scatter(
            x=[path.coords[-1, 0]],
            y=[path.coords[-1, 1]],
            mode="markers",
            name="labels",
            marker={"symbol": "star", "size": 18, "color": LABELS_COLOR},
            hovertemplate="labels<extra></extra>",
            xaxis="x2",
            yaxis="y2",
        )
    )
    return out


def path_figure(
    path: RepPath,
    title: str | None = None,
    colors: Mapping[str, str] | None = None,
    uncertainty: PathUncertainty | None = None,
    ellipses: Sequence[np.ndarray | None] | None = None,
    distortion: NeighbourDistortion | None = None,
) -> go.Figure:
    """Two panels: the angle matrix and the 2-D path, animated step by step.

    The left matrix shows the display rows (duplicate ``input`` rows dropped, as the seed
    does); tick labels are node names in model colours, landmarks in grey. On the right
    each model's path runs from its ``input`` (black square) through its nodes; each
    reference landmark has its own open grey marker and ``labels`` is a magenta star.
    Frame k shows the first k nodes of every model.

    Args:
        path: the computed path.
        title: figure title (default: the models, what the angles compare, and the MDS's stress-1).
        colors: model id -> colour (default: the palette, by the model's place in the path).
        uncertainty: the path's bootstrap: 95 % intervals on hover (matrix cells and angles to labels).
        ellipses: per path row, an outline (M, 2) to draw (the bootstrap ellipse), or ``None``.
        distortion: per-point distortion of the MDS, shown on hover.
    """
    order = _model_order(path)
    colors = model_colors(order, colors) | {"labels": LABELS_COLOR}
    notes = _point_notes(path, uncertainty, distortion)
    fig = _two_panels(path.compare)
    _matrix(fig, path, colors, uncertainty)
    longest = max(len(path.rows_of(m)) for m in order)
    for t in _path_traces(path, longest, colors, notes) + _landmark_traces(path, notes) + _ellipse_traces(path, ellipses or [], colors):
        fig.add_trace(t)
    n_dynamic = len(order)
    fig.frames = [
        go.Frame(name=str(k), data=_path_traces(path, k, colors, notes), traces=list(range(1, 1 + n_dynamic))) for k in range(1, longest + 1)
    ]
    outlines = [o for o in (ellipses or []) if o is not None]
    _square_axes(fig, np.concatenate([path.coords, *outlines]) if outlines else path.coords)
    boot = f"<br><sup>ellipses: 95 % of {uncertainty.n_boot} bootstrap samples, Procrustes-aligned</sup>" if uncertainty is not None and outlines else ""
    default = (
        f"Representational path · {', '.join(order)}<br><sup>{path_basis(path.rdm_method, path.compare)} · "
        f"MDS {STRESS_NAME} {path.stress:.3f}</sup>{boot}"
    )
    fig.update_layout(
        **base_layout(
            title=title or default,
            height=760,
            legend=_LEGEND,
            **_controls([str(k) for k in range(1, longest + 1)], longest - 1, "steps shown: ", 350),
            margin={"l": 110, "r": 30, "t": 160, "b": CONTROLS_PAD[1] + 90},
        )
    )
    return fig


def _epoch_traces(path: RepPath, models: Sequence[str], epochs: Sequence[int], upto: int, colors: Sequence[str], notes: Sequence[str]) -> list[go.Scatter]:
    traces = []
    for k, (model, epoch) in enumerate(zip(models, epochs, strict=True)):
        rows = path.rows_of(model) if k <= upto else np.array([], dtype=int)
        current = k == upto
        traces.append(
            go.Scatter(
                x=path.coords[rows, 0],
                y=path.coords[rows, 1],
                mode="lines+markers",
                line={"color": colors[k], "width": 3 if current else 1},
                marker={"size": 8 if current else 5},
                opacity=1.0 if current else 0.45,
                name=f"epoch {epoch}",
                customdata=np.stack([np.asarray(path.nodes)[rows], np.asarray(notes, dtype=object)[rows]], axis=1) if len(rows) else None,
                hovertemplate=f"epoch {epoch} · %{{customdata[0]}}<br>%{{customdata[1]}}<extra></extra>",
                xaxis="x2",
                yaxis="y2",
            )
        )
    return traces


def training_path_figure(path: RepPath, model: str, epochs: Sequence[int], title: str | None = None) -> go.Figure:
    """The chosen nodes' RDMs at each epoch of ``model``'s training as points of one path, animated epoch by epoch.

    Args:
        path: a path whose models are ``<model>@<epoch>``, one per epoch, in training order.
        model: the trained model's id (for the title).
        epochs: the epochs, in the path's order.
        title: figure title (default: the model, what the angles compare, the stress-1).

    Frame k draws epochs 0..k: the current epoch's chain of nodes bold, earlier ones faint.
    """
    from plotly.colors import sample_colorscale  # noqa: PLC0415

    models = _model_order(path)
    if len(models) != len(epochs):
        raise ValueError(f"{len(epochs)} epochs given for a path of {len(models)} models")
    shades = sample_colorscale("Viridis", [0.9 * k / max(len(epochs) - 1, 1) for k in range(len(epochs))])
    colors = dict(zip(models, shades, strict=True)) | {"labels": LABELS_COLOR}
    notes = _point_notes(path, None, None)
    fig = _two_panels(path.compare)
    _matrix(fig, path, colors, None)
    last = len(epochs) - 1
    for t in _epoch_traces(path, models, epochs, last, shades, notes) + _landmark_traces(path, notes):
        fig.add_trace(t)
    fig.frames = [
        go.Frame(
            name=str(e),
            data=_epoch_traces(path, models, epochs, k, shades, notes),
            traces=list(range(1, 1 + len(models))),
            layout={"title": {"text": _training_title(path, model, e)}},
        )
        for k, e in enumerate(epochs)
    ]
    _square_axes(fig, path.coords)
    fig.update_layout(
        **base_layout(
            title=title or _training_title(path, model, epochs[-1]),
            height=760,
            legend=_LEGEND,
            **_controls([str(e) for e in epochs], last, "epoch: ", 600),
            margin={"l": 110, "r": 30, "t": 160, "b": CONTROLS_PAD[1] + 90},
        )
    )
    return fig


def _training_title(path: RepPath, model: str, epoch: int) -> str:
    return (
        f"Paths over training · {model}, epoch {epoch}<br><sup>{path_basis(path.rdm_method, path.compare)} · "
        f"MDS {STRESS_NAME} {path.stress:.3f}</sup>"
    )


def labels_distance_figure(
    path: RepPath,
    uncertainty: PathUncertainty | None = None,
    yardsticks: Mapping[str, Mapping[str, float]] | None = None,
    colors: Mapping[str, str] | None = None,
) -> go.Figure:
    """Each node's angle to ``labels``, with its bootstrap interval, the landmarks' floor and the seed band.

    Args:
        path: the computed path.
        uncertainty: its bootstrap; error bars are the 95 % percentile intervals.
        yardsticks: per model, ``{node: angle to the same node of a second seed}``; drawn as a
            shaded band of that half-width around the model's line.
        colors: model id -> colour.
    """
    order = _model_order(path)
    colors = model_colors(order, colors)
    last = len(path.names) - 1
    fig = go.Figure()
    ticks: list[int] = []
    for model in order:
        rows = path.rows_of(model)
        ticks += rows.tolist()
        nodes = [path.nodes[i] for i in rows]
        x = rows.tolist()
        y = path.to_labels[rows]
        band = (yardsticks or {}).get(model) or {}
        if band:
            half = np.array([band.get(n, np.nan) for n in nodes])
            shown = ~np.isnan(half)
            xs = [r for r, s in zip(x, shown, strict=True) if s]
            fig.add_trace(
                go.Scatter(
                    x=xs + xs[::-1],
                    y=list(y[shown] + half[shown]) + list((y[shown] - half[shown])[::-1]),
                    fill="toself",
                    fillcolor=colors[model],
                    opacity=0.18,
                    line={"width": 0},
                    name=f"{model} ± seed variability",
                    hoverinfo="skip",
                )
            )
        error = None
        if uncertainty is not None:
            lo, hi = uncertainty.low[rows, last], uncertainty.high[rows, last]
            error = {"type": "data", "symmetric": False, "array": np.clip(hi - y, 0, None), "arrayminus": np.clip(y - lo, 0, None), "thickness": 1.2}
        seed_note = [f"<br>seed variability at this node: {band[n]:.3f} rad" if n in band else "" for n in nodes]
        ci = [_ci(uncertainty, i, last) for i in rows]
        fig.add_trace(
            go.Scatter(
                x=x,
                y=y,
                mode="lines+markers",
                name=model,
                line={"color": colors[model], "width": 2},
                error_y=error,
                customdata=np.stack([np.asarray(nodes, dtype=object), np.asarray(ci, dtype=object), np.asarray(seed_note, dtype=object)], axis=1),
                hovertemplate=f"{model} · %{{customdata[0]}}<br>%{{y:.3f}} rad%{{customdata[1]}}%{{customdata[2]}}<extra></extra>",
            )
        )
    for i in path.landmark_rows:
        name = path.names[i]
        fig.add_hline(
            y=float(path.to_labels[i]),
            line={"color": LANDMARK_COLOR, "dash": "dot" if _kind(name) != "group" else "dash", "width": 1.5},
            annotation_text=f"{name} {path.to_labels[i]:.3f}{_ci(uncertainty, i, last)}",
            annotation_position="top left",
            annotation_font={"size": 10, "color": LANDMARK_COLOR},
        )
    boot = f"bars: 95 % intervals of {uncertainty.n_boot} bootstrap samples" if uncertainty is not None else ""
    seeds = "band: ± angle to a second seed of the model" if any((yardsticks or {}).values()) else ""
    extra = " · ".join(t for t in (boot, seeds) if t)
    fig.update_layout(
        **base_layout(
            title=f"Angle to labels, node by node<br><sup>{path_basis(path.rdm_method, path.compare)}</sup>" + (f"<br><sup>{extra}</sup>" if extra else ""),
            height=440,
            xaxis={
                "title": {"text": "node (graph order, model by model)"},
                "tickangle": -45,
                "tickfont": {"size": 10},
                "tickvals": ticks,
                "ticktext": [path.nodes[i] for i in ticks],
            },
            yaxis={"title": {"text": f"{COMPARE_LABELS.get(path.compare, path.compare)} to labels (rad)"}},
            margin={"l": 70, "r": 30, "t": 110, "b": 110},
        )
    )
    return fig


def shepard_figure(panels: Sequence[tuple[str, np.ndarray, np.ndarray, float | None]], unit: str, title: str) -> go.Figure:
    """Shepard diagrams: each pair's plotted distance against its true distance, one panel each.

    Args:
        panels: ``(panel title, true (P,), plotted (P,), stress-1 or None)`` per panel.
        unit: the distances' unit, for the axis titles (``"rad"``; ``"feature distance"``).
        title: the figure's title.
    """
    n = max(len(panels), 1)
    cols = min(n, 4)
    rows = -(-n // cols)
    titles = [f"{name}<br><sup>{STRESS_NAME} {stress:.3f}</sup>" if stress is not None else name for name, _, _, stress in panels]
    fig = make_subplots(rows=rows, cols=cols, subplot_titles=titles or [""], horizontal_spacing=0.08, vertical_spacing=0.16 if rows > 1 else 0.1)
    for k, (name, true, plotted, _) in enumerate(panels):
        r, c = k // cols + 1, k % cols + 1
        top = float(max(np.max(true, initial=0.0), np.max(plotted, initial=0.0))) * 1.05 or 1.0
        fig.add_trace(
            go.Scatter(
                x=true,
                y=plotted,
                mode="markers",
                marker={"size": 3 if len(true) > 500 else 6, "color": "#0077BB", "opacity": 0.35 if len(true) > 500 else 0.8},
                name=name,
                showlegend=False,
                hovertemplate=f"true %{{x:.3f}}<br>plotted %{{y:.3f}}<extra>{name}</extra>",
            ),
            row=r,
            col=c,
        )
        fig.add_trace(
            go.Scatter(x=[0, top], y=[0, top], mode="lines", line={"color": "#999", "dash": "dash", "width": 1}, showlegend=False, hoverinfo="skip"),
            row=r,
            col=c,
        )
        fig.update_xaxes(title_text=f"true ({unit})", range=[0, top], row=r, col=c)
        fig.update_yaxes(title_text=f"plotted ({unit})", range=[0, top], row=r, col=c)
    fig.update_layout(**base_layout(title=title, height=140 + 300 * rows, margin={"l": 60, "r": 30, "t": 110, "b": 50}))
    return fig


def survive_figure(paths: Sequence[RepPath], aligned: Sequence[np.ndarray], colors: Mapping[str, str] | None = None) -> go.Figure:
    """"Do the conclusions survive?": the same path under several comparisons, side by side.

    Args:
        paths: the path under each comparison (same rows).
        aligned: per path, (K, 2) coordinates Procrustes-aligned (rotation, reflection,
            shift; no scaling) to the first path's.
        colors: model id -> colour.
    """
    order = _model_order(paths[0])
    colors = model_colors(order, colors)
    titles = [f"{COMPARE_LABELS.get(p.compare, p.compare)}<br><sup>{STRESS_NAME} {p.stress:.3f}</sup>" for p in paths]
    fig = make_subplots(rows=1, cols=len(paths), subplot_titles=titles, horizontal_spacing=0.06)
    every = np.concatenate(list(aligned))
    lo, hi = float(every.min()), float(every.max())
    c, h = (lo + hi) / 2, max(hi - lo, 1e-9) * 5 / 8
    for k, (p, xy) in enumerate(zip(paths, aligned, strict=True), start=1):
        for model in order:
            rows = p.rows_of(model)
            fig.add_trace(
                go.Scatter(
                    x=xy[rows, 0],
                    y=xy[rows, 1],
                    mode="lines+markers",
                    line={"color": colors[model], "width": 2},
                    marker={"size": 6},
                    name=model,
                    legendgroup=model,
                    showlegend=k == 1,
                    customdata=np.stack([np.asarray(p.nodes)[rows], p.to_labels[rows]], axis=1),
                    hovertemplate=f"{model} · %{{customdata[0]}}<br>to labels %{{customdata[1]:.3f}} rad<extra></extra>",
                ),
                row=1,
                col=k,
            )
        marks = [*p.landmark_rows.tolist(), len(p.names) - 1]
        fig.add_trace(
            go.Scatter(
                x=xy[marks, 0],
                y=xy[marks, 1],
                mode="markers+text",
                text=[p.names[i] for i in marks],
                textposition="top center",
                textfont={"size": 9},
                marker={
                    "symbol": [LANDMARK_SYMBOLS.get(_kind(p.names[i]), "star") for i in marks[:-1]] + ["star"],
                    "size": [11] * (len(marks) - 1) + [16],
                    "color": [LANDMARK_COLOR] * (len(marks) - 1) + [LABELS_COLOR],
                },
                name="landmarks",
                legendgroup="landmarks",
                showlegend=k == 1,
                hovertemplate="%{text}<extra></extra>",
            ),
            row=1,
            col=k,
        )
        anchor = "x" if k == 1 else f"x{k}"
        fig.update_xaxes(range=[c - h, c + h], title_text="dim 1 (rad)", zeroline=False, row=1, col=k)
        fig.update_yaxes(range=[c - h, c + h], title_text="dim 2 (rad)", zeroline=False, scaleanchor=anchor, row=1, col=k)
    metric = path_basis(paths[0].rdm_method, paths[0].compare).split(" · ")[0]
    fig.update_layout(
        **base_layout(
            title=f"Do the conclusions survive? The path under {len(paths)} comparisons<br><sup>{metric} · angles in rad · "
            "each Procrustes-aligned (rotation, reflection, shift; no scaling) to the first</sup>",
            height=480,
            margin={"l": 60, "r": 30, "t": 110, "b": 50},
        )
    )
    return fig

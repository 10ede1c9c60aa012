"""The ⓘ notes beside every figure, the glossary of every term shown, and axis titles on every plot."""

from __future__ import annotations

import re
from typing import Any

import plotly.graph_objects as go
import pytest
from dash import dcc, html

from repgeom.ui import views
from repgeom.ui.explanations import FIGURE_NOTES, GLOSSARY, glossary_terms_in
from repgeom.ui.ids import GRAPH_IDS, ID, note_id
from repgeom.ui.layout import build_layout
from repgeom.ui.state import View

#: The jargon a new user met without an explanation (issue 13, "What was found", item 6), plus the methods' names.
JARGON = (
    "trust",
    "perp",
    "stress",
    "class-block contrast",
    "silhouette",
    "RDMs inside the path",
    "cosine → angle",
    "RDM",
    "MDS",
    "t-SNE",
    "PCA",
    "FGSM",
    "epsilon",
    "bootstrap",
    "landmarks",
    "Shepard diagram",
    "Procrustes",
    "trustworthiness",
    "perplexity",
    "input drive",
    "recurrent drive",
    "ReLU",
)
#: Upper-case words on the page that are not jargon: file formats, a checksum, the address bar, licence names.
NOT_JARGON = {"PNG", "JPEG", "SVG", "SHA-256", "URL", "ID", "CC", "MIT"}


def _walk(component: Any, parents: tuple[Any, ...] = ()):
    yield component, parents
    if isinstance(component, (str, int, float)):
        return
    children = getattr(component, "children", None)
    if isinstance(children, (list, tuple)):
        for c in children:
            yield from _walk(c, (*parents, component))
    elif children is not None:
        yield from _walk(children, (*parents, component))


def _layout_text(component: Any) -> str:
    """Every string a component tree shows: text children, labels, option labels, placeholders."""
    out: list[str] = []
    for c, _ in _walk(component):
        if isinstance(c, str):
            out.append(c)
            continue
        for prop in ("label", "placeholder"):
            value = getattr(c, prop, None)
            if isinstance(value, str):
                out.append(value)
        for option in getattr(c, "options", None) or []:
            if isinstance(option, dict):
                out.append(_layout_text(option.get("label")))
    return "\n".join(out)


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() if k not in ("template", "customdata", "z", "x", "y", "colorscale") for s in _strings(v)]
    if isinstance(value, (list, tuple)):
        return [s for v in value for s in _strings(v)]
    return []


def _figure_text(fig: go.Figure) -> str:
    """Titles, annotations, axis and colour-bar titles, tick labels, trace names and hover texts of a figure."""
    plain = fig.to_plotly_json()
    text = " \n".join(_strings(plain["layout"]) + _strings(plain["data"]) + _strings([f.get("layout", {}) for f in plain.get("frames", [])]))
    text = re.sub(r"%\{[^}]*\}", " ", text)
    return re.sub(r"<[^>]+>", " ", text)


@pytest.fixture(scope="module")
def figures(engine) -> dict[str, go.Figure]:
    """Every figure of the page for a small view of the default model (pairs, landmarks, difference and side by side set)."""
    nodes = engine.nodes(engine.defaults.model)
    view = View.parse(
        engine,
        {
            **View.default(engine).controls(),
            "n_rdm": 3,
            "n_embed": 3,
            "nodes": nodes[1:3],
            "landmarks": ["noise", "shuffled"],
            "diff_a": f"{engine.defaults.model}/{nodes[1]}",
            "diff_b": f"{engine.defaults.model}/{nodes[-1]}",
        },
    )
    stim = engine.stimuli(view.spec(engine, view.n_rdm))
    pair = [int(stim.indices[0]), int(stim.indices[-1])]
    grid, slider = views.rdm_views(engine, view, pair)
    emb = views.embedding_views(engine, view, pair)
    path = views.path_view(engine, view, bootstrap=False)
    probe = views.probe_views(engine, view, stim.pixels[0])
    return {
        ID.RDM_GRID: grid,
        ID.RDM_SLIDER: slider,
        ID.DIFF_GRAPH: views.difference_view(engine, view),
        ID.EMBED_GRID: emb.grid,
        ID.EMBED_ANIM: emb.animation,
        ID.EMBED_SHEPARD: emb.shepard,
        ID.PATH_GRAPH: path.path,
        ID.PATH_LABELS_GRAPH: path.to_labels,
        ID.PATH_SHEPARD_GRAPH: path.shepard,
        ID.SURVIVE_GRAPH: views.survive_view(engine, view),
        ID.METRICS_GRAPH: views.metrics_view(engine, view),
        ID.SIDE_GRAPH: views.side_by_side_view(engine, view),
        ID.PAIR_GRAPH: views.pair_view(engine, view, pair),
        ID.PROBE_PROBS: probe.probabilities,
        ID.PROBE_EMBED: probe.embedding,
        ID.PROBE_ROWS: probe.rows,
    }


def test_every_figure_has_a_note_that_says_what_how_and_beware():
    assert set(FIGURE_NOTES) == set(GRAPH_IDS), "a figure without an ⓘ note, or a note for no figure"
    for graph, note in FIGURE_NOTES.items():
        assert note.title.strip(), graph
        for part in (note.what, note.read, note.careful):
            assert len(part.split()) >= 3, f"{graph}: a note part is too short to explain anything: {part!r}"


def test_the_page_puts_each_note_beside_its_figure(engine):
    layout = build_layout(engine, View.default(engine))
    found: dict[str, tuple[Any, ...]] = {}
    for c, parents in _walk(layout):
        if isinstance(c, html.Details) and isinstance(c.id, dict) and c.id.get("type") == ID.FIGURE_NOTE:
            found[c.id["index"]] = parents
    assert set(found) == set(GRAPH_IDS)
    for graph in GRAPH_IDS:
        parent = found[graph][-1]
        inside = {g.id for g, _ in _walk(parent) if isinstance(g, dcc.Graph)}
        assert graph in inside, f"the note {note_id(graph)} is not beside {graph}"
        assert inside == {graph} or parent.className == "inspector", f"the note of {graph} shares its box with {inside - {graph}}"


def test_the_glossary_tab_lists_every_entry(engine):
    layout = build_layout(engine, View.default(engine))
    tab = next(c for c, _ in _walk(layout) if isinstance(c, dcc.Tab) and c.value == "glossary")
    text = _layout_text(tab)
    for entry in GLOSSARY:
        assert entry.term in text and entry.definition in text


def test_every_jargon_term_has_a_glossary_entry():
    for term in JARGON:
        assert glossary_terms_in(term), f"{term!r} has no glossary entry"
    assert len({e.term.lower() for e in GLOSSARY}) == len(GLOSSARY), "two glossary entries share a name"


def test_every_term_the_page_and_its_figures_show_is_in_the_glossary(engine, figures):
    layout = build_layout(engine, View.default(engine))
    shown = _layout_text(layout) + "\n" + "\n".join(_figure_text(f) for f in figures.values())
    glossed = {s.lower() for e in GLOSSARY for s in e.spellings()}
    # jargon that is on the page is glossed (the check covers what the page really shows)
    present = [t for t in JARGON if re.search(rf"(?<![\w-]){re.escape(t)}(?![\w-])", shown, flags=re.IGNORECASE)]
    assert {"trustworthiness", "stress", "silhouette", "RDMs inside the path", "MDS", "t-SNE", "PCA", "FGSM", "perp"} <= set(present), present
    for term in present:
        assert glossary_terms_in(term)
    # every acronym on the page is either glossed or named here as plain (file formats...), dataset and model names aside
    own = {w for d in engine.datasets.values() for w in re.findall(r"[\w-]+", d.name)} | set(engine.model_ids)
    acronyms = set(re.findall(r"(?<![\w-])[A-Z][A-Z0-9]*[A-Z](?:-\d+)?(?![\w-])", shown))
    colours = {a for a in acronyms if re.fullmatch(r"[0-9A-F]{6}", a)}
    unexplained = {a for a in acronyms - colours if a.lower() not in glossed and a not in NOT_JARGON and a not in own}
    assert not unexplained, f"shown without a glossary entry: {sorted(unexplained)}"


def _axes(fig: go.Figure) -> dict[str, dict]:
    layout = fig.to_plotly_json()["layout"]
    return {k: v for k, v in layout.items() if re.fullmatch(r"[xy]axis\d*", k)}


def test_every_visible_axis_of_every_figure_has_a_title(figures):
    drawn = 0
    for graph, fig in figures.items():
        assert fig is not None, graph
        for name, axis in _axes(fig).items():
            # hidden, or without numbers or a line: a row of panels whose rows are named at its left
            if axis.get("visible") is False or (axis.get("showticklabels") is False and not axis.get("showline")):
                continue
            drawn += graph == ID.EMBED_GRID
            title = (axis.get("title") or {}).get("text")
            assert isinstance(title, str) and title.strip(), f"{graph}: {name} has no title"
    assert drawn == 2 * 3 * 2, "every embedding panel (3 methods × 2 nodes) shows both its axes"


def test_embedding_panels_name_their_axes_and_pca_its_share_of_variance(figures):
    fig = figures[ID.EMBED_GRID]
    layout = fig.to_plotly_json()["layout"]
    seen = set()
    for trace in fig.data:
        if trace.customdata is None:
            continue
        method = trace.customdata[0][2]
        x = layout["xaxis" + trace.xaxis[1:]]["title"]["text"]
        y = layout["yaxis" + trace.yaxis[1:]]["title"]["text"]
        if method == "pca":
            px, py = (float(re.search(r"\((\d+) %", t).group(1)) for t in (x, y))
            assert x.startswith("PC 1 (") and "% var." in x and y.startswith("PC 2 (") and 0 < py <= px < 100, (x, y)
        else:
            assert (x, y) == ({"mds": "MDS", "tsne": "t-SNE"}[method] + " dim 1", {"mds": "MDS", "tsne": "t-SNE"}[method] + " dim 2"), (method, x, y)
        seen.add(method)
    assert seen == {"pca", "mds", "tsne"}
    anim = figures[ID.EMBED_ANIM].layout
    assert "dim 1" in anim.xaxis.title.text and "dim 2" in anim.yaxis.title.text and anim.xaxis.visible is not False


def test_rdm_axes_name_the_stimuli_sorted_by_class(figures):
    for graph in (ID.RDM_GRID, ID.RDM_SLIDER, ID.DIFF_GRAPH, ID.SIDE_GRAPH):
        titles = [a["title"]["text"] for a in _axes(figures[graph]).values() if a.get("title", {}).get("text")]
        assert titles and all("stimulus" in t and "class" in t for t in titles), (graph, titles)


def test_every_node_of_every_model_is_described_in_the_selector_and_on_hover(engine, figures):
    from repgeom.ui.callbacks import sync

    for model in engine.model_ids:
        described = engine.node_descriptions(model)
        assert set(described) == set(engine.nodes(model)) and all(described.values())
        options = sync.node_options(engine, View.parse(engine, {**View.default(engine).controls(), "model": model, "nodes": engine.nodes(model)[-1:]}))
        assert [o["value"] for o in options] == engine.nodes(model)
        assert all(o["title"] == described[o["value"]] and described[o["value"]] in _layout_text(o["label"]) for o in options)
    described = engine.node_descriptions(engine.defaults.model)
    grid, slider = figures[ID.RDM_GRID], figures[ID.RDM_SLIDER]
    for trace in grid.data:
        node = trace.name.rsplit("/", 1)[-1].rsplit(" · ", 1)[-1]
        assert described[node] in trace.hovertemplate, (trace.name, trace.hovertemplate)
    for frame in slider.frames:
        assert described[frame.name] in frame.layout.title.text and described[frame.name] in frame.data[0].hovertemplate

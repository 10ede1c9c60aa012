"""The window size the page reports: bucketed, validated (forged values give the default), and turned into figure sizes."""

from __future__ import annotations

import pytest

from repgeom.ui.callbacks import embeddings, rdms
from repgeom.ui.ids import ID
from repgeom.ui.state import View
from repgeom.ui.viewport import DEFAULT, HEIGHTS, MAX_SIDE_PX, PRESENT_CHROME_PX, WIDTHS, Viewport, parse_viewport, viewport_js


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"width": 1366, "height": 768}, Viewport(1366, 768)),
        ({"width": 1919, "height": 1079}, Viewport(1600, 900)),  # snapped down to a bucket
        ({"width": 1920, "height": 1080}, Viewport(1920, 1080)),
        ({"width": 320, "height": 200}, Viewport(WIDTHS[0], HEIGHTS[0])),  # below every bucket: the smallest
        ({"width": MAX_SIDE_PX, "height": MAX_SIDE_PX}, Viewport(WIDTHS[-1], HEIGHTS[-1])),
    ],
)
def test_a_reported_size_is_snapped_to_a_few_buckets(data, expected):
    assert parse_viewport(data) == expected


@pytest.mark.parametrize(
    "forged",
    [None, [], "1920x1080", {}, {"width": 1920}, {"width": True, "height": 1080}, {"width": 1920.5, "height": 1080}, {"width": "1920", "height": 1080},
     {"width": 0, "height": 1080}, {"width": -1, "height": 1080}, {"width": MAX_SIDE_PX + 1, "height": 1080}, {"width": 10**12, "height": 10**12},
     {"width": float("nan"), "height": 1}, {"width": [1920], "height": 1080}],
)
def test_a_forged_size_gives_the_default_never_an_error(forged):
    assert parse_viewport(forged) == DEFAULT


def test_the_main_column_mirrors_the_page_style():
    wide, narrow = Viewport(1920, 1080), Viewport(1024, 768)
    # explore: the sidebar and inspector beside the main column, and below 1100 px the inspector under it
    assert wide.figure_width("explore") == 1920 - 16 - 270 - 250 - 32
    assert narrow.figure_width("explore") == 1024 - 16 - 260 - 32
    # presentation mode: one column across the screen, and a height to fit into
    assert wide.figure_width("present") == 1920 - 16 - 16
    assert wide.figure_height("present") == 1080 - PRESENT_CHROME_PX and wide.figure_height("explore") is None


def test_the_page_script_reports_the_buckets_into_the_store():
    js = viewport_js(ID.VIEWPORT)
    assert str(list(WIDTHS)).replace(" ", "") in js.replace(" ", "") and str(list(HEIGHTS)).replace(" ", "") in js.replace(" ", "")
    assert f'set_props("{ID.VIEWPORT}"' in js and "resize" in js and "no_update" in js


def _columns(fig):
    return len({fig.layout[k].domain[0] for k in fig.layout if k.startswith("xaxis") and fig.layout[k].visible is not False})


def test_the_rdm_grid_is_laid_out_for_the_reported_window_and_fits_it_in_presentation_mode(engine):
    nodes = list(engine.nodes(engine.defaults.model))
    view = {**View.default(engine).controls(), "n_rdm": 2, "nodes": nodes}
    at = {size: rdms.rdm_figures(engine, view, [], {"width": size[0], "height": size[1]})[0] for size in ((1024, 768), (1366, 768), (1920, 1080))}
    assert [_columns(f) for f in at.values()] == [2, 3, 4]
    assert rdms.rdm_figures(engine, view, [], {"width": "wide"})[0].to_json() == at[(1366, 768)].to_json()  # forged: the default
    shown = rdms.rdm_figures(engine, {**view, "mode": "present"}, [], {"width": 1920, "height": 1080})[0]
    assert shown.layout.height <= 1080 - PRESENT_CHROME_PX and _columns(shown) > 4


def test_the_embeddings_request_carries_the_window_to_the_job(engine):
    nodes = list(engine.nodes(engine.defaults.model))[1:9]
    view = {**View.default(engine).controls(), "tab": "embeddings", "n_embed": 2, "nodes": nodes, "embed_methods": ["pca"], "anim_method": "pca"}
    request = embeddings.embedding_request(engine, view, [], None, None, {"width": 1100, "height": 700})
    assert request["viewport"] == {"width": 1024, "height": 600}
    narrow = embeddings.embedding_figures(engine, lambda _p: None, request)[0]
    wide = embeddings.embedding_figures(engine, lambda _p: None, {**request, "viewport": {"width": 1920, "height": 1080}})[0]
    assert _columns(narrow) == 3 and _columns(wide) == 4

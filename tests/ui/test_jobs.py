"""Views that may take seconds: a gate answers what is cached (or small) at once, else a background job with progress.

The gates and jobs are called as plain functions on an engine of this module's own, so
that what is cached is exactly what these tests computed.
"""

from __future__ import annotations

import shlex

import numpy as np
import plotly.graph_objects as go
import pytest
from dash import no_update

from repgeom.pipeline import Engine, NotCached
from repgeom.ui import views
from repgeom.ui.background import JobCancelled
from repgeom.ui.callbacks import download, jobs, paths, rdms
from repgeom.ui.state import View


@pytest.fixture(scope="module")
def fresh() -> Engine:
    """An engine with a cache of its own (the session's engine is shared by every test)."""
    return Engine(device="cpu")


def _view(engine: Engine, **changes) -> dict:
    return View.parse(engine, {**View.default(engine).controls(), **changes}).controls()


class Recorder:
    """Dash's ``set_progress`` as a list of ``(value, max, text)``; raises at call ``cancel_at`` as Cancel does."""

    def __init__(self, cancel_at: int | None = None) -> None:
        self.calls: list[tuple[str, str, str]] = []
        self.cancel_at = cancel_at

    def __call__(self, update: tuple[str, str, str]) -> None:
        if self.cancel_at is not None and len(self.calls) == self.cancel_at:
            raise JobCancelled
        self.calls.append(tuple(update))


def test_the_engine_answers_from_its_cache_or_says_it_would_compute(fresh):
    spec = fresh.spec(3)
    with pytest.raises(NotCached), fresh.cached_only():
        fresh.rdm("feedforward", "fc1", spec)
    computed = fresh.rdm("feedforward", "fc1", spec)
    with fresh.cached_only():
        assert fresh.rdm("feedforward", "fc1", spec) is computed
    with pytest.raises(NotCached), fresh.cached_only():  # features of several nodes in one pass count as work too
        fresh.prefetch_features("recurrent", ["conv2", "conv2_1"], spec)
    fresh.rdm("feedforward", "fc2", spec)  # outside the block the engine computes as before


def test_the_path_gate_starts_a_job_whose_progress_counts_every_step_then_answers_directly(fresh):
    data = _view(fresh, tab="paths", n_embed=2, path_models=["feedforward", "recurrent"], survive=["cosine", "cka"])
    out = paths.path_gate(fresh, data)
    assert out[:4] == (no_update,) * 4 and out[4] == "" and out[5:7] == (no_update,) * 2
    assert out[7] == {"view": data} and out[8] is no_update, "not cached: a job request, nothing drawn"

    progress = Recorder()
    figures = paths.path_job(fresh, progress, out[7])
    view = View.parse(fresh, data)
    total = views.path_steps(fresh, view) + len(view.survive)
    yardsticks = sum(1 for m in ("feedforward", "recurrent") if fresh.replicates(m))
    assert total == 2 + 1 + 1 + yardsticks + 2  # features of two models, the path, the bootstrap, seed bands, two side-by-side paths
    assert [int(v) for v, _, _ in progress.calls] == list(range(total)) + [total]
    assert {m for _, m, _ in progress.calls} == {str(total)}
    texts = [t for _, _, t in progress.calls]
    assert texts[0] == f"0/{total} · features of feedforward" and any("bootstrap samples" in t for t in texts)
    assert sum("seed variability" in t for t in texts) == yardsticks and sum("the path under" in t for t in texts) == 2
    assert texts[-1] == "drawing"
    assert isinstance(figures[0], go.Figure) and figures[0].data and isinstance(figures[5], go.Figure) and figures[4] == ""

    again = paths.path_gate(fresh, data)
    assert isinstance(again[0], go.Figure) and again[0].to_json() == figures[0].to_json()
    assert again[7] is no_update and isinstance(again[8], str) and len(again[8]) == 16, "direct: the abandon token cancels an older job"
    assert paths.path_gate(fresh, data)[8] != again[8], "each direct answer cancels whatever job still runs"


def test_a_cancelled_path_job_stops_at_its_next_step_and_answers_nothing(fresh):
    data = _view(fresh, tab="paths", n_embed=4, path_models=["recurrent"])
    progress = Recorder(cancel_at=1)
    with pytest.raises(JobCancelled):
        paths.path_job(fresh, progress, {"view": data})
    assert len(progress.calls) == 1
    with pytest.raises(NotCached), fresh.cached_only():
        views.path_view(fresh, View.parse(fresh, data))


def test_progress_that_cannot_be_stored_does_not_fail_the_job(caplog):
    def broken(_update):
        raise OSError(28, "No space left on device")

    jobs.reporter(broken)(1, 3, "anything")
    assert "progress not recorded (OSError)" in caplog.text


def test_gates_and_jobs_ignore_other_tabs_and_refuse_forged_requests(fresh):
    assert paths.path_gate(fresh, _view(fresh, tab="rdms")) == (no_update,) * 9
    assert paths.path_job(fresh, Recorder(), "not a request") == (no_update,) * 7
    assert rdms.rdm_job(fresh, Recorder(), {"view": _view(fresh, tab="paths")}) == (no_update,) * 3
    refused = paths.path_job(fresh, Recorder(), {"view": {**_view(fresh, tab="paths"), "path_models": ["../x"]}})
    assert refused[:4] == (no_update,) * 4 and "unknown model" in str(refused[4].children)
    assert download.download_job(fresh, Recorder(), {"view": [1, 2]})[1].children == "the view settings must be an object"


def test_the_rdm_gate_computes_small_views_itself_and_sends_large_ones_to_a_job(fresh):
    small = _view(fresh, n_rdm=2, nodes=["conv2", "conv2_1"])
    grid, _slider, message, request, abandon = rdms.rdm_gate(fresh, small, [])
    assert isinstance(grid, go.Figure) and message == "" and request is no_update and isinstance(abandon, str)

    large = _view(fresh, n_rdm=6, nodes=["conv2", "conv2_2", "conv2_4"])
    narrow = {"width": 1100, "height": 800}  # the page's window, snapped to its bucket on the way
    out = rdms.rdm_gate(fresh, large, [5], narrow, direct_cells=0)
    assert out[:2] == (no_update, no_update) and out[3] == {"view": large, "selection": [5], "viewport": {"width": 1024, "height": 768}}
    progress = Recorder()
    grid, slider, message = rdms.rdm_job(fresh, progress, out[3])
    assert [t for _, _, t in progress.calls] == ["0/4 · features of 3 nodes", "1/4 · RDM of conv2", "2/4 · RDM of conv2_2",
                                                  "3/4 · RDM of conv2_4", "drawing"]
    assert len({tuple(grid.layout[f"xaxis{k}"].domain) for k in ("", 2, 3)}) == 2, "the job lays the grid out for the window it was sent: 2 columns"
    direct = rdms.rdm_gate(fresh, large, [5], narrow, direct_cells=0)
    assert isinstance(direct[0], go.Figure) and direct[0].to_json() == grid.to_json(), "cached now: answered directly"
    wide = rdms.rdm_gate(fresh, large, [5], {"width": 1920, "height": 1080}, direct_cells=0)[0]
    assert len({tuple(wide.layout[f"xaxis{k}"].domain) for k in ("", 2, 3)}) == 3 and wide.to_json() != grid.to_json()


def test_a_cancel_shows_the_notice_and_a_new_request_hides_it():
    shown, text = jobs.notice("path-cancel", 1, "path")
    assert shown == jobs.SHOWN and text == "Cancelled: the path computation stopped before it finished."
    assert jobs.notice("path-request", 1, "path") == (jobs.HIDDEN, "")
    assert jobs.notice("path-abandon", 3, "path") == (jobs.HIDDEN, "")
    assert jobs.notice("path-cancel", 0, "path") == (jobs.HIDDEN, ""), "the button's first render is not a click"


def test_a_download_above_the_bound_is_refused_with_the_command_line_that_writes_it(fresh, tmp_path):
    from repgeom import cli

    data = _view(fresh, tab="rdms", n_rdm=3, nodes=["conv2", "conv2_4"], path_models=["recurrent"])
    sent, message, request, abandon = download.download_gate(fresh, 1, data, max_bytes=1 << 16)
    text = message.children
    assert sent is no_update and request is no_update and abandon is no_update
    assert text.startswith("This download would be") and "REPGEOM_MAX_ANSWER_BYTES" in text
    command = text[text.index("python -m repgeom export"):]
    argv = shlex.split(command)[3:]
    out = tmp_path / "view.npz"
    argv[argv.index("--out") + 1] = str(out)
    assert cli.main(argv) == 0, command
    written = np.load(out)
    assert sorted(k for k in written.files if k.startswith("rdm/")) == ["rdm/recurrent/conv2", "rdm/recurrent/conv2_4"]
    assert written["rdm/recurrent/conv2"].shape == (30, 30)


def test_a_download_is_a_job_with_progress_then_answered_from_the_cache(fresh):
    data = _view(fresh, tab="rdms", n_rdm=2, nodes=["conv2"], path_models=["feedforward"], n_embed=2)
    sent, message, request, abandon = download.download_gate(fresh, 1, data)
    assert (sent, message, abandon) == (no_update, "", no_update) and request == {"view": data}
    progress = Recorder()
    file, message = download.download_job(fresh, progress, request)
    assert message == "" and file["filename"] == "repgeom-recurrent-2pc-clean.npz"
    texts = [t for _, _, t in progress.calls]
    total = 2 + (1 + 1) + (1 + len(fresh.nodes("feedforward")))  # stimuli, path; features and each RDM of each model
    assert texts[:3] == [f"0/{total} · stimuli", f"1/{total} · features recurrent", f"2/{total} · rdm recurrent/conv2"]
    assert texts[-1] == f"{total - 1}/{total} · path" and [int(v) for v, _, _ in progress.calls] == list(range(total))
    size = len(__import__("base64").b64decode(file["content"]))
    req, _ = download.export_request(fresh, data)
    assert abs(download.estimated_bytes(fresh, req) - size) < 0.1 * size + (1 << 16)
    direct, message, request, abandon = download.download_gate(fresh, 1, data)
    assert direct == file and request is no_update and isinstance(abandon, str)


def test_the_answer_bound_comes_from_the_environment():
    from repgeom.settings import Settings, parse_settings

    assert Settings().max_answer_bytes == 32 << 20
    assert parse_settings([], {"REPGEOM_MAX_ANSWER_BYTES": "1048576"}).max_answer_bytes == 1 << 20
    with pytest.raises(SystemExit):
        parse_settings([], {"REPGEOM_MAX_ANSWER_BYTES": "12"})


def test_every_job_is_wired_with_progress_cancel_and_a_notice_with_compute_again(engine):
    from repgeom.settings import Settings
    from repgeom.ui import create_app
    from repgeom.ui.ids import JOBS

    app = create_app(Settings(warm=False), engine=engine)
    for name, job in JOBS.items():
        triggered = [k for k, spec in app.callback_map.items() if {"id": job.cancel, "property": "n_clicks"} in spec["inputs"]]
        assert any(f"{job.notice}.style" in k for k in triggered), f"{name}: Cancel shows no notice"
        gate = [k for k, spec in app.callback_map.items() if {"id": job.again, "property": "n_clicks"} in spec["inputs"]]
        assert len(gate) == 1 and f"{job.request}.data" in gate[0], f"{name}: 'Compute again' does not resend the request"
    for spec in (spec for spec in app.callback_map.values() if spec.get("background")):
        assert spec["background"]["progress"] and len(spec["background"]["cancel"]) == 2

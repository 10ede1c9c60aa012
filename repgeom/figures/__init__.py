"""Plotly figure builders: engine results in, ``go.Figure`` out. They draw; they never compute geometry."""

from .embedding import embedding_animation, embedding_grid
from .images import image_data_uri
from .metrics import block_figure, metrics_figure, pair_figure
from .path import labels_distance_figure, path_figure, shepard_figure, survive_figure, training_path_figure
from .probe import probe_embedding_figure, probe_probabilities_figure, probe_rows_figure
from .rdm import difference_figure, rdm_grid, rdm_models, rdm_slider

__all__ = [
    "difference_figure",
    "image_data_uri",
    "labels_distance_figure",
    "shepard_figure",
    "survive_figure",
    "training_path_figure",
    "embedding_animation",
    "embedding_grid",
    "block_figure",
    "metrics_figure",
    "pair_figure",
    "path_figure",
    "probe_embedding_figure",
    "probe_probabilities_figure",
    "probe_rows_figure",
    "rdm_grid",
    "rdm_models",
    "rdm_slider",
]

"""The cached orchestration that the CLI, the dashboard and scripts all call.

Design notes:
    An :class:`Engine` owns the loaded models (moved to the device once), the stimulus
    pool, and a bounded cache keyed by *validated* inputs. Every public method checks
    its arguments first (model and node names against the loaded set, numbers against
    their ranges) and raises :class:`~repgeom.core.errors.RepgeomError` with the allowed
    values, so callers can pass user input straight through.

    ::

        StimulusSpec ─► stimuli ─► features(model, node) ─► rdm(method) ─► path
                                              └──────────► embedding(method)
                                                               metrics

    Each arrow's result is cached under the full key of everything it depends on, so a
    view seen before costs a dictionary look-up, and features are extracted once per
    model, node and stimulus set. The engine holds no module-level state: every server
    worker builds its own.

    Embeddings of several nodes that are not cached yet are computed as one batch (MDS and
    t-SNE of five nodes cost little more than of one), each equal to what that node alone
    gives. A path computes its own RDMs: float32 products (its angles move by < 1e-6 rad)
    and one RDM per distinct activation tensor, leaving the views' float64 RDMs alone.

    Embeddings (the slow step: t-SNE, SMACOF) can also go to a
    :class:`~repgeom.shared_cache.SharedStore` (a folder or Redis), so a background job in
    another process, another worker or another machine finds what any of them computed.
    They travel as ``.npz`` bytes read back with ``allow_pickle=False``, under a key
    that holds the model's checkpoint hash.

    The engine serves the models of one dataset (the default model's); the manifest says
    which dataset each model belongs to, which model and presets the dashboard offers
    first, and the graph tells which nodes are the repeated steps of a recurrent net.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import torch

from .core.checkpoints import LoadedModel, ModelEntry, Preset, default_models_dir, load_all, load_checkpoint, read_manifest_doc
from .core.comparisons import PATH_COMPARISONS
from .core.datasets import DatasetInfo
from .core.describe import describe_nodes
from .core.embedding import DEFAULT_PERPLEXITY, EMBED_METHODS, PERPLEXITY_RANGE, TRUST_SAMPLE, Embedding, align_sequence, embed, embed_many, euclidean_distances
from .core.errors import RepgeomError, choice_error
from .core.features import NodeExtractor, repeated_steps, resolve_device, select_nodes
from .core.landmarks import Landmark, landmark_features, parse_landmarks
from .core.metrics import block_contrast, silhouette
from .core.paths import RepPath, compute_path
from .core.probe import dissimilarity_rows, pca_project, place_by_neighbours
from .core.rdm import RDM, RDM_METHODS, centred_gram, compute_rdm
from .core.stimuli import CONDITIONS, ImageSource, Stimuli, available_per_class, fgsm, load_source, normalize, sample_stimuli
from .core.uncertainty import PathUncertainty, bootstrap_path, difference_rdm
from .core.validate import check_choice, check_float, check_int
from .settings import DEFAULT_CACHE_BYTES as _SETTINGS_CACHE_BYTES
from .shared_cache import SharedStore

__all__ = ["DEFAULT_CACHE_BYTES", "PROBE_NEIGHBOURS", "Engine", "NodeMetrics", "NotCached", "ProbePlace", "ProbeResult", "StimulusSpec", "ViewDefaults"]

#: Default bound on an engine's cache of computed results.
DEFAULT_CACHE_BYTES = _SETTINGS_CACHE_BYTES
#: Bytes of the cache of per-node summaries (block contrast and silhouette: about 10^5 nodes × views).
SUMMARY_CACHE_BYTES = 16 << 20

T = TypeVar("T")


class NotCached(Exception):  # noqa: N818 - an outcome of a probe, not an error
    """Raised inside :meth:`Engine.cached_only` where a result would have to be computed."""


@dataclass(frozen=True)
class StimulusSpec:
    """Which probe images: the dataset, n per class, and clean or FGSM (ε, attacked model)."""

    n_per_class: int = 20  # 0: every image of the source
    condition: str = "clean"
    epsilon: float = 0.0
    attack_model: str = ""
    dataset: str = ""  # "": the engine's default dataset


@dataclass(frozen=True)
class ViewDefaults:
    """What the dashboard shows first, from the manifest's ``defaults``."""

    model: str
    attack_model: str


@dataclass(frozen=True)
class NodeMetrics:
    """Per-node geometry numbers for one model."""

    model: str
    nodes: list[str]
    block_contrast: list[float]
    silhouette: list[float]


#: Stimuli whose mean 2-D position places a new image in an MDS or t-SNE embedding.
PROBE_NEIGHBOURS = 5


@dataclass(frozen=True)
class ProbePlace:
    """Where a new image lands in one node's embedding.

    Attributes:
        embedding: the stimuli's embedding (method, node, coordinates, labels).
        xy: (2,) the new image's position.
        neighbours: stimulus rows whose mean position is ``xy`` (MDS, t-SNE), nearest
            first; empty for PCA, where the image is projected.
    """

    embedding: Embedding
    xy: np.ndarray
    neighbours: np.ndarray


@dataclass(frozen=True)
class ProbeResult:
    """A new image passed through a model.

    Attributes:
        model: the model's id.
        pixels: (C, H, W) float32 in [0, 1], what the model saw (before normalisation).
        probabilities: (K,) the model's class probabilities.
        nodes: the nodes looked at, in graph order.
        rows: per node, (N,) the image's dissimilarity to each stimulus (``method``).
        method: the RDM method of ``rows``.
        places: per embedding method, one :class:`ProbePlace` per node.
        stimuli: the stimuli it is compared with.
    """

    model: str
    pixels: np.ndarray
    probabilities: np.ndarray
    nodes: list[str]
    rows: dict[str, np.ndarray]
    method: str
    places: dict[str, list[ProbePlace]]
    stimuli: Stimuli


def _nbytes(value: Any) -> int:
    if isinstance(value, torch.Tensor):
        return value.element_size() * value.nelement()
    if isinstance(value, np.ndarray):
        return int(value.nbytes)
    if isinstance(value, Mapping):
        return sum(_nbytes(v) for v in value.values())
    if isinstance(value, (list, tuple)):
        return sum(_nbytes(v) for v in value)
    if hasattr(value, "__dataclass_fields__"):
        return sum(_nbytes(getattr(value, f)) for f in value.__dataclass_fields__)
    return 64


class _LRU:
    """A thread-safe LRU cache bounded by the bytes of the arrays it holds.

    In a thread inside :meth:`cached_only`, a look-up that misses raises
    :class:`NotCached` instead of computing.
    """

    def __init__(self, max_bytes: int, probing: threading.local | None = None) -> None:
        self._max = max_bytes
        self._probing = threading.local() if probing is None else probing  # shared: one cached_only covers both caches
        self._data: OrderedDict[Hashable, tuple[Any, int]] = OrderedDict()
        self._size = 0
        self._lock = threading.RLock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: Hashable, fn: Callable[[], T]) -> T:
        with self._lock:
            if key in self._data:
                self._data.move_to_end(key)
                self.hits += 1
                return self._data[key][0]
            self.check_may_compute()
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:  # one computation per key even under concurrent requests
            with self._lock:
                if key in self._data:
                    self.hits += 1
                    return self._data[key][0]
            self.misses += 1
            value = fn()
            size = _nbytes(value)
            with self._lock:
                self._key_locks.pop(key, None)
                if size <= self._max:
                    self._data[key] = (value, size)
                    self._size += size
                    while self._size > self._max and self._data:
                        _, (_, old) = self._data.popitem(last=False)
                        self._size -= old
            return value

    @contextlib.contextmanager
    def cached_only(self) -> Iterator[None]:
        """In this thread, for the ``with`` block: answer from the cache or raise :class:`NotCached`."""
        before = getattr(self._probing, "on", False)
        self._probing.on = True
        try:
            yield
        finally:
            self._probing.on = before

    def check_may_compute(self) -> None:
        """Raise :class:`NotCached` inside :meth:`cached_only` (work outside the cache calls this first)."""
        if getattr(self._probing, "on", False):
            raise NotCached

    @property
    def nbytes(self) -> int:
        """Bytes currently held."""
        return self._size

    def __contains__(self, key: Hashable) -> bool:
        with self._lock:
            return key in self._data

    def __len__(self) -> int:
        return len(self._data)


def _embedding_to_bytes(e: Embedding) -> bytes:
    buf = io.BytesIO()
    np.savez(
        buf, coords=e.coords, labels=e.labels, text=np.array([e.method, e.model, e.node]),
        numbers=np.array([e.trustworthiness, np.nan if e.stress is None else e.stress, np.nan if e.perplexity is None else e.perplexity,
                          *(e.explained or (np.nan, np.nan))]),
    )
    return buf.getvalue()


def _embedding_from_bytes(data: bytes) -> Embedding:
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        method, model, node = (str(t) for t in z["text"])
        trust, stress, perplexity, *shares = (float(x) for x in z["numbers"])
        return Embedding(
            coords=z["coords"], method=method, model=model, node=node, labels=z["labels"], trustworthiness=trust,
            stress=None if math.isnan(stress) else stress, perplexity=None if math.isnan(perplexity) else perplexity,
            explained=(shares[0], shares[1]) if len(shares) == 2 and not math.isnan(shares[0]) else None,
        )


class Engine:
    """Models, stimuli and every geometry computation, cached.

    Args:
        models_dir: folder with ``manifest.json`` (default: ``models/``).
        data_root: torchvision root holding the dataset's full test split (default: its
            embedded probes).
        device: ``"auto"``/``None``, ``"cpu"``, ``"cuda"``...
        cache_bytes: bound on the cache (default :data:`DEFAULT_CACHE_BYTES`, 1 GiB).
        shared: where embeddings are also kept for other processes (default: nowhere).
        trust_code: also serve models whose architecture is a user's Python file (the
            command line's ``--trust-code``; the dashboard never sets it).
    """

    def __init__(
        self,
        models_dir: str | os.PathLike[str] | None = None,
        data_root: str | os.PathLike[str] | None = None,
        device: str | None = None,
        cache_bytes: int | None = None,
        shared: SharedStore | None = None,
        trust_code: bool = False,
    ) -> None:
        self.device = resolve_device(device)
        self._models_dir = Path(models_dir) if models_dir else default_models_dir()
        self._data_root = data_root
        manifest = read_manifest_doc(self._models_dir)
        if not manifest.entries:
            raise RepgeomError("no model could be loaded: the model manifest lists none")
        self._manifest = manifest
        loaded, self.load_errors = load_all(self._models_dir, trust_code)  # callers report refusals their own way
        self.models: dict[str, LoadedModel] = dict(loaded)
        for m in self.models.values():
            m.module.to(self.device)
        if self.device.type == "cuda":  # full float32 everywhere (see features.py); set once, not per call
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        # the default model's dataset first; a dataset whose probes cannot be read refuses its models
        self.datasets: dict[str, DatasetInfo] = {}
        self._sources: dict[str, ImageSource] = {}
        for k in sorted(self.models, key=lambda k: k != manifest.default_model):
            self._add_dataset(k)
        ids = list(self.models)
        first = ids[0] if ids else ""
        self.defaults = ViewDefaults(
            model=manifest.default_model if manifest.default_model in self.models else first,
            attack_model=manifest.attack_model if manifest.attack_model in self.models else first,
        )
        self.presets: tuple[Preset, ...] = manifest.presets
        default_id = self.models[self.defaults.model].entry.dataset if self.defaults.model else manifest.entries[0].dataset
        self.dataset: DatasetInfo = self.datasets.get(default_id) or manifest.dataset(default_id)
        # traced once, here: tracing while serving would break forward passes in other threads
        self._extractors = {k: NodeExtractor(m.module, self.dataset_of(k).input_shape) for k, m in self.models.items()}
        self._nodes = {k: e.nodes for k, e in self._extractors.items()}
        self._steps = {k: repeated_steps(e.nodes, self.models[k].module) for k, e in self._extractors.items()}
        self._descriptions = {k: describe_nodes(e.graph, self._steps[k], self.models[k].entry.descriptions) for k, e in self._extractors.items()}
        self._history_lock = threading.Lock()
        probing = threading.local()
        self._cache = _LRU(DEFAULT_CACHE_BYTES if cache_bytes is None else cache_bytes, probing)
        # Per-node summaries (a few numbers each) in a cache of their own: in the main one, the
        # arrays they were computed from would push them out.
        self._summaries = _LRU(SUMMARY_CACHE_BYTES, probing)
        self.shared = shared

    def _add_dataset(self, model: str) -> None:
        """Load ``model``'s dataset (once); on failure refuse the model with the reason."""
        dataset_id = self.models[model].entry.dataset
        if dataset_id in self.datasets:
            return
        try:
            info = self._manifest.dataset(dataset_id)
            root = self._data_root if self._data_root and info.idx_folder else None
            try:
                source = load_source(info, root, self._models_dir)
            except RepgeomError:
                if not self.datasets and root:  # the default dataset: an explicit data root must hold it
                    raise
                source = load_source(info, None, self._models_dir)
        except RepgeomError as exc:
            self.load_errors[model] = str(exc)
            del self.models[model]
            return
        self.datasets[info.id], self._sources[info.id] = info, source

    @property
    def source(self) -> ImageSource:
        """The default dataset's image pool."""
        return self._sources[self.dataset.id]

    @property
    def max_per_class(self) -> int:
        """Most images per class the default dataset offers."""
        return available_per_class(self.source)

    def dataset_of(self, model: str) -> DatasetInfo:
        """The dataset ``model`` was trained on (its stimuli come from there)."""
        return self.datasets[self.entry(model).dataset]

    def source_of(self, dataset: str) -> ImageSource:
        """The image pool of a served dataset (raises listing the served ones)."""
        return self._sources[check_choice("dataset", dataset, list(self._sources))]

    # ------------------------------------------------------------------ validation
    @property
    def model_ids(self) -> list[str]:
        """Loaded model ids, in manifest order (checkpoints of a training history not included)."""
        return [k for k in self.models if "@" not in k]

    def check_model(self, model: str) -> str:
        """Return ``model`` if loaded (or ``model@epoch`` of a model's training history), else raise listing the ids."""
        if isinstance(model, str) and model not in self.models and "@" in model:
            self._load_epoch(model)
        if not isinstance(model, str) or model not in self.models:
            raise choice_error("model", model, self.model_ids)
        return model

    def replicates(self, model: str) -> list[str]:
        """Loaded models that retrain ``model`` (or that ``model`` retrains) with another seed, on its dataset."""
        self.check_model(model)
        base = self.entry(model).replicate_of or model
        return [k for k in self.model_ids if k != model and (k == base or self.entry(k).replicate_of == base)]

    def seed_variability(
        self, model: str, nodes: str | Sequence[str] | None, spec: StimulusSpec, rdm_method: str = "euclidean", compare: str = "cosine"
    ) -> dict[str, float]:
        """Angle between each node's RDM in ``model`` and in its first replicate (same node names), as a yardstick.

        Returns:
            ``{node: angle in radians}``; empty when ``model`` has no replicate.
        """
        others = self.replicates(model)
        if not others:
            return {}
        twin = others[0]
        chosen = [n for n in self.select_nodes(model, nodes) if n in self.nodes(twin)]
        path = self.path([model, twin], {model: chosen, twin: chosen}, spec, rdm_method, compare)
        k = len(chosen)
        return {n: float(path.distances[i, k + i]) for i, n in enumerate(chosen)}

    def history(self, model: str) -> tuple[int, ...]:
        """The epochs of ``model``'s training history in the manifest (0 = initialisation), or () if none."""
        return tuple(h.epoch for h in self.entry(model).history)

    def _load_epoch(self, model_at: str) -> None:
        """Load ``model@epoch`` from the manifest's history of ``model`` (hash-checked, weights only)."""
        base, _, epoch = model_at.partition("@")
        if base not in self.models or "@" in base or not epoch.isdigit():
            return
        found = next((h for h in self.models[base].entry.history if h.epoch == int(epoch)), None)
        if found is None:
            known = ", ".join(map(str, self.history(base))) or "none"
            raise RepgeomError(f"model {base!r} has no checkpoint of epoch {epoch[:6]}; its history: {known}")
        with self._history_lock:
            if model_at in self.models:
                return
            self._cache.check_may_compute()  # loading a checkpoint is work, not a look-up
            entry = self.models[base].entry
            snapshot = replace(entry, id=model_at, file=found.file, sha256=found.sha256, history=())
            loaded = load_checkpoint(snapshot, self._models_dir)
            loaded.module.to(self.device)
            extractor = NodeExtractor(loaded.module, self.dataset_of(base).input_shape)
            self._extractors[model_at] = extractor
            self._nodes[model_at] = extractor.nodes
            self._steps[model_at] = self._steps[base]
            self._descriptions[model_at] = self._descriptions[base]
            self.models[model_at] = loaded

    def nodes(self, model: str) -> list[str]:
        """Graph node names of ``model``, in graph order."""
        return list(self._nodes[self.check_model(model)])

    def entry(self, model: str) -> ModelEntry:
        """The manifest record of a loaded model (architecture, dataset, colour, accuracies)."""
        return self.models[self.check_model(model)].entry

    def steps(self, model: str) -> tuple[str, ...]:
        """The nodes that are the repeated steps of a recurrent model (one module called again and again), else ()."""
        return self._steps[self.check_model(model)]

    def node_descriptions(self, model: str) -> dict[str, str]:
        """Each node of ``model`` in plain words (the manifest's description, else one derived from the graph)."""
        return dict(self._descriptions[self.check_model(model)])

    def select_nodes(self, model: str, wanted: str | Sequence[str] | None) -> list[str]:
        """Validate a node selection (``"all"``, names, or a comma string) for ``model``."""
        return select_nodes(self.nodes(model), wanted, model)

    def spec(
        self, n_per_class: Any = 20, condition: Any = "clean", epsilon: Any = 0.2, attack_model: Any = None, dataset: Any = None
    ) -> StimulusSpec:
        """Validate a stimulus choice into a :class:`StimulusSpec` (the cache key).

        ``n_per_class`` is 1..the dataset's images per class, or ``"all"`` for every
        image of its source. ``dataset`` defaults to the attacked model's for FGSM, else
        to the engine's default dataset.

        Raises:
            RepgeomError: an unknown dataset, n outside 1..max, unknown condition, ε
                outside [0, 1], an unknown attacked model or one of another dataset.
        """
        check_choice("condition", condition, CONDITIONS)
        attacked = self.check_model(attack_model if attack_model else self.defaults.attack_model) if condition == "fgsm" else ""
        if dataset is None:
            dataset = self.dataset_of(attacked).id if attacked and attack_model else self.dataset.id
        source = self.source_of(dataset)
        limit = available_per_class(source)
        if n_per_class == "all":
            n_per_class = 0  # every image of the source, sorted by class
        else:
            try:
                n_per_class = check_int("images per class", n_per_class, 1, limit)
            except RepgeomError as exc:
                where = " with the embedded probe set (give a data root for more)" if source.name == "embedded" else ""
                raise RepgeomError(f"{exc}{where}") from None
        if condition == "clean":
            return StimulusSpec(int(n_per_class), dataset=dataset)
        eps = check_float("epsilon", epsilon, 0.0, 1.0)
        if self.dataset_of(attacked).id != dataset:
            raise RepgeomError(f"the attacked model {attacked!r} is for dataset {self.dataset_of(attacked).id!r}, not {dataset!r}")
        return StimulusSpec(int(n_per_class), "fgsm", eps, attacked, dataset)

    @staticmethod
    def check_choice(what: str, value: Any, allowed: Sequence[str]) -> str:
        """Return ``value`` if it is one of ``allowed``, else raise listing them."""
        return check_choice(what, value, allowed)

    # ------------------------------------------------------------------ computation
    def stimuli(self, spec: StimulusSpec) -> Stimuli:
        """The probe images for ``spec`` (FGSM images made against ``spec.attack_model``)."""

        def make() -> Stimuli:
            clean = sample_stimuli(self.source_of(spec.dataset or self.dataset.id), spec.n_per_class)
            if spec.condition == "clean":
                return clean
            model = self.models[spec.attack_model].module
            logits = self.models[spec.attack_model].entry.output == "logits"
            return fgsm(model, clean, spec.epsilon, spec.attack_model, device=self.device, logits=logits)

        return self._cache.get_or_compute(("stimuli", spec), make)

    def _same_dataset(self, model: str, spec: StimulusSpec) -> None:
        wanted = spec.dataset or self.dataset.id
        have = self.dataset_of(model).id
        if have != wanted:
            raise RepgeomError(
                f"model {model!r} is for dataset {have!r} and these stimuli are {wanted!r} images: "
                "models on different datasets cannot share stimuli"
            )

    def features(self, model: str, node: str, spec: StimulusSpec) -> torch.Tensor:
        """(N, D) float32 activations of ``model``'s ``node`` for ``spec``'s stimuli, on the device."""
        self.select_nodes(model, [node])
        self._same_dataset(model, spec)

        def make() -> torch.Tensor:
            images = self.stimuli(spec).tensor(self.device)
            return self._extractors[model](images, [node])[node]

        return self._cache.get_or_compute(("features", model, node, spec), make)

    def prefetch_features(self, model: str, nodes: Sequence[str], spec: StimulusSpec) -> None:
        """Extract several nodes in one forward pass (faster than one pass per node)."""
        missing = [n for n in self.select_nodes(model, nodes) if not self._cached(("features", model, n, spec))]
        self._same_dataset(model, spec)
        if len(missing) < 2:
            return
        self._cache.check_may_compute()
        images = self.stimuli(spec).tensor(self.device)
        feats = self._extractors[model](images, missing)
        for n in missing:
            self._cache.get_or_compute(("features", model, n, spec), lambda n=n: feats[n])

    def _cached(self, key: Hashable) -> bool:
        return key in self._cache

    def cached_only(self) -> contextlib.AbstractContextManager[None]:
        """For the ``with`` block, in this thread: answer from the cache, or raise :class:`NotCached` before computing anything.

        What a dashboard asks first, to know whether a view is ready now or needs a background job::

            try:
                with engine.cached_only():
                    figure = draw(engine.path(...))
            except NotCached:
                ...  # start a job
        """
        return self._cache.cached_only()

    def rdm(self, model: str, node: str, spec: StimulusSpec, method: str = "correlation") -> RDM:
        """The RDM of one node."""
        self.check_choice("RDM method", method, RDM_METHODS)

        def make() -> RDM:
            matrix = compute_rdm(self.features(model, node, spec), method).cpu().numpy()
            return RDM(matrix, model, node, method, self.stimuli(spec).labels)

        return self._cache.get_or_compute(("rdm", model, node, spec, method), make)

    def rdms(self, model: str, nodes: str | Sequence[str] | None, spec: StimulusSpec, method: str = "correlation") -> list[RDM]:
        """RDMs of several nodes of one model, in graph order."""
        chosen = self.select_nodes(model, nodes)
        self.check_choice("RDM method", method, RDM_METHODS)
        if not all(self._cached(("rdm", model, n, spec, method)) for n in chosen):
            self.prefetch_features(model, chosen, spec)
        return [self.rdm(model, n, spec, method) for n in chosen]

    def embedding(
        self,
        model: str,
        node: str,
        spec: StimulusSpec,
        method: str = "pca",
        seed: int = 0,
        perplexity: float = DEFAULT_PERPLEXITY,
    ) -> Embedding:
        """2-D embedding of one node's stimuli, with trustworthiness and stress."""
        self.check_choice("embedding method", method, EMBED_METHODS)
        seed, perplexity = self._embed_args(method, seed, perplexity)
        self.select_nodes(model, [node])

        def make() -> Embedding:
            return self._embed_nodes(model, [node], spec, method, seed, perplexity)[0]

        key = self._embed_key(model, node, spec, method, seed, perplexity)
        return self._cache.get_or_compute(key, lambda: self._shared_or(key, make))

    def embedding_if_computed(
        self,
        model: str,
        node: str,
        spec: StimulusSpec,
        method: str = "pca",
        seed: int = 0,
        perplexity: float = DEFAULT_PERPLEXITY,
    ) -> Embedding | None:
        """The embedding :meth:`embedding` would give, if this process or the shared store already holds it, else ``None``.

        For requests that must stay quick (a click on a point): they never start a t-SNE.
        """
        self.check_choice("embedding method", method, EMBED_METHODS)
        seed, perplexity = self._embed_args(method, seed, perplexity)
        self.select_nodes(model, [node])
        key = self._embed_key(model, node, spec, method, seed, perplexity)
        if self._cached(key):
            return self.embedding(model, node, spec, method, seed, perplexity)
        found = self._from_shared(key)
        return None if found is None else self._cache.get_or_compute(key, lambda: found)

    @staticmethod
    def _embed_args(method: str, seed: Any, perplexity: Any) -> tuple[int, float]:
        seed = check_int("seed", seed, 0, 2**31 - 1)
        perplexity = check_float("perplexity", perplexity, *PERPLEXITY_RANGE) if method == "tsne" else DEFAULT_PERPLEXITY
        return seed, perplexity

    @staticmethod
    def _embed_key(
        model: str, node: str, spec: StimulusSpec, method: str, seed: int, perplexity: float
    ) -> tuple[Any, ...]:
        return ("embed", model, node, spec, method, *((seed, perplexity) if method == "tsne" else ()))

    def _distances(self, model: str, node: str, spec: StimulusSpec) -> torch.Tensor | None:
        """Euclidean distances between the stimuli of one node, cached (shared by the three methods)."""
        feats = self.features(model, node, spec)
        if feats.shape[0] > TRUST_SAMPLE:
            return None
        return self._cache.get_or_compute(("dist", model, node, spec), lambda: euclidean_distances(feats).cpu())

    def feature_distances(self, model: str, node: str, spec: StimulusSpec) -> np.ndarray:
        """(N, N) Euclidean distances between one node's stimuli, cached (the embeddings' own, for their distortion)."""
        self.select_nodes(model, [node])
        feats = self.features(model, node, spec)
        return self._cache.get_or_compute(("dist", model, node, spec), lambda: euclidean_distances(feats).cpu()).numpy()

    def _embed_nodes(
        self, model: str, nodes: Sequence[str], spec: StimulusSpec, method: str, seed: int, perplexity: float
    ) -> list[Embedding]:
        """Compute (no cache look-up) the embeddings of ``nodes``, as one batch."""
        feats = [self.features(model, n, spec) for n in nodes]
        dists = [self._distances(model, n, spec) for n in nodes]
        labels = self.stimuli(spec).labels
        if len(nodes) == 1:
            return [embed(feats[0], method, labels, model, nodes[0], seed, perplexity, distances=dists[0])]
        return embed_many(feats, method, labels, model, list(nodes), seed, perplexity, distances=dists)

    def _shared_digest(self, key: tuple[Any, ...]) -> str:
        dataset = key[3].dataset or self.dataset.id
        return hashlib.sha256(repr((key, self.models[key[1]].entry.sha256, self.source_of(dataset).name)).encode()).hexdigest()

    def _from_shared(self, key: tuple[Any, ...]) -> Embedding | None:
        if self.shared is None:
            return None
        data = self.shared.get(self._shared_digest(key))
        if data is None:
            return None
        try:
            return _embedding_from_bytes(data)
        except (ValueError, KeyError, OSError):
            return None  # unreadable entry: recompute and overwrite

    def _shared_or(self, key: tuple[Any, ...], make: Callable[[], Embedding]) -> Embedding:
        """The embedding from the shared store, else computed by ``make`` and stored there."""
        if self.shared is None:
            return make()
        found = self._from_shared(key)
        if found is not None:
            return found
        value = make()
        self.shared.put(self._shared_digest(key), _embedding_to_bytes(value))
        return value

    def embeddings(
        self,
        model: str,
        nodes: str | Sequence[str] | None,
        spec: StimulusSpec,
        method: str = "pca",
        seed: int = 0,
        perplexity: float = DEFAULT_PERPLEXITY,
        align: bool = False,
    ) -> list[Embedding]:
        """Embeddings of several nodes, optionally Procrustes-aligned (and scaled) frame to frame.

        The nodes found in neither the cache nor the shared store are computed together,
        as one batch (:func:`~repgeom.core.embedding.embed_many`): MDS and t-SNE of
        several nodes cost little more than of one.
        """
        chosen = self.select_nodes(model, nodes)
        self.check_choice("embedding method", method, EMBED_METHODS)
        seed, perplexity = self._embed_args(method, seed, perplexity)
        keys = {n: self._embed_key(model, n, spec, method, seed, perplexity) for n in chosen}
        missing = [n for n in chosen if not self._cached(keys[n])]
        for n in list(missing):
            found = self._from_shared(keys[n])
            if found is not None:
                self._cache.get_or_compute(keys[n], lambda found=found: found)
                missing.remove(n)
        if len(missing) > 1:
            self._cache.check_may_compute()
            self.prefetch_features(model, missing, spec)
            for n, e in zip(missing, self._embed_nodes(model, missing, spec, method, seed, perplexity), strict=True):
                if self.shared is not None:
                    self.shared.put(self._shared_digest(keys[n]), _embedding_to_bytes(e))
                self._cache.get_or_compute(keys[n], lambda e=e: e)
        out = [self.embedding(model, n, spec, method, seed, perplexity) for n in chosen]
        return align_sequence(out, rescale=True) if align else out

    def embeddings_ready(
        self, model: str, nodes: str | Sequence[str] | None, spec: StimulusSpec, method: str, seed: int = 0, perplexity: float = DEFAULT_PERPLEXITY
    ) -> bool:
        """Whether :meth:`embeddings` of these arguments would compute nothing: each node's embedding is in the cache or the shared store."""
        chosen = self.select_nodes(model, nodes)
        self.check_choice("embedding method", method, EMBED_METHODS)
        seed, perplexity = self._embed_args(method, seed, perplexity)
        keys = [self._embed_key(model, n, spec, method, seed, perplexity) for n in chosen]
        return all(self._cached(k) or (self.shared is not None and self.shared.get(self._shared_digest(k)) is not None) for k in keys)

    def path(
        self,
        models: Sequence[str],
        nodes: Mapping[str, str | Sequence[str] | None] | None,
        spec: StimulusSpec,
        rdm_method: str = "euclidean",
        compare: str = "cosine",
        seed: int = 0,
        landmarks: str | Sequence[str] = "labels",
    ) -> RepPath:
        """The representational path of ``models`` (their chosen nodes), reference landmarks and ``labels``.

        Args:
            models: model ids, in the order their rows appear.
            nodes: per model, ``"all"``/``None`` or names; missing models take all nodes.
            spec: the stimuli.
            rdm_method: RDM method inside the path (the seed uses ``"euclidean"``).
            compare: one of :data:`~repgeom.core.comparisons.PATH_COMPARISONS`, each as an angle.
            seed: seeds the MDS restarts, the noise landmark and the label shuffle.
            landmarks: ``labels`` (always there), ``noise``, ``shuffled`` and
                ``group:NAME=a,b|c,d`` items (see :func:`~repgeom.core.landmarks.parse_landmarks`).
        """
        chosen, marks, seed = self._path_request(models, nodes, spec, rdm_method, compare, seed, landmarks)
        return self._path(chosen, marks, spec, rdm_method, compare, seed)

    def _path(
        self,
        chosen: Mapping[str, tuple[str, ...]],
        marks: tuple[Landmark, ...],
        spec: StimulusSpec,
        rdm_method: str,
        compare: str,
        seed: int,
        points: tuple[list[RDM], list[RDM], np.ndarray] | None = None,
    ) -> RepPath:
        """The cached path of validated arguments (``points``: its matrices, when the caller already has them)."""
        key = ("path", tuple(chosen.items()), spec, rdm_method, compare, seed, marks)

        def make() -> RepPath:
            nodes, extra, last = points or self._path_points(chosen, spec, rdm_method, compare, marks, seed)
            return compute_path(nodes, self.stimuli(spec).labels, compare, seed, landmarks=extra, labels_matrix=last)

        return self._cache.get_or_compute(key, make)

    def path_uncertainty(
        self,
        models: Sequence[str],
        nodes: Mapping[str, str | Sequence[str] | None] | None,
        spec: StimulusSpec,
        rdm_method: str = "euclidean",
        compare: str = "cosine",
        seed: int = 0,
        landmarks: str | Sequence[str] = "labels",
        n_boot: int = 100,
    ) -> PathUncertainty:
        """Bootstrap the path of the same arguments over its stimuli (within class): intervals and ellipses.

        Raises:
            RepgeomError: for the path's own argument errors, ``n_boot`` outside 2..1000, or
                Kendall's tau-a (too slow to bootstrap: 0.05 s a pair of RDMs).
        """
        n_boot = check_int("bootstrap samples", n_boot, 2, 1000)
        if compare == "tau_a":
            raise RepgeomError("bootstrap intervals are not offered for tau_a (too slow); allowed: every other comparison")
        chosen, marks, seed = self._path_request(models, nodes, spec, rdm_method, compare, seed, landmarks)
        key = ("path-boot", tuple(chosen.items()), spec, rdm_method, compare, seed, marks, n_boot)

        def make() -> PathUncertainty:
            points = self._path_points(chosen, spec, rdm_method, compare, marks, seed)  # once, for the path and the samples
            path = self._path(chosen, marks, spec, rdm_method, compare, seed, points)
            node_rdms, extra, last = points
            stack = torch.from_numpy(np.stack([np.asarray(r.matrix, dtype=np.float64) for r in [*node_rdms, *extra]] + [last]))
            return bootstrap_path(stack, self.stimuli(spec).labels, compare, path.coords, n_boot, seed)

        return self._cache.get_or_compute(key, make)

    def _path_request(
        self, models: Sequence[str], nodes: Any, spec: StimulusSpec, rdm_method: str, compare: str, seed: Any, landmarks: Any
    ) -> tuple[dict[str, tuple[str, ...]], tuple[Landmark, ...], int]:
        """Validate a path's arguments: the chosen nodes per model, the landmarks and the seed."""
        if not models:
            raise RepgeomError(f"choose at least one model; allowed: {', '.join(self.model_ids)}")
        models = [self.check_model(m) for m in models]
        if len(set(models)) != len(models):
            raise RepgeomError("each model may appear once in a path")
        on = {m: self.dataset_of(m).id for m in models}
        if len(set(on.values())) > 1:
            listed = ", ".join(f"{m} ({d})" for m, d in on.items())
            raise RepgeomError(f"models on different datasets cannot share stimuli, so they cannot share a path: {listed}")
        self._same_dataset(models[0], spec)
        self.check_choice("RDM method", rdm_method, RDM_METHODS)
        self.check_choice("comparison method", compare, PATH_COMPARISONS)
        seed = check_int("seed", seed, 0, 2**31 - 1)
        marks = tuple(lm for lm in parse_landmarks(landmarks, self.dataset_of(models[0]).class_names) if lm.kind != "labels")
        chosen = {m: tuple(self.select_nodes(m, (nodes or {}).get(m))) for m in models}
        return chosen, marks, seed

    def _path_points(
        self, chosen: Mapping[str, Sequence[str]], spec: StimulusSpec, rdm_method: str, compare: str, marks: Sequence[Landmark], seed: int
    ) -> tuple[list[RDM], list[RDM], np.ndarray]:
        """The matrices a path compares: its nodes', its landmarks' and the labels' (centred Gram matrices for CKA)."""
        stim = self.stimuli(spec)
        dataset = stim.dataset
        input_dim = int(np.prod(dataset.input_shape))

        def matrix(feats: torch.Tensor) -> np.ndarray:
            if compare == "cka":
                x = feats.to(torch.float64)
                return centred_gram(x, torch.float64, columns=x.mean(dim=0))[0].cpu().numpy()
            return compute_rdm(feats, rdm_method).cpu().numpy()

        if compare == "cka":
            points = [RDM(matrix(self.features(m, n, spec)), m, n, rdm_method, stim.labels) for m, nodes in chosen.items() for n in nodes]
        else:
            points = self._path_rdms(chosen, spec, rdm_method)
        extra = [
            RDM(matrix(landmark_features(lm, stim.labels, dataset.n_classes, input_dim, seed)), "landmark", lm.name, rdm_method, stim.labels)
            for lm in marks
        ]
        labels_lm = Landmark("labels", "labels")
        last = matrix(landmark_features(labels_lm, stim.labels, dataset.n_classes, input_dim, seed))
        return points, extra, last

    def _path_rdms(self, chosen: Mapping[str, Sequence[str]], spec: StimulusSpec, method: str) -> list[RDM]:
        """The RDMs a path compares: float32 products, and each distinct feature tensor once.

        A path only uses the angles between RDMs, and those move by less than 1e-6 rad
        (3e-7 on the shipped models' 35 nodes at 50 per class) when the products run in
        float32 on centred features, at half the cost of float64: the products over every
        node of two models are most of a path's time. Nodes whose activations are identical
        (dropout and flatten in eval mode, the ``input`` of every model) share one RDM.
        These RDMs are not cached as the views' (float64) RDMs are.
        """
        labels = self.stimuli(spec).labels
        done: dict[tuple[Any, ...], list[tuple[torch.Tensor, np.ndarray]]] = {}
        out = []
        for model, nodes in chosen.items():
            self.prefetch_features(model, list(nodes), spec)
            for node in nodes:
                feats = self.features(model, node, spec)
                flat = feats.reshape(-1)
                probe = (tuple(feats.shape), flat[:: max(1, flat.numel() // 256)][:256].cpu().numpy().tobytes())
                twins = done.setdefault(probe, [])
                matrix = next((m for f, m in twins if torch.equal(f, feats)), None)
                if matrix is None:
                    matrix = compute_rdm(feats, method, dtype=torch.float32).to(torch.float64).cpu().numpy()
                    twins.append((feats, matrix))
                out.append(RDM(matrix, model, node, method, labels))
        return out

    def difference(
        self, model_a: str, node_a: str, model_b: str, node_b: str, spec: StimulusSpec, method: str = "correlation", n_boot: int = 100, seed: int = 0
    ) -> tuple[np.ndarray, np.ndarray]:
        """Rank-transformed RDM of A at ``node_a`` minus B at ``node_b``, and the cells whose sign the bootstrap confirms (95 %).

        Raises:
            RepgeomError: unknown models or nodes, models of different datasets, ``n_boot`` outside 2..1000.
        """
        n_boot = check_int("bootstrap samples", n_boot, 2, 1000)
        a, b = self.rdm(model_a, node_a, spec, method), self.rdm(model_b, node_b, spec, method)
        key = ("diff", model_a, node_a, model_b, node_b, spec, method, n_boot, seed)
        return self._cache.get_or_compute(key, lambda: difference_rdm(a.matrix, b.matrix, a.labels, n_boot, seed))

    def node_metrics(self, model: str, nodes: str | Sequence[str] | None, spec: StimulusSpec, method: str = "correlation") -> NodeMetrics:
        """Block contrast and silhouette of every chosen node of ``model``.

        Each node's two numbers are kept in a cache of small results, so they are answered
        again after its RDM and features have been evicted.
        """
        chosen = self.select_nodes(model, nodes)
        self.check_choice("RDM method", method, RDM_METHODS)
        missing = [n for n in chosen if ("metrics", model, n, spec, method) not in self._summaries]
        if missing and not all(self._cached(("rdm", model, n, spec, method)) for n in missing):
            self.prefetch_features(model, missing, spec)

        def of(node: str) -> tuple[float, float]:
            def make() -> tuple[float, float]:
                r = self.rdm(model, node, spec, method)
                return block_contrast(r.matrix, r.labels), silhouette(r.matrix, r.labels, r.method)

            return self._summaries.get_or_compute(("metrics", model, node, spec, method), make)

        values = [of(n) for n in chosen]
        return NodeMetrics(model, list(chosen), [v[0] for v in values], [v[1] for v in values])

    def probe(
        self,
        model: str,
        pixels: np.ndarray,
        nodes: str | Sequence[str] | None,
        spec: StimulusSpec,
        rdm_method: str = "correlation",
        methods: Sequence[str] = ("pca",),
        perplexity: float = DEFAULT_PERPLEXITY,
        neighbours: int = PROBE_NEIGHBOURS,
    ) -> ProbeResult:
        """Pass one new image through ``model``: its class probabilities, and where it lands among ``spec``'s stimuli.

        Args:
            model: a loaded model id.
            pixels: (C, H, W) pixels in [0, 1] of the model's dataset's shape (see
                :func:`~repgeom.core.probe.prepare_image`); normalised here like every stimulus.
            nodes: the nodes to place it at.
            spec: the stimuli to compare with (the embeddings tab's).
            rdm_method: the dissimilarity of its rows to the stimuli.
            methods: embeddings to place it in: projected into PCA, at the mean of its
                ``neighbours`` nearest stimuli (feature space) in MDS and t-SNE.
            perplexity: t-SNE's.
            neighbours: ``k`` of that placement.

        Raises:
            RepgeomError: unknown model, nodes or methods, stimuli of another dataset, or
                pixels of the wrong shape or range.
        """
        chosen = self.select_nodes(model, nodes)
        self._same_dataset(model, spec)
        self.check_choice("RDM method", rdm_method, RDM_METHODS)
        methods = [self.check_choice("embedding method", m, EMBED_METHODS) for m in dict.fromkeys(methods)]
        seed, perplexity = self._embed_args("tsne", 0, perplexity)
        neighbours = check_int("neighbours", neighbours, 1, 100)
        dataset = self.dataset_of(model)
        pixels = np.asarray(pixels, dtype=np.float32)
        if pixels.shape != dataset.input_shape or not np.isfinite(pixels).all() or pixels.min() < 0 or pixels.max() > 1:
            raise RepgeomError(f"a probe image must be {dataset.input_shape} pixels in [0, 1] for {dataset.name}, got shape {pixels.shape}")
        x = normalize(torch.from_numpy(pixels[None]).to(self.device), dataset)
        loaded = self.models[model]
        with torch.no_grad():
            out = loaded.module(x)
            probs = torch.softmax(out, dim=1) if loaded.entry.output == "logits" else out
        new = self._extractors[model](x, chosen)
        self.prefetch_features(model, chosen, spec)
        feats = {n: self.features(model, n, spec) for n in chosen}
        rows = {n: dissimilarity_rows(feats[n], new[n], rdm_method)[0] for n in chosen}
        places: dict[str, list[ProbePlace]] = {}
        for method in methods:
            embs = self.embeddings(model, chosen, spec, method, seed, perplexity)
            placed = []
            for n, e in zip(chosen, embs, strict=True):
                if method == "pca":
                    placed.append(ProbePlace(e, pca_project(feats[n], e.coords, new[n])[0], np.zeros(0, dtype=np.int64)))
                else:
                    xy, near, _ = place_by_neighbours(feats[n], e.coords, new[n], neighbours)
                    placed.append(ProbePlace(e, xy[0], near[0]))
            places[method] = placed
        return ProbeResult(
            model, pixels, probs[0].double().cpu().numpy(), chosen, rows, rdm_method, places, self.stimuli(spec)
        )

    def cache_info(self) -> dict[str, int]:
        """Entries, bytes, hits and misses of the cache."""
        return {"entries": len(self._cache), "bytes": self._cache.nbytes, "hits": self._cache.hits, "misses": self._cache.misses}

"""``python -m repgeom``: list models and nodes, export geometry, train.

Every user mistake ends as one line on stderr (``repgeom: error: ...``) and exit status 2;
a full disk is one line and exit status 1. An output file is written to a temporary name
and renamed only when complete; SIGTERM and SIGHUP are turned into the same
``KeyboardInterrupt`` as Ctrl-C, so the temporary files go in every case.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from .argparsing import OneLineParser
from .core.atomic import DiskFullError
from .core.errors import RepgeomError
from .settings import env_data_root, env_models_dir

__all__ = ["main"]

log = logging.getLogger("repgeom")


def _epsilon(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"epsilon must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"epsilon must be in [0, 1], got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 (or 'all' for images per class), got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1 (or 'all' for images per class), got {text}")
    return value


def _size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"--size must be H,W (two whole numbers), got {text!r}") from None
    return h, w


def _count_or_all(text: str) -> int | str:
    return "all" if text == "all" else _positive_int(text)


def _add_common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--models-dir", default=env_models_dir(), help="folder with manifest.json (default: $REPGEOM_MODELS_DIR, else models/)")
    p.add_argument(
        "--data-root", default=env_data_root(),
        help="torchvision root holding the dataset's full test split (default: $REPGEOM_DATA_ROOT, else the embedded probes)",
    )
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:K or mps")


def build_parser() -> argparse.ArgumentParser:
    """The command-line grammar."""
    from .core.comparisons import PATH_COMPARISONS
    from .core.embedding import DEFAULT_PERPLEXITY
    from .core.rdm import RDM_METHODS

    parser = OneLineParser(prog="repgeom", description="Representational geometry of image classifiers: RDMs, embeddings, representational paths.")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress details")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=OneLineParser)

    p = sub.add_parser("models", help="one line per model: id, dataset, parameters, clean accuracy, SHA-256 prefix")
    p.add_argument("--models-dir", default=env_models_dir())

    p = sub.add_parser("nodes", help="graph node names of MODEL, in graph order")
    p.add_argument("model")
    p.add_argument("--models-dir", default=env_models_dir())

    p = sub.add_parser("export", help="RDMs, embeddings and the representational path to an .npz file")
    _add_common(p)
    p.add_argument("--out", required=True, help="output .npz file")
    p.add_argument("--models", default=None, help="comma-separated model ids (default: the manifest's default model)")
    p.add_argument("--layers", default="all", help="all, or comma-separated node names (default: all)")
    p.add_argument("--n-per-class", type=_count_or_all, default=20, help="images per class, or 'all' (default: 20)")
    p.add_argument("--condition", choices=("clean", "fgsm"), default="clean")
    p.add_argument("--epsilon", type=_epsilon, default=0.2, help="FGSM step in [0, 1] (default: 0.2)")
    p.add_argument("--attack-model", default=None, help="model the FGSM images are made against (default: the first exported)")
    p.add_argument("--rdm", choices=RDM_METHODS, default="correlation", help="RDM method for rdm/* (default: correlation)")
    p.add_argument("--path-rdm", choices=RDM_METHODS, default="euclidean", help="RDM method inside the path (default: euclidean, as the seed)")
    p.add_argument("--compare", choices=PATH_COMPARISONS, default="cosine", help="RDM comparison for the path, each as an angle (default: cosine, as the seed)")
    p.add_argument("--landmarks", action="append", default=None, metavar="LIST",
                   help="path reference points: labels,noise,shuffled,group:NAME=1,3,5|0,2,4 (repeatable; default: labels)")
    p.add_argument("--bootstrap", type=int, default=0, metavar="B",
                   help="bootstrap the path over stimuli B times: path/boot_distances (B x K x K), path/ellipses (K x 2 x 2), path/ci_low, path/ci_high")
    p.add_argument("--difference", action="append", default=None, metavar="A/NODE,B/NODE",
                   help="rank-transformed RDM difference with a bootstrap sign mask: diff/<A/NODE>-<B/NODE>, diff/mask (repeatable)")
    p.add_argument("--embed", default="", help="comma-separated subset of pca,mds,tsne (default: none)")
    p.add_argument("--perplexity", type=float, default=DEFAULT_PERPLEXITY, help="t-SNE perplexity (default: 40)")
    p.add_argument("--seed", type=int, default=0, help="random seed for t-SNE (default: 0)")
    p.add_argument("--save-features", action="store_true", help="also write features/<model>/<node>")
    p.add_argument("--trust-code", action="store_true", help="also load models whose architecture is a Python file (runs its code)")
    p.add_argument("--over-training", action="store_true", help="path over each model's training history: path/names are <model>@<epoch>/<node>")
    p.add_argument("--rsatoolbox", default=None, metavar="FILE.hdf5", help="also write the RDMs for rsatoolbox.rdm.load_rdm")

    p = sub.add_parser("datasets", help="one line per dataset: id, classes, image size, channels, probe images per class")
    p.add_argument("--models-dir", default=env_models_dir())

    p = sub.add_parser("add-dataset", help="register an image folder (one subfolder of PNG/JPEG images per class) as a dataset")
    p.add_argument("id", help="the dataset's id (letters, digits, '-', '_')")
    p.add_argument("--images", required=True, metavar="DIR", help="folder with one subfolder per class")
    p.add_argument("--size", type=_size, default=None, metavar="H,W", help="resize every image to H,W pixels (default: the first image's size)")
    p.add_argument("--channels", type=int, choices=(1, 3), default=None, help="1 (grey) or 3 (colour) (default: 3 if any image is colour)")
    p.add_argument("--mean", type=float, default=None, help="normalisation mean (default: the probe images' own)")
    p.add_argument("--std", type=float, default=None, help="normalisation std (default: the probe images' own)")
    p.add_argument("--per-class", type=_positive_int, default=100, help="probe images kept per class, the first in file-name order (default: 100)")
    p.add_argument("--models-dir", default=env_models_dir())

    p = sub.add_parser("add-model", help="check a weights file against an architecture and a dataset, and register it")
    p.add_argument("id", help="the model's id (letters, digits, '.', '-', '_')")
    p.add_argument("--arch", required=True, help="repgeom:feedforward, repgeom:recurrent or torchvision:NAME (e.g. torchvision:resnet18)")
    p.add_argument("--weights", required=True, metavar="FILE", help="a state dict: torch.save(model.state_dict(), FILE)")
    p.add_argument("--dataset", required=True, help="a dataset id (see `repgeom datasets`)")
    p.add_argument("--trust-code", action="store_true", help="allow --arch python:FILE.py:Class, which imports and runs FILE.py")
    p.add_argument("--models-dir", default=env_models_dir())

    p = sub.add_parser("train", help="train MODEL by the recipe in its manifest entry, on its dataset, and update the manifest")
    p.add_argument("model")
    p.add_argument("--models-dir", default=env_models_dir())
    p.add_argument("--data-root", default=env_data_root() or "data", help="torchvision root of the dataset (downloaded there if missing and online)")
    p.add_argument("--device", default=None)
    p.add_argument("--epochs", type=_positive_int, default=None, help="override the recipe's epochs")
    p.add_argument("--checkpoint-every", type=_positive_int, default=None, metavar="K",
                   help="also keep the weights at initialisation and every K epochs (and the last) as the model's training history")
    return parser


def _cmd_train(args: argparse.Namespace) -> int:
    import dataclasses

    import torch
    from tqdm import tqdm

    from .core import checkpoints, stimuli, training
    from .core.datasets import get_dataset
    from .core.errors import choice_error
    from .core.features import resolve_device

    folder = args.models_dir or checkpoints.default_models_dir()
    entries = {e.id: e for e in checkpoints.read_manifest(folder)}
    if args.model not in entries:
        raise choice_error("model", args.model, entries)
    entry = entries[args.model]
    recipe = training.Recipe.from_json(entry.recipe, entry.architecture)
    if args.epochs:
        recipe = dataclasses.replace(recipe, epochs=args.epochs)
    dataset = get_dataset(entry.dataset)
    device = resolve_device(args.device)
    train_x, train_y = stimuli.load_split(dataset, args.data_root, train=True, download=True)
    test_x, test_y = stimuli.load_split(dataset, args.data_root, train=False, download=True)
    bar = tqdm(total=recipe.epochs * ((len(train_y) + recipe.batch_size - 1) // recipe.batch_size), desc=f"train {args.model}", disable=None, unit="batch")

    def progress(done: int, total: int, loss: float) -> None:
        bar.update(1)
        if done % 50 == 0:
            bar.set_postfix(loss=f"{loss:.3f}")

    history: dict[int, dict[str, torch.Tensor]] | None = None if args.checkpoint_every is None else {}

    def keep(epoch: int, module: torch.nn.Module) -> None:
        if history is not None and (epoch % args.checkpoint_every == 0 or epoch == recipe.epochs):
            history[epoch] = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}

    model = training.train(recipe, train_x, train_y, dataset, device=device, progress=progress, on_epoch=keep)
    bar.close()
    acc = training.evaluate(model, test_x, test_y, dataset, epsilon=0.2, device=device)
    details = recipe.describe(dataset) | {"device": str(device), "torch": torch.__version__}
    entry = checkpoints.save_checkpoint(folder, dataclasses.replace(entry, accuracy=acc, recipe=details), model, history)
    print(f"{entry.id}\tparams={entry.parameters}\tclean={acc['clean']:.4f}\tfgsm@0.2={acc['fgsm']:.4f}\tsha256={entry.sha256[:12]}")
    return 0


def _cmd_datasets(args: argparse.Namespace) -> int:
    from .core.checkpoints import default_models_dir, read_manifest_doc
    from .core.datasets import builtin_datasets
    from .core.stimuli import available_per_class, load_source

    folder = args.models_dir or default_models_dir()
    registered = read_manifest_doc(folder).datasets if (Path(folder) / "manifest.json").exists() else ()
    for d in (*builtin_datasets().values(), *registered):
        per_class = available_per_class(load_source(d, None, folder)) if d.probes else 0
        h, w = d.image_size
        print(f"{d.id}\t{d.n_classes} classes\t{h}x{w}\t{d.channels} channel{'s' if d.channels > 1 else ''}\t{per_class} probes/class")
    return 0


def _cmd_add_dataset(args: argparse.Namespace) -> int:
    from .core.checkpoints import default_models_dir
    from .registry import register_dataset

    info = register_dataset(
        args.models_dir or default_models_dir(), args.id, args.images, size=args.size, channels=args.channels,
        mean=args.mean, std=args.std, per_class=args.per_class,
    )
    h, w = info.image_size
    print(f"registered dataset {info.id}: {info.n_classes} classes, {h}x{w}, {info.channels} channel(s), probes {info.probes}")
    return 0


def _cmd_add_model(args: argparse.Namespace) -> int:
    from .core.checkpoints import default_models_dir
    from .registry import register_model

    e = register_model(args.models_dir or default_models_dir(), args.id, args.arch, args.weights, args.dataset, args.trust_code)
    print(f"registered model {e.id}: {e.architecture} on {e.dataset}, {e.parameters} parameters, "
          f"probe accuracy {100 * e.accuracy['probe']:.1f}%, {len(e.nodes)} nodes, sha256 {e.sha256[:12]}")
    return 0


def _cmd_models(args: argparse.Namespace) -> int:
    from .core import checkpoints

    entries = checkpoints.read_manifest(args.models_dir)
    for e in entries:
        clean = e.accuracy.get("clean")
        acc = f"{100 * clean:.2f}%" if clean is not None else "n/a"
        print(f"{e.id}\t{e.dataset}\t{e.parameters}\t{acc}\t{e.sha256[:12]}")
    return 0


def _cmd_nodes(args: argparse.Namespace) -> int:
    from .core.checkpoints import read_manifest
    from .core.errors import choice_error

    entries = {e.id: e for e in read_manifest(args.models_dir)}
    if args.model not in entries:
        raise choice_error("model", args.model, entries)
    names = entries[args.model].nodes
    if not names:  # not recorded when the checkpoint was saved: trace the model
        from . import load_model
        from .core.features import node_names

        names = tuple(node_names(load_model(args.model, args.models_dir)))
    for name in names:
        print(name)
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from .core.checkpoints import read_manifest_doc
    from .core.embedding import EMBED_METHODS
    from .core.errors import choice_error
    from .export import ExportRequest, collect_export, write_export
    from .pipeline import Engine

    methods = [m.strip() for m in args.embed.split(",") if m.strip()]
    for m in methods:
        if m not in EMBED_METHODS:
            raise choice_error("embedding method", m, EMBED_METHODS)
    if args.rsatoolbox and not args.rsatoolbox.endswith((".hdf5", ".h5")):
        raise RepgeomError(f"--rsatoolbox must name a .hdf5 or .h5 file (rsatoolbox reads only those), got {args.rsatoolbox!r}")
    if args.models:
        models = [m.strip() for m in args.models.split(",") if m.strip()]
    else:  # the manifest's default model, even when it cannot be loaded (then its refusal is the error)
        doc = read_manifest_doc(args.models_dir)
        models = [doc.default_model or doc.entries[0].id] if doc.entries else []
    engine = Engine(args.models_dir, args.data_root, args.device, trust_code=args.trust_code)
    for m in models:
        if m in engine.load_errors:
            raise RepgeomError(engine.load_errors[m])
    if not models:
        raise RepgeomError(f"choose at least one model; allowed: {', '.join(engine.model_ids)}")
    dataset = engine.dataset_of(models[0]).id
    spec = engine.spec(args.n_per_class, args.condition, args.epsilon, args.attack_model or models[0], dataset)
    req = ExportRequest(
        models=models,
        layers=args.layers,
        spec=spec,
        rdm_method=args.rdm,
        path_rdm_method=args.path_rdm,
        compare=args.compare,
        embed=methods,
        seed=args.seed,
        perplexity=args.perplexity,
        save_features=args.save_features,
        over_training=args.over_training,
        landmarks=tuple(args.landmarks or ("labels",)),
        bootstrap=args.bootstrap,
        differences=tuple(args.difference or ()),
    )
    with tqdm(desc="export", disable=None, unit="step") as bar:

        def step(msg: str) -> None:
            bar.set_postfix_str(msg)
            bar.update(1)

        arrays = collect_export(engine, req, step)
    write_export(args.out, arrays, args.rsatoolbox, args.rdm)
    n_rdms = sum(k.startswith("rdm/") for k in arrays)
    print(f"wrote {args.out}: {n_rdms} RDMs of {len(arrays['labels'])} stimuli, path of {len(arrays['path/names'])} RDMs")
    return 0


class _Signalled(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised where the program is, so ``finally`` blocks clean up as after Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


def _raise_signalled(signum: int, frame: object) -> None:
    raise _Signalled(signum)


@contextlib.contextmanager
def _signals_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM and SIGHUP raise :class:`_Signalled` (in the main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_signalled) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    handlers = {
        "models": _cmd_models, "nodes": _cmd_nodes, "export": _cmd_export, "train": _cmd_train,
        "datasets": _cmd_datasets, "add-dataset": _cmd_add_dataset, "add-model": _cmd_add_model,
    }
    try:
        with _signals_interrupt():
            return handlers[args.command](args)
    except RepgeomError as exc:
        print(f"repgeom: error: {exc}", file=sys.stderr)
        return 2
    except DiskFullError as exc:
        print(f"repgeom: error: {exc}", file=sys.stderr)
        return 1
    except _Signalled as exc:
        print(f"repgeom: stopped by {signal.Signals(exc.signum).name}", file=sys.stderr)
        return 128 + exc.signum
    except KeyboardInterrupt:
        print("repgeom: interrupted", file=sys.stderr)
        return 130

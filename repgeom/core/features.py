"""Device choice, graph node names and batched feature extraction with torchvision FX.

Design notes:
    Tracing a model with torchvision's ``create_feature_extractor`` patches torch
    functions for the whole process while it runs, so a forward pass in another thread
    at that moment fails in odd ways. A server must therefore never trace while it
    serves: :class:`NodeExtractor` traces each model once, when the engine is built,
    into a graph that returns *every* node, and later calls only run that graph (in
    eval mode, never switched) and keep the requested nodes. Returning every node costs
    memory, not time (the forward pass computes them all anyway), so the batch size is
    chosen to keep one batch's activations under a budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from .errors import RepgeomError

__all__ = ["NodeExtractor", "extract_features", "node_names", "repeated_steps", "resolve_device", "select_nodes"]

#: Bytes of activations one forward batch may hold (every node of the model). Large enough
#: that the feedforward model's 500 stimuli of a path (0.58 MB each) are one batch: a second
#: batch costs a copy of every activation (0.1 s of a 0.4 s extraction).
BATCH_BYTES = 512 << 20


def resolve_device(name: str | None = None) -> torch.device:
    """The torch device to compute on.

    Args:
        name: ``"cpu"``, ``"cuda"``, ``"cuda:K"`` or ``"mps"``; ``None`` or ``"auto"``
            picks cuda, then mps, then cpu.

    Returns:
        A usable :class:`torch.device`.

    Raises:
        RepgeomError: for an unknown or unavailable device.
    """
    if name in (None, "", "auto"):
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, TypeError):
        raise RepgeomError(f"unknown device {name!r}; allowed: auto, cpu, cuda, cuda:K, mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RepgeomError(f"device {name!r} is not available here (no CUDA); allowed: auto, cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise RepgeomError(f"device {name!r} does not exist; this machine has {torch.cuda.device_count()} GPU(s)")
    elif device.type == "mps":
        if not torch.backends.mps.is_available():
            raise RepgeomError(f"device {name!r} is not available here; allowed: auto, cpu")
    elif device.type != "cpu":
        raise RepgeomError(f"unsupported device {name!r}; allowed: auto, cpu, cuda, cuda:K, mps")
    return device


def node_names(model: nn.Module) -> list[str]:
    """Graph node names in graph order, as ``get_graph_node_names`` gives them in eval mode."""
    # torchvision's import costs ~1.7 s (torch._dynamo): paid by the first trace, not by `import repgeom`
    from torchvision.models.feature_extraction import get_graph_node_names  # noqa: PLC0415

    _, eval_nodes = get_graph_node_names(model)
    return list(eval_nodes)


def repeated_steps(nodes: Sequence[str], model: nn.Module) -> tuple[str, ...]:
    """The nodes of the module a recurrent net calls most often: its time steps.

    torch.fx names the k-th further call of a module ``name_k`` (``conv2, conv2_1, ...,
    conv2_4``). A module with weights called at least twice is a step; of several, the
    one called most often wins (ties: the first in graph order). A module without weights
    (a ReLU or pooling module reused within a block, as torchvision's ResNets do) applies
    the same fixed function twice: that is not recurrence.

    Args:
        nodes: the model's graph node names, in graph order.
        model: the model, whose submodule names tell module calls from function calls.

    Returns:
        The step nodes in graph order, or () for a model that calls no module twice.
    """
    modules = {name for name, m in model.named_modules() if name and next(m.parameters(), None) is not None}
    groups: dict[str, list[str]] = {}
    for n in nodes:
        base, _, suffix = n.rpartition("_")
        key = base if suffix.isdigit() and base in modules else n
        if key in modules:
            groups.setdefault(key, []).append(n)
    best = max(groups.values(), key=len, default=[])
    return tuple(best) if len(best) >= 2 else ()


def select_nodes(available: Sequence[str], wanted: str | Sequence[str] | None, model_id: str = "model") -> list[str]:
    """Resolve a node selection against a model's nodes, keeping graph order.

    Args:
        available: the model's nodes in graph order.
        wanted: ``None``/``"all"`` for every node, or names (a list or a comma string).
        model_id: for the error message.

    Returns:
        The chosen nodes in graph order, without duplicates.

    Raises:
        RepgeomError: naming the unknown node and listing the model's nodes.
    """
    if wanted is None or wanted == "all":
        return list(available)
    names = [w.strip() for w in wanted.split(",")] if isinstance(wanted, str) else [w if isinstance(w, str) else repr(w) for w in wanted]
    names = [n for n in names if n]
    if not names:
        raise RepgeomError(f"no nodes chosen for {model_id}; allowed: all, or some of {', '.join(available)}")
    unknown = [n for n in names if n not in available]
    if unknown:
        shown = repr(unknown[0]) if len(repr(unknown[0])) <= 60 else repr(unknown[0])[:57] + "..."
        raise RepgeomError(f"unknown node {shown} for {model_id}; allowed: {', '.join(available)}")
    chosen = set(names)
    return [n for n in available if n in chosen]


class NodeExtractor:
    """A model traced once into a graph that returns every node; safe to call from many threads.

    Args:
        model: the network, on the device to compute on. It is put in eval mode and
            must stay there (the engine never trains the models it serves).
        input_shape: (C, H, W) of one input image (from the model's dataset).
        batch_bytes: bound on one forward batch's activations.
    """

    def __init__(self, model: nn.Module, input_shape: tuple[int, int, int], batch_bytes: int = BATCH_BYTES) -> None:
        from torchvision.models.feature_extraction import create_feature_extractor  # noqa: PLC0415

        model.eval()
        self.nodes = node_names(model)
        self.graph = create_feature_extractor(model, return_nodes=self.nodes).eval()
        self.device = next(model.parameters()).device
        with torch.no_grad():
            probe = self.graph(torch.zeros(1, *input_shape, device=self.device))
        per_image = sum(t.element_size() * t[0].numel() for t in probe.values())
        self.batch_size = int(max(16, min(1000, batch_bytes // max(per_image, 1))))

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, nodes: Sequence[str]) -> dict[str, torch.Tensor]:
        """Activations of ``nodes`` for ``images``, flattened to (N, D).

        Args:
            images: (N, C, H, W) normalised images (moved to the model's device).
            nodes: names from :attr:`nodes`.

        Returns:
            ``{node: (N, D) float32 tensor}`` on the model's device, in the order of ``nodes``.

        Raises:
            RepgeomError: for a node the model does not have.
        """
        wanted = select_nodes(self.nodes, list(nodes))
        chunks: dict[str, list[torch.Tensor]] = {n: [] for n in wanted}
        # TF32 convolutions (cuDNN's default on Ampere and later) round activations to 10-bit
        # mantissas: 1e-3 relative error, visible in RDMs. Geometry needs full float32.
        with torch.backends.cudnn.flags(enabled=torch.backends.cudnn.enabled, allow_tf32=False):
            for start in range(0, images.shape[0], self.batch_size):
                out = self.graph(images[start : start + self.batch_size].to(self.device))
                for n in wanted:
                    chunks[n].append(out[n].reshape(out[n].shape[0], -1))
                del out
        # One batch (the usual case) needs no copy: 0.12 s of a 1.1 s path at 50 per class.
        return {n: chunks[n][0] if len(chunks[n]) == 1 else torch.cat(chunks[n]) for n in nodes if n in chunks}


def extract_features(model: nn.Module, images: torch.Tensor, nodes: Sequence[str]) -> dict[str, torch.Tensor]:
    """Activations of ``nodes`` for ``images``, flattened to (N, D), in eval mode.

    A one-off convenience: it traces ``model`` (see the module notes; a server keeps a
    :class:`NodeExtractor` per model instead). The model is left in eval mode.

    Args:
        model: the network, already on the device to compute on.
        images: (N, C, H, W) normalised images (moved to the model's device).
        nodes: graph node names (see :func:`node_names`).

    Returns:
        ``{node: (N, D) float32 tensor}`` on the model's device, in the order of ``nodes``.
    """
    return NodeExtractor(model, tuple(images.shape[1:]))(images, nodes)

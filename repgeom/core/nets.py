"""The seed's two architectures, rebuilt so torch.fx gives the seed's node names.

Design notes:
    The node names that ``torchvision.models.feature_extraction.get_graph_node_names``
    reports are part of the public contract (the CLI, the export keys, the URL of a
    dashboard view all use them), so the forward passes below are written exactly as
    the seed writes them: functional ``F.relu``/``F.max_pool2d``/``F.softmax`` calls,
    an argument named ``input``, ``conv2`` called five times in the recurrent net,
    and the readout as a named ``nn.Sequential``. Changing a line here renames nodes.

    Both nets end in ``softmax`` (seed-reference section 2: Tutorial 2's definition);
    training takes the log of the clamped probabilities as the seed's latest helpers do.
"""

from __future__ import annotations

import hashlib
import importlib.util
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["ARCHITECTURES", "Net", "RecurrentNet", "build_net", "canonical_architecture", "code_sha256", "count_parameters", "torchvision_classifiers"]


class Net(nn.Module):
    """The PyTorch MNIST example network with a softmax output (seed §2.1).

    13 graph nodes: ``input, conv1, relu, conv2, relu_1, max_pool2d, dropout1, flatten,
    fc1, relu_2, dropout2, fc2, softmax``; 1,199,882 parameters.
    """

    def __init__(self, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, num_classes)

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - node name
        """Map normalised images (B, 1, 28, 28) to class probabilities (B, 10)."""
        x = self.conv1(input)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        return F.softmax(x, dim=1)


class RecurrentNet(nn.Module):
    """The seed's 2650-parameter recurrent conv net (seed §2.2).

    ``u = conv1(input)``; ``x_0 = u``; ``x_t = relu(u + conv2(x_{t-1}))`` for
    ``t = 1..time_steps`` with one shared ``conv2``; then a dropout/avgpool/flatten/
    linear readout and a softmax. With ``time_steps=5`` the graph has 22 nodes and the
    five applications of ``conv2`` are named ``conv2, conv2_1, ..., conv2_4``.
    """

    def __init__(self, time_steps: int = 5, num_classes: int = 10, in_channels: int = 1) -> None:
        super().__init__()
        self.time_steps = time_steps
        self.conv1 = nn.Conv2d(in_channels, 16, 3, stride=3)
        self.conv2 = nn.Conv2d(16, 16, 3, stride=1, padding=1)
        self.readout = nn.Sequential(
            OrderedDict(
                [
                    ("dropout", nn.Dropout(0.25)),
                    ("avgpool", nn.AdaptiveAvgPool2d(1)),
                    ("flatten", nn.Flatten()),
                    ("linear", nn.Linear(16, num_classes)),
                ]
            )
        )

    def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - node name
        """Map normalised images (B, 1, 28, 28) to class probabilities (B, 10)."""
        drive = self.conv1(input)
        x = drive
        for _ in range(self.time_steps):
            x = self.conv2(x)
            x = drive + x
            x = F.relu(x)
        x = self.readout(x)
        return F.softmax(x, dim=1)


#: repgeom's own architectures (as written in the manifest) -> constructor.
ARCHITECTURES: dict[str, type[nn.Module]] = {"Net": Net, "RecurrentNet": RecurrentNet}
#: The command line's names for them.
_ALIASES = {"repgeom:feedforward": "Net", "repgeom:recurrent": "RecurrentNet", "repgeom:Net": "Net", "repgeom:RecurrentNet": "RecurrentNet"}
_TORCHVISION = "torchvision:"
_PYTHON = "python:"


def torchvision_classifiers() -> list[str]:
    """The classification builders of ``torchvision.models`` (``resnet18``, ``vgg11`` ...), the allow-list for ``torchvision:NAME``."""
    import torchvision.models  # noqa: PLC0415 - 1.7 s; only when a torchvision architecture is used

    return sorted(torchvision.models.list_models(module=torchvision.models))


def canonical_architecture(name: str) -> str:
    """The manifest's name of an architecture given as ``repgeom:feedforward``, ``Net``, ``torchvision:resnet18``...

    Raises:
        ValueError: for a name outside the allow-list; the message lists what is allowed.
    """
    if name in ARCHITECTURES:
        return name
    if name in _ALIASES:
        return _ALIASES[name]
    if name.startswith(_PYTHON):
        path, _, cls = name[len(_PYTHON):].rpartition(":")
        if not path or not cls.isidentifier() or not path.endswith(".py"):
            raise ValueError(f"a Python architecture is python:FILE.py:ClassName, got {name[:80]!r}")
        return f"{_PYTHON}{Path(path).resolve()}:{cls}"
    if name.startswith(_TORCHVISION):
        if name[len(_TORCHVISION):] in torchvision_classifiers():
            return name
        raise ValueError(
            f"unknown torchvision classifier {name[len(_TORCHVISION):]!r}; allowed: torchvision:NAME for NAME in "
            "torchvision.models.list_models() (e.g. resnet18, vgg11, mobilenet_v3_small)"
        )
    raise ValueError(
        f"unknown architecture {name[:60]!r}; allowed: repgeom:feedforward, repgeom:recurrent, torchvision:NAME "
        "(a torchvision classifier), or python:FILE.py:Class from the command line with --trust-code"
    )


def code_sha256(architecture: str) -> str:
    """SHA-256 of the file a ``python:FILE.py:Class`` architecture runs ("" for any other architecture)."""
    if not architecture.startswith(_PYTHON):
        return ""
    path = Path(architecture[len(_PYTHON):].rpartition(":")[0])
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError as exc:
        raise ValueError(f"cannot read {path} ({exc.strerror or exc})") from None


def _from_python_file(architecture: str, expected_sha256: str) -> nn.Module:
    """Instantiate ``Class()`` from ``FILE.py``, after checking the file is the one registered."""
    path_text, _, cls_name = architecture[len(_PYTHON):].rpartition(":")
    if code_sha256(architecture) != expected_sha256:
        raise ValueError(f"{path_text} changed since the model was registered (its SHA-256 differs); register it again")
    spec = importlib.util.spec_from_file_location(f"repgeom_user_{expected_sha256[:16]}", path_text)
    if spec is None or spec.loader is None:
        raise ValueError(f"cannot import {path_text}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    cls = getattr(module, cls_name, None)
    if not (isinstance(cls, type) and issubclass(cls, nn.Module)):
        raise ValueError(f"{path_text} has no nn.Module class {cls_name!r}")
    return cls()


def build_net(
    architecture: str, num_classes: int | None = None, in_channels: int = 1, *, trust_code: bool = False, code_hash: str = ""
) -> nn.Module:
    """Build an untrained network by its manifest architecture name.

    Args:
        architecture: ``"Net"``, ``"RecurrentNet"`` (or their ``repgeom:`` names), or
            ``"torchvision:NAME"`` for a torchvision classification builder.
        num_classes: size of the classifier's output (default: the architecture's own).
        in_channels: image channels (1 grey, 3 colour); torchvision's classifiers take 3.
        trust_code: allow a ``python:FILE.py:Class`` architecture, which runs that file's
            code (only the command line sets this; the dashboard never does).
        code_hash: the SHA-256 the file of a ``python:`` architecture must have.

    Returns:
        A freshly initialised module in eval mode.

    Raises:
        ValueError: for an unknown name or a channel count the architecture cannot take;
            the message lists what is allowed.
    """
    name = canonical_architecture(architecture)
    if name.startswith(_PYTHON):
        if not trust_code:
            raise ValueError(f"architecture {name[:80]} runs that file's code; only the command line loads it, with --trust-code")
        return _from_python_file(name, code_hash).eval()
    kwargs = {} if num_classes is None else {"num_classes": num_classes}
    if name.startswith(_TORCHVISION):
        if in_channels != 3:
            raise ValueError(f"{name} takes colour images (3 channels); this dataset has {in_channels}")
        import torchvision.models  # noqa: PLC0415

        return torchvision.models.get_model(name[len(_TORCHVISION):], weights=None, **kwargs).eval()
    return ARCHITECTURES[name](**kwargs, in_channels=in_channels).eval()


def count_parameters(model: nn.Module) -> int:
    """Number of parameters of ``model`` (all trainable; frozen copies count the same)."""
    return sum(p.numel() for p in model.parameters())

"""Plain-language descriptions of a model's graph nodes, derived from its torch.fx graph.

Design notes:
    Node names such as ``add_3`` or ``readout.flatten`` are torch.fx's, and say little to
    a reader. Each node is described from what the graph records about it: its op
    (``call_module``, ``call_function``, ...), its target (the module's type and sizes,
    or the function) and its arguments. A recurrent net's repeated steps (the nodes of
    the module it calls again and again, see :func:`repgeom.core.features.repeated_steps`)
    group the nodes between two calls into one step; inside a step, the output of the
    repeated module is the *recurrent drive*, and a node computed before the first step
    that every step reads is the *input drive*. So ``add_3`` of the recurrent net reads
    "step 4: input drive + recurrent drive" without any name being written here. A
    models manifest may give its own descriptions, which take precedence (the engine
    merges them). Nothing here imports Dash or Plotly.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence

from torch import fx, nn

__all__ = ["describe_nodes"]

#: Functions and methods by name -> what they compute, given their arguments' names.
_FUNCTIONS = {
    "add": lambda a: " + ".join(a),
    "iadd": lambda a: " + ".join(a),
    "sub": lambda a: " − ".join(a),
    "mul": lambda a: " × ".join(a),
    "matmul": lambda a: " @ ".join(a),
    "cat": lambda a: f"{', '.join(a)} side by side",
    "relu": lambda a: f"ReLU of {_one(a)}",
    "gelu": lambda a: f"GELU of {_one(a)}",
    "sigmoid": lambda a: f"sigmoid of {_one(a)}",
    "tanh": lambda a: f"tanh of {_one(a)}",
    "softmax": lambda a: f"softmax of {_one(a)}: the class probabilities",
    "log_softmax": lambda a: f"log-softmax of {_one(a)}: log class probabilities",
    "max_pool2d": lambda a: f"max pooling of {_one(a)}",
    "avg_pool2d": lambda a: f"average pooling of {_one(a)}",
    "adaptive_avg_pool2d": lambda a: f"average over each channel's positions of {_one(a)}",
    "flatten": lambda a: f"{_one(a)} flattened to one vector per image",
    "dropout": lambda a: f"dropout on {_one(a)} (unchanged when evaluating)",
    "view": lambda a: f"{_one(a)} reshaped",
    "reshape": lambda a: f"{_one(a)} reshaped",
    "mean": lambda a: f"mean of {_one(a)}",
}


def _one(names: Sequence[str]) -> str:
    return names[0] if names else "its input"


def _module_text(module: nn.Module) -> str:
    """What a module computes, in words, with its sizes."""
    if isinstance(module, nn.Conv2d):
        k = "×".join(map(str, module.kernel_size))
        stride = "" if set(module.stride) == {1} else f", stride {module.stride[0]}"
        return f"convolution, {module.in_channels} → {module.out_channels} channels, {k} kernel{stride}"
    if isinstance(module, nn.Linear):
        return f"fully connected layer, {module.in_features} → {module.out_features} units"
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return "dropout (unchanged when evaluating)"
    if isinstance(module, (nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool1d)):
        return "average over each channel's positions"
    if isinstance(module, (nn.MaxPool2d, nn.MaxPool1d)):
        return "max pooling"
    if isinstance(module, (nn.AvgPool2d, nn.AvgPool1d)):
        return "average pooling"
    if isinstance(module, nn.Flatten):
        return "flattened to one vector per image"
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        return "batch normalisation (fixed statistics when evaluating)"
    if isinstance(module, nn.LayerNorm):
        return "layer normalisation"
    if isinstance(module, (nn.ReLU, nn.GELU, nn.Sigmoid, nn.Tanh, nn.Softmax)):
        return type(module).__name__
    return f"{type(module).__name__} module"


def _target_name(node: fx.Node) -> str:
    target = node.target
    if node.op == "call_method":
        return str(target)
    name = getattr(target, "__name__", str(target))
    return {operator.add.__name__: "add", operator.iadd.__name__: "iadd"}.get(name, name)


def describe_nodes(graph: fx.GraphModule, steps: Sequence[str] = (), given: Mapping[str, str] | None = None) -> dict[str, str]:
    """A plain-language description of every node a feature extractor returns.

    Args:
        graph: torchvision's ``create_feature_extractor`` graph that returns every node
            (its output is a dict from node name to graph node), in eval mode.
        steps: the nodes that are a recurrent net's repeated steps, in graph order (``()``
            for a net without steps).
        given: descriptions from the models manifest, which replace the derived ones.

    Returns:
        ``{node name: description}`` for every returned node, e.g. ``"step 4: input drive
        + recurrent drive"`` or ``"readout: flattened to one vector per image"``.
    """
    order = list(graph.graph.nodes)
    output = next(n for n in order if n.op == "output")
    returned: dict[str, fx.Node] = dict(output.args[0]) if output.args and isinstance(output.args[0], dict) else {}
    public = {fx_node: name for name, fx_node in returned.items()}
    position = {n: i for i, n in enumerate(order)}
    modules = dict(graph.named_modules())

    step_nodes = [returned[s] for s in steps if s in returned]
    step_of: dict[fx.Node, int] = {}
    if len(step_nodes) >= 2:
        repeated = step_nodes[0].target
        starts = [position[n] for n in step_nodes]
        for node in order:
            i = position[node]
            if i < starts[0] or node.op == "output":
                continue
            k = sum(s <= i for s in starts)
            if k == len(starts) and node.op == "call_module" and node.target != repeated and i > starts[-1]:
                break  # the last step ends where another module (the readout) begins
            step_of[node] = k
    last_of_step = {k: max((n for n, s in step_of.items() if s == k), key=position.get) for k in set(step_of.values())}
    step_outputs = {n: k for k, n in last_of_step.items()}
    drives = {a for n in step_of for a in n.all_input_nodes if a not in step_of and a.op != "placeholder"}
    input_drive = {a for a in drives if len({step_of[u] for u in a.users if u in step_of}) >= 2}

    def role(node: fx.Node, within: int | None) -> str:
        if node in input_drive:
            return "input drive"
        if node in step_of and node.op == "call_module" and node.target == step_nodes[0].target:
            return "recurrent drive"
        if node in step_outputs and step_outputs[node] != within:
            return f"step {step_outputs[node]}'s output"
        if node.op == "placeholder":
            return "the input image"
        if within is not None and step_of.get(node) == within and node.op in ("call_function", "call_method"):
            return f"({text(node, within)})"
        return public.get(node, node.name)

    def text(node: fx.Node, within: int | None) -> str:
        args = [role(a, within) for a in node.all_input_nodes]
        if node.op == "placeholder":
            return "the input image"
        if node.op == "call_module":
            module = modules.get(str(node.target))
            what = _module_text(module) if module is not None else f"{node.target} module"
            return f"{what}, applied to {args[0]}" if args and node in step_of else what
        if node.op in ("call_function", "call_method"):
            name = _target_name(node)
            if name in _FUNCTIONS:
                return _FUNCTIONS[name](args)
            return f"{name}({', '.join(args)})"
        return node.op

    out: dict[str, str] = {}
    for name, node in returned.items():
        k = step_of.get(node)
        body = text(node, k)
        if node in input_drive:
            body += " (the input drive, added at every step)"
        if k is not None:
            last = node in step_outputs
            tail = (", the final state" if k == len(step_nodes) else f", the state passed to step {k + 1}") if last else ""
            body = f"step {k}: {'recurrent drive: ' if role(node, None) == 'recurrent drive' else ''}{body}{tail}"
        elif node.op == "call_module" and "." in str(node.target):
            body = f"{str(node.target).rsplit('.', 1)[0]}: {body}"
        out[name] = body
    for name, description in (given or {}).items():
        if name in out:
            out[name] = description
    return out


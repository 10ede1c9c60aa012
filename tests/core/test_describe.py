"""Plain-language node descriptions, derived from the torch.fx graph (never from names written in the code)."""

from __future__ import annotations

import torch
from torch import nn

from repgeom.core.checkpoints import ModelEntry
from repgeom.core.describe import describe_nodes
from repgeom.core.features import NodeExtractor, repeated_steps
from repgeom.core.nets import Net, RecurrentNet


def _described(model: nn.Module, given=None) -> dict[str, str]:
    extractor = NodeExtractor(model, (1, 28, 28))
    return describe_nodes(extractor.graph, repeated_steps(extractor.nodes, model), given)


def test_the_recurrent_nets_steps_are_told_apart_by_role():
    d = _described(RecurrentNet())
    assert d["add_3"] == "step 4: input drive + recurrent drive"
    assert d["conv2_3"].startswith("step 4: recurrent drive: convolution, 16 → 16 channels") and d["conv2_3"].endswith("applied to step 3's output")
    assert d["conv2"].endswith("applied to input drive")  # the first step reads the input drive itself
    assert d["relu_1"] == "step 2: ReLU of (input drive + recurrent drive), the state passed to step 3"
    assert d["relu_4"].endswith("the final state")
    assert "input drive, added at every step" in d["conv1"] and "stride 3" in d["conv1"]
    assert d["readout.flatten"] == "readout: flattened to one vector per image"
    assert d["readout.linear"] == "readout: fully connected layer, 16 → 10 units"
    assert d["softmax"].endswith("the class probabilities") and d["input"] == "the input image"


def test_the_steps_follow_the_graph_not_a_fixed_count():
    d = _described(RecurrentNet(time_steps=3))
    assert d["add_2"] == "step 3: input drive + recurrent drive" and d["relu_2"].endswith("the final state")
    assert not any("step 4" in v for v in d.values())


def test_a_feedforward_net_has_no_steps_and_names_its_layers():
    d = _described(Net())
    assert set(d) == set(NodeExtractor(Net(), (1, 28, 28)).nodes)
    assert not any(v.startswith("step") for v in d.values())
    assert d["conv2"] == "convolution, 32 → 64 channels, 3×3 kernel" and d["fc1"] == "fully connected layer, 9216 → 128 units"
    assert d["relu_1"] == "ReLU of conv2" and d["dropout1"].startswith("dropout")
    assert d["flatten"] == "dropout1 flattened to one vector per image"


def test_an_unknown_function_is_named_with_its_arguments():
    class Odd(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc = nn.Linear(784, 10)

        def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - node name
            return torch.clamp(self.fc(torch.flatten(input, 1)), 0, 1)

    d = _described(Odd())
    assert d["clamp"] == "clamp(fc)"


def test_the_manifest_may_replace_a_description_of_a_node_it_has():
    d = _described(Net(), {"fc2": "the ten class scores", "nope": "ignored"})
    assert d["fc2"] == "the ten class scores" and "nope" not in d


def test_a_manifest_entry_carries_optional_descriptions():
    raw = {"id": "m", "architecture": "Net", "file": "m.pt", "sha256": "0" * 64, "parameters": 1, "dataset": "mnist"}
    assert ModelEntry.from_json(raw).descriptions == {} and "descriptions" not in ModelEntry.from_json(raw).to_json()
    entry = ModelEntry.from_json({**raw, "descriptions": {"fc2": "scores " * 100}})
    assert len(entry.descriptions["fc2"]) == 200 and ModelEntry.from_json(entry.to_json()) == entry


def test_a_weightless_module_used_twice_is_not_a_recurrent_step():
    class Block(nn.Module):  # a ResNet-style block: one ReLU module applied twice
        def __init__(self) -> None:
            super().__init__()
            self.conv1, self.conv2, self.act = nn.Conv2d(1, 4, 3, padding=1), nn.Conv2d(4, 1, 3, padding=1), nn.ReLU()
            self.fc = nn.Linear(784, 10)

        def forward(self, input: torch.Tensor) -> torch.Tensor:  # noqa: A002 - node name
            x = self.act(self.conv1(input))
            x = self.act(self.conv2(x) + input)
            return self.fc(torch.flatten(x, 1))

    model = Block().eval()
    extractor = NodeExtractor(model, (1, 28, 28))
    assert "act_1" in extractor.nodes and repeated_steps(extractor.nodes, model) == ()
    d = _described(model)
    assert not any("step" in v or "drive" in v for v in d.values())
    assert d["add"] == "conv2 + the input image" and d["act_1"] == "ReLU"

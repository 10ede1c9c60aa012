"""The architectures give the seed's node names and parameter counts."""

from __future__ import annotations

from torchvision.models.feature_extraction import get_graph_node_names

from repgeom.core.nets import Net, RecurrentNet, count_parameters

FF_NODES = "input conv1 relu conv2 relu_1 max_pool2d dropout1 flatten fc1 relu_2 dropout2 fc2 softmax".split()
REC_NODES = (
    "input conv1 conv2 add relu conv2_1 add_1 relu_1 conv2_2 add_2 relu_2 conv2_3 add_3 relu_3 "
    "conv2_4 add_4 relu_4 readout.dropout readout.avgpool readout.flatten readout.linear softmax"
).split()


def test_feedforward_nodes_and_parameters():
    train, evaluation = get_graph_node_names(Net())
    assert train == evaluation == FF_NODES
    assert count_parameters(Net()) == 1_199_882


def test_recurrent_nodes_and_parameters():
    train, evaluation = get_graph_node_names(RecurrentNet())
    assert train == evaluation == REC_NODES
    assert len(REC_NODES) == 22
    assert count_parameters(RecurrentNet()) == 2650


def test_recurrent_step_is_relu_of_drive_plus_shared_conv():
    import torch
    import torch.nn.functional as F

    torch.manual_seed(0)
    m = RecurrentNet().eval()
    x = torch.randn(3, 1, 28, 28)
    u = m.conv1(x)
    h = u
    for _ in range(5):
        h = F.relu(u + m.conv2(h))
    expected = F.softmax(m.readout.linear(h.mean(dim=(2, 3))), dim=1)
    torch.testing.assert_close(m(x), expected)

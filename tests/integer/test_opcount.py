"""bintut.integer.opcount: the operation counts of ResNet18 on 32 x 32 images."""

from bintut.integer.opcount import layer_costs, summary_table


def test_op_counts_for_resnet18_cifar(exported):
    _, export = exported
    costs = layer_costs(export)
    assert len(costs) == 21
    total = sum(c.macs for c in costs)
    # Counted twice independently (here and with torch forward hooks): 555,468,800. The issue quoted
    # 555,422,720, 46,080 fewer; the block convs' 553.6 M matches it.
    assert total == 555_468_800
    assert sum(c.macs for c in costs if c.group == "block conv") == 553_648_128
    assert sum(c.addsub for c in costs) == total  # every layer is int8 x ±1 once fully binary
    assert sum(c.weight_bits for c in costs) == 11_210_432  # 11,220,132 parameters - 9,600 BN - 100 fc bias
    assert sum(c.packed_bytes for c in costs) == 1_401_344
    text = summary_table(costs)
    assert "555,468,800" in text and "layer4.1.conv2" in text

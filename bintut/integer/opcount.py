"""Per-layer costs of the exported network: shapes, MACs, add/sub share, weight bits and bytes.
"""

from __future__ import annotations

from dataclasses import dataclass

from bintut.integer.format import ResNetExport
from bintut.integer.kernels import conv_output_size


@dataclass
class LayerCost:
    name: str
    kind: str
    input_shape: tuple[int, ...]  # (C, H, W) or (C,)
    output_shape: tuple[int, ...]
    k: int
    macs: int  # multiply-accumulates per image
    addsub: int  # of which int8 x ±1, i.e. additions/subtractions
    weight_bits: int  # one bit per weight
    packed_bytes: int  # sign bits as stored (rows padded to whole bytes)
    fp32_bytes: int  # the same weights in fp32

    @property
    def group(self) -> str:
        """'stem', 'head', or 'block conv' (the residual blocks' 3x3 and 1x1 convs)."""
        return {"conv1": "stem", "fc": "head"}.get(self.name, "block conv")


def layer_costs(export: ResNetExport, image_size: int = 32) -> list[LayerCost]:
    """Walk the network's shapes from a (3, image_size, image_size) input."""
    sizes: dict[str, int] = {}
    size = image_size
    rows = []

    def add(name: str, in_size: int) -> int:
        layer = export.layers[name]
        if layer.kind == "conv":
            out = conv_output_size(in_size, layer.kernel, layer.stride, layer.padding)
            shape_in = (layer.in_channels, in_size, in_size)
            shape_out = (layer.out_channels, out, out)
            positions = out * out
        else:
            out, shape_in, shape_out, positions = 1, (layer.in_channels,), (layer.out_channels,), 1
        macs = positions * layer.out_channels * layer.k
        rows.append(LayerCost(
            name, layer.kind, shape_in, shape_out, layer.k, macs, macs,
            layer.out_channels * layer.k, layer.bits.nbytes, layer.out_channels * layer.k * 4,
        ))
        sizes[name] = out
        return out

    size = add("conv1", size)
    for block in export.blocks:
        out = add(block["conv1"], size)
        out = add(block["conv2"], out)
        if block["shortcut"]:
            add(block["shortcut"], size)
        size = out
    add("fc", 1)
    return rows


def summary_table(costs: list[LayerCost]) -> str:
    """A plain-text table with totals, for notebooks, the CLI and the docs."""
    head = f"{'layer':<22}{'in':>14}{'out':>14}{'K':>6}{'MACs':>13}{'add/sub':>13}{'sign bytes':>12}{'fp32 bytes':>12}"
    lines = [head, "-" * len(head)]
    for c in costs:
        shape_in = "x".join(map(str, c.input_shape))
        shape_out = "x".join(map(str, c.output_shape))
        lines.append(f"{c.name:<22}{shape_in:>14}{shape_out:>14}{c.k:>6}{c.macs:>13,}{c.addsub:>13,}"
                     f"{c.packed_bytes:>12,}{c.fp32_bytes:>12,}")
    lines.append("-" * len(head))
    total = {f: sum(getattr(c, f) for c in costs) for f in ("macs", "addsub", "packed_bytes", "fp32_bytes")}
    lines.append(f"{'total':<22}{'':>14}{'':>14}{'':>6}{total['macs']:>13,}{total['addsub']:>13,}"
                 f"{total['packed_bytes']:>12,}{total['fp32_bytes']:>12,}")
    for group in ("stem", "block conv", "head"):
        macs = sum(c.macs for c in costs if c.group == group)
        lines.append(f"  {group:<20} {macs:>13,} MACs ({100 * macs / total['macs']:.2f} %)")
    return "\n".join(lines)

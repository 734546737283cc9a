"""The node sequence of one residual block of the ONNX export, as exported and as onnxruntime runs it (notebook 07).
"""

from __future__ import annotations

from bintut.teaching.viz.base import figure_grid

COLOURS = {"QuantizeLinear": "#f4c27a", "DequantizeLinear": "#f8dfb6", "Clip": "#d9d9d9", "Conv": "#9ecae1",
           "FusedConv": "#9ecae1", "QLinearConv": "#74c476", "Add": "#c6a5dc", "Relu": "#d9d9d9"}


def block_nodes(model, block: str) -> list:
    """The nodes of ``model`` (an onnx ModelProto) that belong to residual block ``block`` (e.g. 'layer2.0'), in graph
    order, without the dequantization of constant weights and biases (drawn as part of their Conv). Raises
    ValueError, listing the blocks, when there is no such block."""
    constants = {t.name for t in model.graph.initializer}
    nodes = [n for n in model.graph.node if n.name.startswith(f"{block}.")
             and not (n.op_type == "DequantizeLinear" and n.input[0] in constants)]
    if not nodes:
        blocks = sorted({".".join(n.name.split(".")[:2]) for n in model.graph.node if n.name.startswith("layer")})
        raise ValueError(f"no block {block!r} in the model; its blocks: {blocks}")
    return nodes


def _label(node) -> str:
    short = node.name.split(".", 2)[-1].replace(".codes", " codes").replace(".out", "").replace(".value", "")
    short = short.split("_token")[0].split("/")[0]
    if "Conv" in node.op_type:
        short += ", w: ±1 int8"
    return node.op_type if short == node.op_type.lower() else f"{node.op_type}\n{short}"


def _draw(ax, nodes, title: str) -> None:
    produced = {out: n.name for n in nodes for out in n.output}
    depth: dict[str, int] = {}
    for n in nodes:  # graph order is topological: the longest path from the block's input
        depth[n.name] = 1 + max((depth[produced[i]] for i in n.input if i in produced), default=-1)
    columns: dict[int, list[str]] = {}
    for n in nodes:
        columns.setdefault(depth[n.name], []).append(n.name)
    place = {name: (i - (len(row) - 1) / 2, -d) for d, row in columns.items() for i, name in enumerate(row)}
    for n in nodes:
        for i in n.input:
            if i in produced:
                ax.annotate("", xy=place[n.name], xytext=place[produced[i]],
                            arrowprops={"arrowstyle": "->", "color": "0.4", "shrinkA": 13, "shrinkB": 13})
    for n in nodes:
        x, y = place[n.name]
        ax.text(x, y, _label(n), ha="center", va="center", fontsize=7,
                bbox={"boxstyle": "round,pad=0.3", "fc": COLOURS.get(n.op_type, "white"), "ec": "0.3"})
    ax.set_xlim(-1.6, 1.6)
    ax.set_ylim(-max(columns) - 0.6, 0.6)
    ax.set_title(title, fontsize="medium")
    ax.axis("off")


def plot_onnx_block(model, optimized=None, block: str = "layer2.0"):
    """One residual block's nodes, top to bottom in data-flow order: ``model`` as exported (QDQ around float Conv,
    ``bintut.integer.onnx_export.to_onnx``) and, if given, ``optimized``: what onnxruntime made of it
    (``bintut.integer.onnx_compare.onnxruntime_graph``: DQ -> Conv -> Q fused into int8 QLinearConv). Raises
    ValueError as :func:`block_nodes` does. Taught in notebooks/07_integer_only_and_c.ipynb."""
    panels = [(model, "as exported (QDQ)")] + ([(optimized, "as onnxruntime runs it")] if optimized else [])
    fig, axes = figure_grid(len(panels), width=4.4, height=6.2)
    for ax, (graph, title) in zip(axes, panels, strict=True):
        _draw(ax, block_nodes(graph, block), f"{block}, {title}")
    return fig

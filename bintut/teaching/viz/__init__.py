"""Figures and tables for the notebooks: the quantizers, the model and the integer network made visible.

One module per subject; this package hands their names on, so a notebook writes ``bintut.viz.plot_blend(w)``
(``bintut.viz`` is this package, ``bintut.teaching.viz``). Importing it loads matplotlib, not onnx.
"""

from bintut.teaching.viz.base import DPI, table
from bintut.teaching.viz.binact import plot_binary_activation, plot_fine_tunes, plot_xnor_costs
from bintut.teaching.viz.integer import (
    PIPELINE,
    plot_code_differences,
    plot_layer_costs,
    plot_memory,
    plot_pipeline,
    plot_prediction,
    plot_speed,
)
from bintut.teaching.viz.model import plot_feature_maps, plot_mixed_batch, plot_stems
from bintut.teaching.viz.onnx_graph import plot_onnx_block
from bintut.teaching.viz.quant import (
    clipped_batches,
    fp_share,
    input_codes,
    plot_blend,
    plot_code_histogram,
    plot_fp_share,
    plot_int8,
    plot_running_max,
    plot_schedules,
    plot_sprinkling,
    tracked_maxima,
)
from bintut.teaching.viz.recorded import (
    plot_recorded_baseline,
    plot_recorded_control,
    plot_recorded_costs,
    plot_recorded_stage,
    plot_stage_bars,
)

__all__ = [
    "DPI",
    "PIPELINE",
    "clipped_batches",
    "fp_share",
    "input_codes",
    "plot_binary_activation",
    "plot_blend",
    "plot_code_differences",
    "plot_code_histogram",
    "plot_feature_maps",
    "plot_fine_tunes",
    "plot_fp_share",
    "plot_int8",
    "plot_layer_costs",
    "plot_memory",
    "plot_mixed_batch",
    "plot_onnx_block",
    "plot_pipeline",
    "plot_prediction",
    "plot_recorded_baseline",
    "plot_recorded_control",
    "plot_recorded_costs",
    "plot_recorded_stage",
    "plot_running_max",
    "plot_schedules",
    "plot_speed",
    "plot_sprinkling",
    "plot_stage_bars",
    "plot_stems",
    "plot_xnor_costs",
    "table",
    "tracked_maxima",
]

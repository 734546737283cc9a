"""The integer network against the torch model it was exported from: logits, predictions and
each layer's input codes (torch on one side, the numpy engine on the other).
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F

from bintut.integer.engine import KERNELS, IntegerResNet, clear_margin
from bintut.integer.format import ResNetExport
from bintut.integer.kernels import (
    im2col,
)
from bintut.model import record_io


def integer_only_agreement(model, export: ResNetExport, images) -> dict[str, float]:
    """Top-1 agreement of the integer-only engine with torch (hard mode) and the float-epilogue engine."""
    with torch.no_grad():
        ref = model.eval()(images).numpy()
    array = images.numpy()
    float_logits = IntegerResNet(export)(array)
    int_logits = IntegerResNet(export, integer_only=True)(array)
    largest, clear = clear_margin(ref, int_logits)
    return {
        "images": len(ref),
        "vs torch hard mode": float((int_logits.argmax(1) == ref.argmax(1)).mean()),
        "vs float-epilogue engine": float((int_logits.argmax(1) == float_logits.argmax(1)).mean()),
        "float-epilogue engine vs torch": float((float_logits.argmax(1) == ref.argmax(1)).mean()),
        "largest logit difference vs torch": largest,
        "largest logit": float(np.abs(ref).max()),
        "clear winners (torch top-2 gap > 2x that)": int(clear.sum()),
    }


def layer_agreement(model, export: ResNetExport, images) -> list[dict]:
    """Per layer: do our kernels, fed the int8 codes torch computed, give exactly the integer
    accumulators implied by torch (its conv on those codes and the ±1 signs)?

    ``model`` is the torch model in its deployable view (hard mode); ``images`` a torch batch.
    Returns rows with the layer name, whether all three kernels matched exactly, and the largest
    relative deviation of torch's own float layer output from s_x * s_c * acc.
    """

    captured = record_io(model, list(export.layers), images)
    modules = dict(model.named_modules())
    engines = {k: IntegerResNet(export, kernel=k) for k in KERNELS}
    rows = []
    for name, layer in export.layers.items():
        x, y = captured[name]
        module = modules[name]
        codes = module.input_quant.integer(x)
        signs = torch.where(module.parametrizations.weight.original >= 0, 1.0, -1.0).double()
        if layer.kind == "conv":
            implied = F.conv2d(codes.double(), signs, stride=layer.stride, padding=layer.padding).permute(0, 2, 3, 1)
            np_codes = im2col(codes.permute(0, 2, 3, 1).numpy(), layer.kernel, layer.stride, layer.padding)
            torch_out = y.permute(0, 2, 3, 1).double()
        else:
            implied = codes.double() @ signs.T
            np_codes = codes.numpy()
            torch_out = (y - module.bias.detach()).double()
        implied = implied.reshape(-1, layer.out_channels).numpy()
        exact = all(
            np.array_equal(eng.gemm(name, np_codes.astype(np.float32) if k == "blas" else np_codes), implied)
            for k, eng in engines.items()
        )
        scale = float(layer.act_step) * layer.weight_scale.astype(np.float64)
        deviation = np.abs(torch_out.reshape(-1, layer.out_channels).numpy() - implied * scale).max()
        rows.append({"layer": name, "exact": exact,
                     "torch deviation": float(deviation / max(np.abs(implied * scale).max(), 1e-30))})
    return rows


def prediction_agreement(model, export: ResNetExport, images) -> dict[str, float]:
    """Top-1 agreement and the largest logit difference between torch (hard mode) and the engine."""
    with torch.no_grad():
        ref = model.eval()(images).numpy()
    logits = IntegerResNet(export)(images.numpy())
    return {"images": len(ref), "top-1 agreement": float((logits.argmax(1) == ref.argmax(1)).mean()),
            "largest logit difference": float(np.abs(logits - ref).max()),
            "largest logit": float(np.abs(ref).max())}

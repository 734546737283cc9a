"""A fully integer epilogue: requantize int32 accumulators with a fixed-point multiplier and shift.

Between two binary layers with no residual addition in between (conv1 -> BN -> ReLU -> conv2 inside
a residual block), ``codes_next = clamp(round((A_c * acc + B_c) / s_next))`` needs no float: with
``|A_c| / s_next ~ M0_c * 2^-n_c`` (M0_c in [2^30, 2^31), as TFLite and CMSIS-NN do) and the bias in
the same fixed-point format, ``b_c = round(B_c / s_next * 2^n_c)``,

    codes_next = clamp((sign_c * acc * M0_c + b_c + 2^(n_c - 1)) >> n_c, lo, 127)

in int64 arithmetic (|acc| < 2^20 and M0 < 2^31: the terms stay far below 2^63). ``sign_c`` carries
the sign of BatchNorm's gamma, which can be negative. One rounding, as in the float epilogue: the
codes differ from it only where float32 and the 31-bit multiplier disagree at a half.
"""

from __future__ import annotations

import math

import numpy as np


def quantize_multiplier(real: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel real multipliers -> (M0 in [2^30, 2^31) int64, shift n int64, sign +-1 int64)."""
    real = np.asarray(real, dtype=np.float64)
    m0 = np.zeros(real.shape, dtype=np.int64)
    shift = np.zeros(real.shape, dtype=np.int64)
    for i, value in enumerate(np.abs(real).flat):
        if value == 0:
            continue
        mantissa, exponent = math.frexp(value)  # value = mantissa * 2^exponent, mantissa in [0.5, 1)
        q = round(mantissa * 2**31)
        if q == 2**31:
            q, exponent = q // 2, exponent + 1
        if 31 - exponent < 1 or 31 - exponent > 62:
            raise ValueError(f"multiplier {value!r} is out of the fixed-point range")
        m0.flat[i], shift.flat[i] = q, 31 - exponent
    return m0, shift, np.where(real < 0, -1, 1).astype(np.int64)


def requantize(acc: np.ndarray, m0: np.ndarray, shift: np.ndarray, sign: np.ndarray, bias: np.ndarray,
               low: int = -127, high: int = 127) -> np.ndarray:
    """int32 accumulators (..., C) -> int8 codes, integer arithmetic only (per-channel M0, n, sign, b)."""
    total = acc.astype(np.int64) * sign * m0 + bias
    scaled = (total + (np.int64(1) << (shift - 1))) >> shift  # one rounding, half up
    return np.clip(scaled, low, high).astype(np.int8)


def integer_epilogue(a: np.ndarray, b: np.ndarray, next_step: float) -> tuple[np.ndarray, ...]:
    """(M0, n, sign, b) for ``codes_next = round((a * acc + b) / next_step)``, b in the same 2^-n format."""
    m0, shift, sign = quantize_multiplier(a.astype(np.float64) / float(next_step))
    bias = np.round(b.astype(np.float64) / float(next_step) * 2.0**shift).astype(np.int64)
    return m0, shift, sign, bias

"""Fixed-point epilogues: every float scale of the network as an integer multiplier and shift.

Each epilogue maps an integer ``x`` (an int32 accumulator, or int8 codes) to
``round((a_c * x + b_c) / unit)`` -- ``unit`` being the value of one step of the output -- without
float: with ``|a_c| / unit ~ M0_c * 2^-n_c`` (M0_c in [2^30, 2^31), as TFLite and CMSIS-NN do), the
sign of a_c folded into ``m_c = +-M0_c`` and the bias in the same format, ``bias_c = round(b_c / unit * 2^n_c)``,

    e(x) = (x * m_c + bias_c + 2^(n_c - 1)) >> n_c        (int64, >> rounds toward -inf)

one rounding, half up. The C export (:mod:`bintut.integer.c_library`) computes the same expression with the same
constants, so numpy and C agree bit for bit. Where the output is int8 codes (a layer feeding the next
binary layer) the result is clamped to [0, 127]: that clamp is also the ReLU.

Residual additions need a shared scale: both branches are mapped to ``unit = s_out * 2^-FRACTION_BITS``
(16 extra fractional bits, so rounding each branch costs at most 2^-17 of a code), added, and
rounded once more to ``s_out`` (:func:`round_shift`). The constants are computed once, at export.
"""

from __future__ import annotations

import math

import numpy as np

from bintut.config import INT8_MAX
from bintut.errors import BintutError

FRACTION_BITS = 16  # fractional bits of the shared scale in residual additions and the pool

INT64_LIMIT = 2**63

MAX_SHIFT = 62


class FixedPointRangeError(ValueError, BintutError):
    """A multiplier or bias does not fit the fixed-point format."""


def quantize_multiplier(real: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel real multipliers -> (M0 in [2^30, 2^31) int64, shift n in [1, 62] int64, sign +-1 int64).
    ``real``: (C,) float; each result has its shape, so that real ~= sign * M0 / 2^n.

    A zero multiplier gives M0 = 0 and n = 1; so does one too small for the format (|real| < 2^-32,
    which would need a shift above 62): it moves an output by less than 2^-32 per unit of input, and, as
    in TFLite, the exact integer form of such a channel is a constant (the bias). Raises
    FixedPointRangeError naming the channel for a multiplier that is not finite or too large (>= 2^30).
    Taught in notebooks/07_integer_only_and_c.ipynb.

    >>> m0, shift, sign = quantize_multiplier(np.array([0.75, 0.1]))
    >>> m0.tolist(), shift.tolist(), sign.tolist()  # 0.75 = 1610612736 / 2^31, 0.1 ~ 1717986918 / 2^34
    ([1610612736, 1717986918], [31, 34], [1, 1])
    """
    real = np.asarray(real, dtype=np.float64)
    m0 = np.zeros(real.shape, dtype=np.int64)
    shift = np.ones(real.shape, dtype=np.int64)
    for i, value in enumerate(np.abs(real).flat):
        if value == 0:
            continue
        if not math.isfinite(value):
            raise FixedPointRangeError(f"channel {i}: multiplier {value!r} is not finite")
        mantissa, exponent = math.frexp(value)  # value = mantissa * 2^exponent, mantissa in [0.5, 1)
        q = round(mantissa * 2**31)
        if q == 2**31:
            q, exponent = q // 2, exponent + 1
        if 31 - exponent > MAX_SHIFT:  # underflow: the channel's output is its bias
            continue
        if 31 - exponent < 1:
            raise FixedPointRangeError(
                f"channel {i}: multiplier {value:.3g} is too large for the fixed-point format (needs a shift of "
                f"{31 - exponent}, allowed 1..{MAX_SHIFT})"
            )
        m0.flat[i], shift.flat[i] = q, 31 - exponent
    return m0, shift, np.where(real < 0, -1, 1).astype(np.int64)


def apply(x: np.ndarray, m: np.ndarray, shift: np.ndarray, bias: np.ndarray | int = 0) -> np.ndarray:
    """e(x) = (x * m + bias + 2^(shift - 1)) >> shift in int64, per channel on the last axis: x times the
    real multiplier m / 2^shift, rounded half up. ``x``: integers (..., C); ``m``, ``shift`` and ``bias``: (C,)
    or scalars (``bias`` in units of 2^-shift); returns (..., C) int64. Taught in notebooks/07_integer_only_and_c.ipynb.

    >>> m0, shift, sign = quantize_multiplier(np.array([0.75, 0.1]))
    >>> apply(np.array([[10, 10]]), sign * m0, shift).tolist()  # 7.5 rounds up to 8; 1.0 stays 1
    [[8, 1]]
    """
    total = x.astype(np.int64) * m + bias
    return (total + (np.int64(1) << (shift - 1))) >> shift


def round_shift(t: np.ndarray, bits: int = FRACTION_BITS) -> np.ndarray:
    """Drop ``bits`` fractional bits, rounding half up (the last step of a residual addition): int64 of any
    shape in units of 2^-bits -> int64 of the same shape in whole units."""
    return (t + (np.int64(1) << (bits - 1))) >> bits


def requantize(acc: np.ndarray, m0: np.ndarray, shift: np.ndarray, sign: np.ndarray, bias: np.ndarray,
               low: int = -INT8_MAX, high: int = INT8_MAX) -> np.ndarray:
    """int32 accumulators (..., C) -> int8 codes, integer arithmetic only (per-channel M0, n, sign, b)."""
    return np.clip(apply(acc, sign * m0, shift, bias), low, high).astype(np.int8)


CONSTANT_SHIFT = 31  # the shift of a constant channel (multiplier 0): its bias keeps 31 fractional bits


def integer_epilogue(a: np.ndarray, b: np.ndarray, unit: float) -> tuple[np.ndarray, ...]:
    """(M0, n, sign, bias) for ``round((a * x + b) / unit)``, the bias in the same 2^-n format.

    A channel with multiplier 0 (a = 0, or too small: :func:`quantize_multiplier`) is the constant
    ``round(b / unit)``; its shift is up to CONSTANT_SHIFT so that the bias is rounded once, not twice.
    A tiny multiplier beside a large bias (a near-dead BatchNorm channel) would need more than 64 bits
    for the bias at the multiplier's shift: the shift is then lowered until the bias fits, and M0 loses
    the same number of bits (it may become 0: the channel is then a constant). Raises
    FixedPointRangeError naming the channel when a multiplier or bias does not fit.
    """
    real = np.asarray(a, dtype=np.float64) / float(unit)
    m0, shift, sign = quantize_multiplier(real)
    target = np.asarray(b, dtype=np.float64) / float(unit)
    with np.errstate(divide="ignore", invalid="ignore"):  # a non-finite bias is refused below
        room = np.clip(np.floor(61 - np.log2(np.abs(target) + 1)), 1, MAX_SHIFT).astype(np.int64)
    crowded = (m0 != 0) & (shift > room)
    shift[crowded] = room[crowded]
    m0[crowded] = np.round(np.abs(real[crowded]) * np.exp2(room[crowded].astype(np.float64))).astype(np.int64)
    constant = m0 == 0
    shift[constant] = np.minimum(room[constant], CONSTANT_SHIFT)
    scaled = target * np.exp2(shift.astype(np.float64))
    too_large = ~(np.abs(scaled) < 2.0**MAX_SHIFT)
    if too_large.any():
        i = int(np.flatnonzero(too_large)[0])
        raise FixedPointRangeError(
            f"channel {i}: bias {float(np.asarray(b).flat[i]):.3g} does not fit 64 bits at unit {unit:.3g}")
    return m0, shift, sign, np.round(scaled).astype(np.int64)


def fixed_point(a: np.ndarray, b: np.ndarray, unit: float, max_input: int) -> tuple[np.ndarray, ...]:
    """Signed multiplier m (fits int32), shift and bias of ``round((a * x + b) / unit)``, checked so that
    ``x * m + bias + 2^(shift - 1)`` cannot leave int64 for any |x| <= max_input.

    ``a``, ``b``: (C,) float per-channel scale and offset; ``unit``: the output step. Returns three (C,) arrays:
    m int64 (|m| < 2^31), shift int64 (bits), bias int64 (in units of 2^-shift output steps).
    Raises FixedPointRangeError, with the worst-case magnitude, when the sum could leave int64."""
    m0, shift, sign, bias = integer_epilogue(a, b, unit)
    worst = max_input * (2**31 - 1) + int(np.abs(bias).max(initial=0)) + 2 ** (int(shift.max(initial=1)) - 1)
    if worst >= INT64_LIMIT:
        raise FixedPointRangeError(f"|x * m + bias| could reach {worst:.3g}, beyond int64")
    return sign * m0, shift, bias


def output_bound(m: np.ndarray, shift: np.ndarray, bias: np.ndarray, max_input: int) -> int:
    """An upper bound of |e(x)| over |x| <= max_input (Python integers, one unit of margin for the floor)."""
    return max(
        ((abs(int(mi)) * max_input + abs(int(bi)) + 2 ** (int(si) - 1)) >> int(si)) + 1
        for mi, si, bi in zip(m.flat, shift.flat, bias.flat, strict=True)
    )


def residual_add(codes_a: np.ndarray, step_a: float, codes_b: np.ndarray, step_b: float, step_out: float,
                 bits: int = FRACTION_BITS) -> dict:
    """Two int8 tensors at different steps added at a shared scale, step by step (as TFLite's int8 ADD).

    Each branch is mapped to units of ``step_out * 2^-bits`` by a fixed-point multiply (one integer
    multiply and one shift), the terms are added, and the sum is rounded once to codes at ``step_out``.
    Returns every intermediate, and the float reference ``round((a * step_a + b * step_b) / step_out)``.
    ``codes_a``, ``codes_b``: int8 codes of one shape (broadcastable); steps in activation units per code;
    the terms, sum and codes are int64 of that shape.
    """
    unit = step_out * 2.0**-bits
    m_a, shift_a, _ = fixed_point([step_a], [0.0], unit, INT8_MAX)
    m_b, shift_b, _ = fixed_point([step_b], [0.0], unit, INT8_MAX)
    a, b = np.asarray(codes_a, dtype=np.int64), np.asarray(codes_b, dtype=np.int64)
    term_a, term_b = apply(a, m_a[0], shift_a[0]), apply(b, m_b[0], shift_b[0])
    return {
        "multiplier a": int(m_a[0]), "shift a": int(shift_a[0]),
        "multiplier b": int(m_b[0]), "shift b": int(shift_b[0]),
        "term a": term_a, "term b": term_b, "sum": term_a + term_b,
        "codes": np.clip(round_shift(term_a + term_b, bits), -127, 127),
        "float reference": np.clip(np.floor((a * step_a + b * step_b) / step_out + 0.5), -127, 127).astype(np.int64),
    }

"""bintut.integer.fixedpoint: the fixed-point multipliers, requantization and the residual addition, bit
exact against independent integer arithmetic."""


import numpy as np
import torch


def test_fixed_point_multiplier_and_requantize_bit_exact_against_torch_int64():
    from bintut.integer.fixedpoint import integer_epilogue, quantize_multiplier, requantize

    rng = np.random.default_rng(7)
    real = np.concatenate([rng.uniform(1e-6, 1e-2, 30), -rng.uniform(1e-6, 1e-2, 10), [0.5, 2.0**-20]])
    m0, shift, sign = quantize_multiplier(real)
    nonzero = m0 > 0
    assert np.all((m0[nonzero] >= 2**30) & (m0[nonzero] < 2**31))
    np.testing.assert_allclose(sign * m0 * 2.0 ** (-shift.astype(float)), real, rtol=2**-30)

    acc = rng.integers(-585_216, 585_217, (500, len(real))).astype(np.int32)  # the full range we use
    acc[0] = 585_216
    acc[1] = -585_216
    offset = rng.uniform(-20, 20, len(real))
    m0, shift, sign, bias = integer_epilogue(real, offset, 1.0)
    ours = requantize(acc, m0, shift, sign, bias)
    # the same specification, written independently in torch int64
    total = torch.from_numpy(acc).long() * torch.from_numpy(sign * m0) + torch.from_numpy(bias)
    scale = 2 ** torch.from_numpy(shift)
    reference = (total + scale // 2).div(scale, rounding_mode="floor").clamp(-127, 127).to(torch.int8)
    assert np.array_equal(ours, reference.numpy())
    # one rounding of the real-valued epilogue: equal except, rarely, at a half
    exact = np.clip(np.floor(acc * real + offset + 0.5), -127, 127)
    assert np.abs(ours.astype(np.int64) - exact).max() <= 1
    assert (ours == exact).mean() > 0.999


def test_residual_addition_at_a_shared_scale():
    from bintut.integer.fixedpoint import residual_add

    rng = np.random.default_rng(3)
    a, b = rng.integers(-127, 128, 20_000), rng.integers(-127, 128, 20_000)
    result = residual_add(a, 0.05, b, 0.08, 0.07)  # (5a + 8b) / 7 is never exactly a half
    assert 2**30 <= result["multiplier a"] < 2**31 and 2**30 <= result["multiplier b"] < 2**31
    diff = np.abs(result["codes"] - result["float reference"])
    assert diff.max() <= 1 and (diff == 0).mean() > 0.999  # one rounding, 2^-16 of a code per branch
    assert residual_add(np.array([37]), 0.05, np.array([-12]), 0.08, 0.06)["codes"].tolist() == [15]  # 0.89 / 0.06


def test_fixed_point_epilogues_round_like_exact_arithmetic_whatever_the_sign_and_size():
    """round((a * x + b) / unit) per channel, for negative, tiny (underflowing), crowded and zero multipliers."""
    from fractions import Fraction

    from bintut.integer.fixedpoint import apply, fixed_point

    rng = np.random.default_rng(0)
    a = np.concatenate([rng.normal(0, 1e-3, 6), [-2e-3, 3e-17, -1e-16, 0.0, 1e-9, -4e-10]])
    b = np.concatenate([rng.normal(0, 0.05, 6), [0.01, 0.0114, -0.023, 0.0299, 2.1, -0.9]])
    unit = 2.4e-6  # a residual branch's fine unit: large b / unit
    m, shift, bias = fixed_point(a, b, unit, 127 * 576)
    x = rng.integers(-127 * 576, 127 * 576, size=(500, len(a)))
    got = apply(x, m, shift, bias)
    for c in range(len(a)):
        exact = [Fraction(float(a[c])) * int(v) / Fraction(unit) + Fraction(float(b[c])) / Fraction(unit)
                 for v in x[:, c]]
        expected = np.array([int(np.floor(e + Fraction(1, 2))) for e in exact])
        near_half = np.array([abs(e - np.floor(e) - Fraction(1, 2)) < Fraction(1, 1000) for e in exact])
        assert np.array_equal(got[~near_half, c], expected[~near_half]), f"channel {c}"
    assert m[a.tolist().index(3e-17)] == 0 and np.sign(m[6]) == -1

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from bintut.integer.kernels import (
    AccumulatorRangeError,
    addsub_gemm,
    blas_gemm,
    check_exact_range,
    conv_weight_matrix,
    im2col,
    oracle_gemm,
    pack_signs,
    unpack_signs,
)

RNG = np.random.default_rng(0)


def all_three(x, w):
    bits = pack_signs(w)
    return addsub_gemm(x, bits, x.shape[1]), blas_gemm(x, w), oracle_gemm(x, w)


@pytest.mark.parametrize("k", [1, 7, 8, 9, 27, 576, 4608])
def test_kernels_agree_bit_for_bit_on_random_inputs(k):
    x = RNG.integers(-127, 128, (33, k)).astype(np.int8)
    w = np.where(RNG.random((17, k)) < 0.5, -1, 1).astype(np.int8)
    a, b, o = all_three(x, w)
    assert a.dtype == b.dtype == np.int32
    assert np.array_equal(a, o) and np.array_equal(b, o)


@pytest.mark.parametrize("value", [127, -127])
def test_kernels_on_adversarial_extremes(value):
    k = 4608  # the widest reduction in ResNet18: |acc| reaches 585,216, far beyond int16
    x = np.full((3, k), value, dtype=np.int8)
    w = np.stack([np.ones(k), -np.ones(k), np.where(np.arange(k) % 3, 1, -1)]).astype(np.int8)
    a, b, o = all_three(x, w)
    assert o[0, 0] == value * k and o[0, 1] == -value * k
    assert np.array_equal(a, o) and np.array_equal(b, o)
    assert abs(int(o[0, 0])) > np.iinfo(np.int16).max


def test_pack_unpack_roundtrip_and_sign_of_zero():
    w = np.array([[0.0, -0.5, 2.0, -0.0, 1e-9, -3.0, 0.1, 0.2, -0.2]])
    bits = pack_signs(w)
    assert bits.shape == (1, 2)
    assert unpack_signs(bits, 9).tolist() == [[1, -1, 1, 1, 1, -1, 1, 1, -1]]  # sign(0) = +1, as in torch


def test_fast_path_refuses_inexact_range():
    check_exact_range(4608)
    with pytest.raises(AccumulatorRangeError, match="K=132105"):
        check_exact_range(132105)  # 127 * K >= 2^24
    with pytest.raises(TypeError, match="int8"):
        addsub_gemm(np.zeros((2, 3), np.int16), pack_signs(np.ones((1, 3))), 3)


@pytest.mark.parametrize("kernel, stride, padding", [(3, 1, 1), (3, 2, 1), (1, 2, 0), (1, 1, 0)])
def test_conv_via_im2col_matches_torch(kernel, stride, padding):
    x = RNG.integers(-127, 128, (2, 9, 9, 5)).astype(np.int8)  # NHWC, odd sizes on purpose
    w = np.where(RNG.random((4, 5, kernel, kernel)) < 0.5, -1, 1).astype(np.int8)
    patches = im2col(x, kernel, stride, padding)
    acc = oracle_gemm(patches, conv_weight_matrix(w))
    ref = F.conv2d(torch.from_numpy(x).permute(0, 3, 1, 2).double(), torch.from_numpy(w).double(),
                   stride=stride, padding=padding)
    out = ref.shape[-1]
    assert np.array_equal(acc.reshape(2, out, out, 4), ref.permute(0, 2, 3, 1).numpy().astype(np.int64))



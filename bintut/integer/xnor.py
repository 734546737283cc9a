"""±1 activations x ±1 weights: XNOR and popcount, in numpy, bit for bit the integer product.

With a, w in {-1, +1} stored as bits (1 for +1, as :func:`~bintut.integer.kernels.pack_signs` packs them), a_k w_k is
+1 where the bits agree and -1 where they differ, so over a reduction of length K

    sum_k a_k w_k = K - 2 popcount(a XOR w) = 2 popcount(XNOR(a, w)) - K

-- 64 products per XOR and popcount of two 64-bit words. Padding bits are 0 in both operands, so they never count.
A binary-activation layer (:mod:`bintut.binact`) computes ``s (sum w + sum b w)`` from this product.
Taught in notebooks/09_binary_activations.ipynb.
"""

from __future__ import annotations

import math

import numpy as np

WORD_BITS = 64


def as_words(bits: np.ndarray) -> np.ndarray:
    """(R, B) uint8 packed bits -> (R, ceil(B / 8)) uint64 words (native byte order), zero-padded: what a C kernel
    XORs and popcounts."""
    rows, nbytes = bits.shape
    padded = np.zeros((rows, math.ceil(nbytes / 8) * 8), dtype=np.uint8)
    padded[:, :nbytes] = bits
    return padded.view(np.uint64)


def xnor_gemm(a_bits: np.ndarray, w_bits: np.ndarray, k: int, chunk: int = 64) -> np.ndarray:
    """``K - 2 popcount(a XOR w)`` for every row pair: a_bits (M, ceil(K/8)) and w_bits (N, ceil(K/8)) uint8 packed
    signs (bit 1 for +1, MSB first, zero padding); returns (M, N) int32, equal to ``a @ w.T`` of the ±1 matrices.
    Works on 64-bit words, ``chunk`` output channels at a time. Raises ValueError when the two are not packed for
    the same K. Taught in notebooks/09_binary_activations.ipynb.

    >>> from bintut.integer.kernels import pack_signs
    >>> a, w = np.array([[1, -1, -1, 1, 1]]), np.array([[1, 1, -1, -1, 1], [-1, 1, 1, -1, -1]])
    >>> xnor_gemm(pack_signs(a), pack_signs(w), 5).tolist(), (a @ w.T).tolist()
    ([[1, -5]], [[1, -5]])
    """
    nbytes = math.ceil(k / 8)
    if a_bits.shape[1] != nbytes or w_bits.shape[1] != nbytes:
        raise ValueError(f"packed widths {a_bits.shape[1]} and {w_bits.shape[1]} bytes, K = {k} needs {nbytes}")
    a, w = as_words(a_bits), as_words(w_bits)
    acc = np.empty((a.shape[0], w.shape[0]), dtype=np.int32)
    for start in range(0, w.shape[0], chunk):
        differ = np.bitwise_count(a[:, None, :] ^ w[None, start:start + chunk, :]).sum(axis=2, dtype=np.int32)
        acc[:, start:start + chunk] = k - 2 * differ
    return acc


def pm1_product(a: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The integer product the XNOR GEMM must equal: a (M, K) and w (N, K) in {-1, +1} -> (M, N) int64."""
    return np.asarray(a, dtype=np.int64) @ np.asarray(w, dtype=np.int64).T


def xnor_costs(rows: list, keep: tuple[str, ...] = ("conv1", "fc")) -> list[dict]:
    """Per layer of :func:`bintut.integer.opcount.layer_costs`: the int8 path's additions against the XNOR path's
    64-bit word operations (an XOR and a popcount per word, ``ceil(K / 64)`` words per output; the additions of the
    popcounts not counted), and the input's bytes as int8 codes against bits. Layers in ``keep`` stay int8 (both
    columns the same). Returns one dict per layer."""
    out = []
    for r in rows:
        outputs = r.macs // r.k
        inputs = math.prod(r.input_shape)
        binary = r.name not in keep
        words = outputs * math.ceil(r.k / WORD_BITS)
        out.append({
            "layer": r.name, "K": r.k, "int8 path ops": r.macs, "binary path ops": 2 * words if binary else r.macs,
            "input bytes int8": inputs, "input bytes binary": math.ceil(inputs / 8) if binary else inputs,
        })
    return out

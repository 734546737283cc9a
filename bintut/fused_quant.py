"""The gradual quantizers' arithmetic as two fused autograd functions, for eager mode on a CPU.

:class:`bintut.quant.GradualQuantizer` defines a quantizer as an expression of small tensor operations --
``lerp(where(mask, hard(x), x), hard(x), bin_ratio)`` with straight-through estimators inside ``hard`` --
which autograd records op by op: about 25 passes over every activation per training step, each writing
a new tensor, and as many again backwards. On a CPU in eager mode that doubled the training step
(docs/fast_training.md, "The training step on a CPU"). The functions here compute the same forward values
in a few in-place passes and write the gradient in closed form (for activations from the few positions
where a code sits at the clamp, for weights from the saved signs and mask):

* activations, ``x`` any shape, ``step`` 0-d (units of x per int8 code), mask ``m`` (bool, x's shape, or
  None in eval) and blend ``r``::

      hard = clamp(round(x / step), -127, 127) * step
      out  = lerp(where(m, hard, x), hard, r)
      d out / d x = where(m, k, (1 - r) + r * k),   k = [|round(x / step)| < 127]

  (the straight-through gradient of round passes where the code is not clamped, as the composed
  expression's does: torch.clamp's gradient is 0 at its bounds, so a code of exactly +-127 gets none);
* weights ``w`` (out, ...) with the per-output-channel scale ``s`` (out, 1, ...)::

      hard = sign(w) * s,  sign(0) = +1
      out  = lerp(where(m, hard, w), hard, r)
      d out / d w = where(m, s, (1 - r) + r * s),   d out / d s = sum over a channel of g * (r + (1 - r) m) * sign(w)

  (the identity straight-through estimator of sign, times the scale).

Forward values equal the composed expression's; gradients equal it up to float rounding (the composed
chain multiplies by ``step`` and divides by it again). ``tests/ideas/test_fused_quant.py`` holds both against the
composed expression. Under ``torch.compile`` the quantizers keep the composed expression, which the
compiler fuses itself. Taught (as the composed expression) in notebooks/03_sprinkled_binarization.ipynb and
notebooks/04_int8_activations.ipynb.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from bintut.config import INT8_MAX


def uniform_like(x: torch.Tensor) -> torch.Tensor:
    """Uniform [0, 1) float32 numbers of x's shape (dense strides like ``torch.empty_like``): the random draw behind
    a sprinkling mask, ``uniform_like(x) < p``.

    On a CPU in eager mode numpy's PCG64 generator fills the tensor, seeded by one draw of torch's generator (so
    ``torch.manual_seed`` still makes every mask reproducible): torch's CPU generator (mt19937, one thread) took
    a tenth of a binarizing training step, twice what PCG64 takes. On another device, or while torch.compile
    traces, it is ``torch.rand_like``. The distribution is the same either way; the numbers are not.
    """
    if torch.compiler.is_compiling() or x.device.type != "cpu":
        return torch.rand_like(x, dtype=torch.float32)
    out = torch.empty_like(x, dtype=torch.float32)
    seed = int(torch.randint(0, 2**62, ()).item())
    np.random.Generator(np.random.PCG64(seed)).random(out=memory_order(out).numpy(), dtype=np.float32)
    return out


def int8_codes(x: torch.Tensor, step: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The int8 fake-quantized ``x`` (float32, x's shape and strides) and where its code sits at the clamp.

    ``x`` float32 any shape, dense (contiguous in some dimension order: ``torch.contiguous_format`` or
    ``channels_last``), ``step`` a 0-d float32 tensor > 0 (units of x per code). The code is ``round(x / step)``
    (round half to even) clamped to +-127 (the composed expression's clamp to +-128 before rounding changes no
    code). The second result holds the positions, as int64 offsets into x's memory (:func:`memory_order`), of the
    codes equal to +-127: the straight-through gradient of round stops there, as torch.clamp's gradient does (0 at
    its bounds), and passes everywhere else. They are few (the entries near max|x|), so they are looked for only
    in the blocks of :data:`BLOCK` entries whose largest value reaches 127 steps, instead of flagging every entry
    (a bool tensor costs a CPU as much as two float passes to write).
    """
    values = torch.div(x, step).round_().clamp_(-INT8_MAX, INT8_MAX).mul_(step)
    limit = step * INT8_MAX  # the value a code of 127 takes: the same float product as in `values`
    return values, _at_limit(memory_order(values), limit)


BLOCK = 1024  # entries per block when looking for the clamped codes: few blocks hold one


def memory_order(t: torch.Tensor) -> torch.Tensor:
    """A dense tensor's entries as a 1-D view in the order they lie in memory (shares t's storage)."""
    return t.as_strided((t.numel(),), (1,), t.storage_offset())


def _at_limit(flat: torch.Tensor, limit: torch.Tensor) -> torch.Tensor:
    """The indices (int64, ascending) of the entries of 1-D ``flat`` with |value| >= ``limit`` (0-d): the
    largest and smallest value of every block of :data:`BLOCK` first, then only the blocks that reach it."""
    whole = flat.numel() // BLOCK * BLOCK
    blocks = flat[:whole].view(-1, BLOCK)
    reach = (blocks.amax(1) >= limit).logical_or_(blocks.amin(1) <= -limit).nonzero().squeeze(1)
    found = (blocks[reach].abs() >= limit).nonzero()
    tail = (flat[whole:].abs() >= limit).nonzero().squeeze(1) + whole
    return torch.cat([reach[found[:, 0]] * BLOCK + found[:, 1], tail])


def _dense(x: torch.Tensor) -> torch.Tensor:
    """x itself where its memory is dense (contiguous or channels_last), else a contiguous copy."""
    dense = x.is_contiguous() or (x.dim() == 4 and x.is_contiguous(memory_format=torch.channels_last))
    return x if dense else x.contiguous()


def abs_max(x: torch.Tensor) -> torch.Tensor:
    """max|x| of any tensor as a 0-d float32 tensor (0 for an empty tensor; NaN if x holds one): the larger of
    max x and -min x, two reductions that on a CPU take a third of the time of one ``torch.aminmax``."""
    if x.numel() == 0:
        return torch.zeros((), device=x.device)
    x = x.detach()
    return torch.maximum(x.amax(), x.amin().neg()).float()


Mask = torch.Tensor | bool  # which entries are sprinkled: a tensor of x's shape (bool, or 0/1 floats that _blend may
# overwrite), or False (none) / True (all)


def _blend(x: torch.Tensor, hard: torch.Tensor, mask: Mask,
           r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``lerp(where(mask, hard, x), hard, r)``, the sprinkled and blended tensor (new, x's shape), and for a mask
    tensor the per-entry blend weights ``u = max(mask, r)`` (1 where sprinkled, r elsewhere) it was computed with:
    ``lerp(x, hard, u)`` is the same number entry by entry (lerp(x, h, 1) is h), in one pass, where ``torch.where``
    on a bool mask costs as much as eight multiplications on a CPU."""
    if mask is True:
        return hard, None  # lerp(hard, hard, r) is hard
    if mask is False:
        return x.clone().lerp_(hard, r), None
    weights = mask.to(x.dtype).clamp_(min=r)
    return torch.lerp(x, hard, weights), weights


def _save(ctx: Any, mask: Mask, weights: torch.Tensor | None, *tensors: torch.Tensor) -> None:
    ctx.mask = mask if isinstance(mask, bool) else None
    ctx.save_for_backward(*tensors, weights)


class GradualInt8(torch.autograd.Function):
    """``lerp(where(m, fq(x), x), fq(x), r)`` for int8 fake quantization fq with the step ``step``.

    Arguments: ``x`` float32 (any shape), ``step`` 0-d float32 (no gradient), ``mask`` a tensor of x's shape (bool,
    or 0/1 floats that the forward overwrites), or False (nothing sprinkled) / True (everything), ``r`` 0-d float32
    (bin_ratio, no gradient). Returns float32 of x's shape.

    The gradient is ``grad`` itself wherever the code is inside (-127, 127) -- k = 1 makes every case of the
    formula in the module docstring 1 -- and ``grad * (1 - u)`` at the clamp (u = 1 where sprinkled, r elsewhere).
    So the forward saves only the clamped positions and their factors, and the backward copies ``grad`` and
    rescales those few entries: one pass instead of five, and no activation-sized tensor kept for it.
    """

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, step: torch.Tensor, mask: Mask, r: torch.Tensor) -> torch.Tensor:
        x = _dense(x)
        hard, at_clamp = int8_codes(x, step)
        out, weights = _blend(x, hard, mask, r)
        if weights is not None:  # 1 - u at the clamped entries
            weights = weights if weights.stride() == x.stride() else torch.empty_like(x).copy_(weights)
            factors = memory_order(weights)[at_clamp].neg_().add_(1)
        else:  # u = 1 everywhere (all sprinkled) or u = r (none)
            factors = (torch.zeros_like(r) if mask is True else 1 - r).expand(at_clamp.shape)
        ctx.layout = x.shape, x.stride()
        ctx.save_for_backward(at_clamp, factors)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        at_clamp, factors = ctx.saved_tensors
        if at_clamp.numel() == 0:
            return grad, None, None, None
        shape, stride = ctx.layout  # the clamped positions are offsets in x's memory order
        out = torch.empty_strided(shape, stride, dtype=grad.dtype, device=grad.device).copy_(grad)
        flat = memory_order(out)
        flat.index_put_((at_clamp,), flat[at_clamp] * factors)
        return out, None, None, None


class GradualSign(torch.autograd.Function):
    """``lerp(where(m, sign(w) s, w), sign(w) s, r)`` with identity straight-through gradients.

    Arguments: ``w`` (out, ...) float, ``scale`` (out, 1, ...) of w's dtype (gets a gradient), ``mask`` a bool
    tensor of w's shape, or False (nothing sprinkled) / True (everything), ``r`` 0-d (bin_ratio, no gradient).
    Returns w's shape and dtype.
    """

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, scale: torch.Tensor, mask: Mask, r: torch.Tensor) -> torch.Tensor:
        signs = w.sign().add_(0.5).sign_()  # sign with sign(0) = sign(-0) = +1, as w >= 0 gives
        out, weights = _blend(w, signs * scale, mask, r)
        _save(ctx, mask, weights, signs, scale, r)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        signs, scale, r, weights = ctx.saved_tensors
        r = r.to(grad.dtype)
        # d out / d hard: grad where sprinkled, grad r elsewhere; grad - to_hard is d out / d w not through hard
        to_hard = grad if ctx.mask is True else grad * (r if ctx.mask is False else weights)
        grad_w = torch.addcmul(grad, to_hard, scale - 1)
        if not ctx.needs_input_grad[1]:
            return grad_w, None, None, None
        products = to_hard.mul_(signs) if to_hard is not grad else grad * signs  # to_hard is not needed again
        return grad_w, products.sum(tuple(range(1, grad.dim())), keepdim=True), None, None


class KeptWeight(torch.autograd.Function):
    """The weight unchanged (p = bin_ratio = 0: ``lerp(w, hard, 0)`` is ``w``) with the gradients of the gradual
    expression there: ``grad`` for ``w`` and zeros for the scale (so that AdamW still decays it, as it does when
    the composed expression gives it a zero gradient). Arguments: ``w`` (out, ...), ``scale`` (out, 1, ...)."""

    @staticmethod
    def forward(ctx: Any, w: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
        ctx.scale_shape, ctx.scale_dtype = scale.shape, scale.dtype
        return w.view_as(w)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple:
        return grad, torch.zeros(ctx.scale_shape, dtype=ctx.scale_dtype, device=grad.device)

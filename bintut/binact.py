"""Binary activations: the third quantizer kind, beside :class:`~bintut.quant.SignQuantizer` (binary weights) and
:class:`~bintut.quant.Int8Quantizer` (int8 inputs). Taught in notebooks/09_binary_activations.ipynb.

The inputs of the residual blocks' convolutions come out of a ReLU (``x >= 0``), so a plain ``sign(x)`` would be
+1 everywhere. Each value becomes one of two levels instead, 0 or ``2 s``, with ``s`` the running mean of ``x``
(an exponential moving average of the batch means, as Int8Quantizer tracks its max):

    hard(x) = s + s * sign((x - s) / s) = s (1 + b),    b = sign(x - s) in {-1, +1}    (sign(0) = +1)

so the layer computes ``conv(s (1 + b), w) = s (sum w + sum b w)``: one ±1 x ±1 product, which XNOR and popcount
compute (:mod:`bintut.integer.xnor`), plus a per-channel constant. A zero-padded tap is ``b = -1``. The gradient is
the clipped identity of BinaryNet and XNOR-Net: 1 where ``|x - s| <= s`` (``0 <= x <= 2 s``), 0 outside.

:func:`binarize_activations_` puts one in front of a layer's int8 quantizer, which becomes its ``start``: the
quantizer blends from the int8 view of the input to the binary one with the same ``p`` / ``bin_ratio`` machinery
(:class:`~bintut.quant.GradualQuantizer`), so at ``p = bin_ratio = 0`` the model is exactly the ``both`` stage's.
"""

from __future__ import annotations

import torch
from torch import nn

from bintut.quant import GradualQuantizer, Int8Quantizer, check_control

KEEP_INT8 = ("conv1", "fc")  # the stem (signed image codes) and the head stay int8, as in Bi-Real Net and Larq's zoo


def sign_clipped_ste(u: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1 in the forward pass; in the backward pass the clipped identity: gradient 1 where
    ``|u| <= 1``, 0 outside (BinaryNet's straight-through estimator). Any shape, same shape and dtype out.
    Taught in notebooks/09_binary_activations.ipynb.

    >>> u = torch.tensor([-2.0, -0.5, 0.0, 0.5, 2.0], requires_grad=True)
    >>> y = sign_clipped_ste(u); y.sum().backward()
    >>> y.tolist(), u.grad.tolist()
    ([-1.0, -1.0, 1.0, 1.0, 1.0], [0.0, 1.0, 1.0, 1.0, 0.0])
    """
    hard = torch.where(u >= 0, 1.0, -1.0).to(u.dtype)
    passing = torch.where(u.abs() <= 1, u, u.detach())  # the gradient passes where |u| <= 1, the ends included
    return passing + (hard - passing).detach()


class BinaryActQuantizer(GradualQuantizer):
    """Binary activations ``s (1 + b)``, ``b = sign(x - s)``, with ``s`` the EMA of the batches' mean|x| (the first
    training batch sets it). ``start`` (optional): the quantizer whose output is blended towards the binary one
    (the layer's Int8Quantizer); without it, ``x`` itself. Sprinkled in training only, as Int8Quantizer.
    Taught in notebooks/09_binary_activations.ipynb.
    """

    role = "binary activations"

    def __init__(self, momentum: float = 0.1, start: GradualQuantizer | None = None) -> None:
        super().__init__(None)
        self.momentum = momentum
        self.start = start
        self.register_buffer("running_mean", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def observe(self, x: torch.Tensor) -> None:
        """Track mean|x| of a training batch (any shape) in ``running_mean``, a 0-d float32 buffer."""
        current = x.detach().abs().mean().float()
        ema = torch.lerp(self.running_mean, current, self.momentum)
        self.running_mean.copy_(torch.where(self.initialized, ema, current))
        self.initialized.fill_(True)

    def scale_for(self, x: torch.Tensor) -> torch.Tensor:
        """The level ``s`` (0-d float32, in x's units): the running mean, or mean|x| of this batch before any
        training batch was seen."""
        current = x.detach().abs().mean().float()
        return torch.where(self.initialized, self.running_mean, current).clamp_min(torch.finfo(torch.float32).tiny)

    def hard(self, x: torch.Tensor) -> torch.Tensor:
        """``s (1 + sign(x - s))`` (any shape; values 0 or 2s), clipped-identity gradient; in training it first
        updates the running mean. Taught in notebooks/09_binary_activations.ipynb."""
        if self.training:
            self.observe(x)
        s = self.scale_for(x)
        return s + s * sign_clipped_ste((x.float() - s) / s)

    def signs(self, x: torch.Tensor) -> torch.Tensor:
        """``b = sign(x - s)``: int8 in {-1, +1}, same shape (no running-mean update)."""
        return torch.where(x.float() >= self.scale_for(x), 1, -1).to(torch.int8)

    def sprinkle(self, x: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        """In training as :meth:`GradualQuantizer.sprinkle` (same shape as ``x``); in eval ``x`` unchanged."""
        return super().sprinkle(x, hard) if self.training else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The input the layer sees (any shape, float32): ``start(x)`` (or ``x``) blended towards binary."""
        if self.start is not None:
            x = self.start(x)
        return super().forward(x.float())


def binarize_activations_(model: nn.Module, keep: tuple[str, ...] = KEEP_INT8, momentum: float = 0.1) -> list[str]:
    """Put a :class:`BinaryActQuantizer` in front of the int8 input quantizer of every layer not named in ``keep``
    (its controls at 0: the model computes what it did). Returns the converted layers' names. Raises ValueError
    when the model has no int8 input quantizers (convert it with ``bintut.binarize_`` first) or is converted
    already. Taught in notebooks/09_binary_activations.ipynb."""
    if any(isinstance(m, BinaryActQuantizer) for m in model.modules()):
        raise ValueError("model already has binary activations")
    layers = [(name, m) for name, m in model.named_modules() if isinstance(getattr(m, "input_quant", None),
                                                                            Int8Quantizer)]
    if not layers:
        raise ValueError("model has no int8 input quantizers: convert it with bintut.binarize_ first")
    converted = []
    for name, layer in layers:
        if name not in keep:
            layer.input_quant = BinaryActQuantizer(momentum, start=layer.input_quant)
            converted.append(name)
    return converted


def set_binary_controls(model: nn.Module, p: float | None = None, bin_ratio: float | None = None) -> None:
    """Set p and/or bin_ratio of every binary-activation quantizer. Raises ValueError for a control outside [0, 1]
    or a model without binary activations (see :func:`binarize_activations_`)."""
    p = None if p is None else check_control("p", p)
    bin_ratio = None if bin_ratio is None else check_control("bin_ratio", bin_ratio)
    found = [m for m in model.modules() if isinstance(m, BinaryActQuantizer)]
    if not found:
        raise ValueError("model has no binary activations: convert it with binarize_activations_ first")
    for q in found:
        q.set_controls(p, bin_ratio)

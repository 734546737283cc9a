"""Gradual quantizers: one abstraction for binary weights and int8 activations.

A :class:`GradualQuantizer` maps a tensor ``x`` to its quantized version ``hard(x)`` and introduces it gradually
with two controls (notebooks/03_sprinkled_binarization.ipynb): ``p``, the probability that an entry is replaced by
its quantized value ("sprinkling": a fresh Bernoulli mask every forward, or a fixed nested mask), and
``bin_ratio``, which blends ``(1 - bin_ratio) * sprinkled + bin_ratio * hard``. At ``p = bin_ratio = 0`` the
output is ``x`` exactly; at ``p = bin_ratio = 1`` it is ``hard(x)`` exactly. Controls are 0-d buffers updated in
place, so a compiled model sees new values without recompiling.

Activations are sprinkled in training only: in eval mode the activation quantizer returns
``(1 - bin_ratio) * x + bin_ratio * hard(x)`` without a mask, as the reference does ("soft" evaluation).
Weights are sprinkled in both modes, also as the reference does.

:func:`binarize_` converts a torchvision model in place: a weight quantizer is registered as a parametrization
of every Conv2d/Linear weight, an activation quantizer as a forward pre-hook on its input.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Literal

import torch
from torch import nn
from torch.nn.utils import parametrize

from bintut.config import INT8_MAX, QuantConfig, parse_scale_init
from bintut.fused_quant import GradualInt8, GradualSign, KeptWeight, abs_max, uniform_like

Target = Literal["all", "weights", "activations"]
QUANTIZED_LAYERS = (nn.Conv2d, nn.Linear)


def round_ste(x: torch.Tensor) -> torch.Tensor:
    """Round in the forward pass, identity gradient in the backward pass (the straight-through estimator);
    any shape, same shape and dtype out.
    Taught in notebooks/04_int8_activations.ipynb.

    >>> x = torch.tensor([0.4, 1.6], requires_grad=True)
    >>> y = round_ste(x); y.sum().backward()
    >>> y.tolist(), x.grad.tolist()
    ([0.0, 2.0], [1.0, 1.0])
    """
    return x + (torch.round(x) - x).detach()


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """sign with sign(0) = +1 in the forward pass, identity gradient in the backward pass (the straight-through
    estimator). Taught in notebooks/03_sprinkled_binarization.ipynb.

    >>> sign_ste(torch.tensor([-0.3, 0.0, 2.0])).tolist()
    [-1.0, 1.0, 1.0]
    """
    hard = torch.where(x >= 0, 1.0, -1.0).to(x.dtype)
    return x + (hard - x).detach()


def check_control(name: str, value: float) -> float:
    """``value`` as a float, or ValueError naming the control and its value when it is outside [0, 1] (or NaN)."""
    value = float(value)
    if not 0.0 <= value <= 1.0:  # also rejects NaN
        raise ValueError(f"{name} must be in [0, 1], got {value!r}")
    return value


class GradualQuantizer(nn.Module):
    """Base class: sprinkle and blend ``hard(x)`` into ``x`` under the controls p, bin_ratio.

    Change the controls through :meth:`set_controls` (or :func:`set_controls`), not by writing the
    buffers: eager mode also keeps a host copy of p to skip the mask draw at p = 0 or 1.
    """

    role: str = "quantizer"

    def __init__(self, nested_shape: torch.Size | None = None) -> None:
        super().__init__()
        self.register_buffer("p", torch.zeros(()), persistent=False)
        self.register_buffer("bin_ratio", torch.zeros(()), persistent=False)
        # Nested sprinkling: a fixed uniform draw per entry; entry i is binarized while
        # threshold_i < p, so raising p only ever adds binarized entries.
        self.nested = nested_shape is not None
        if self.nested:
            self.register_buffer("threshold", torch.rand(nested_shape))

        self._p_host = 0.0  # host copies of the controls: eager mode skips work at p = 0 or 1 and bin_ratio = 0
        self._r_host = 0.0

    def hard(self, x: torch.Tensor) -> torch.Tensor:  # pragma: no cover - abstract
        """The fully quantized tensor, same shape as ``x``; each subclass defines it (here: NotImplementedError)."""
        raise NotImplementedError

    def set_controls(self, p: float | None = None, bin_ratio: float | None = None) -> None:
        if p is not None:
            self._p_host = check_control("p", p)
            self.p.fill_(self._p_host)
        if bin_ratio is not None:
            self._r_host = check_control("bin_ratio", bin_ratio)
            self.bin_ratio.fill_(self._r_host)

    def mask(self, x: torch.Tensor) -> torch.Tensor:
        """Which entries are binarized at the current p: a bool tensor of ``x``'s shape."""
        if self.nested:
            return self.threshold < self.p
        return uniform_like(x) < self.p

    def sprinkle(self, x: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        """Entries replaced by their quantized value with probability p (a fresh mask, or the nested one).
        Taught in notebooks/03_sprinkled_binarization.ipynb."""
        if not torch.compiler.is_compiling():
            # Same values and gradients as the masked path, without a random draw the size of x.
            if self._p_host == 0.0:
                return x
            if self._p_host == 1.0:
                return hard
        return torch.where(self.mask(x), hard, x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The gradual view of ``x`` (any shape, same shape out): ``lerp(sprinkle(x, hard(x)), hard(x), bin_ratio)``.
        Taught in notebooks/03_sprinkled_binarization.ipynb. (The composed expression, which torch.compile
        fuses; in eager mode the subclasses run it as one autograd function of :mod:`bintut.fused_quant`.)"""
        hard = self.hard(x)
        return torch.lerp(self.sprinkle(x, hard), hard, self.bin_ratio.to(x.dtype))

    def eager_mask(self, x: torch.Tensor) -> torch.Tensor | bool:
        """The fused path's mask: False at p = 0, True at p = 1, else :meth:`mask`'s draw (0/1 floats unless nested)."""
        return self._p_host == 1.0 if self._p_host in (0.0, 1.0) else (
            self.mask(x) if self.nested else uniform_like(x).lt_(self.p))

    def extra_repr(self) -> str:
        return f"p={self.p.item():.4g}, bin_ratio={self.bin_ratio.item():.4g}, nested={self.nested}"


class SignQuantizer(GradualQuantizer):
    """Binary weights: ``sign(w) * s_c`` with a per-output-channel scale ``s_c``.

    ``scale="learned"`` makes ``s_c`` a parameter, initialised by ``scale_init``: ``"mean_abs"``
    (mean|w_c|, so the binary weights start at the magnitude of the real ones) or
    ``"constant:VALUE"`` (the reference initialises every channel at 0.01). ``scale="analytic"``
    recomputes ``s_c = mean|w_c|`` every forward (XNOR-Net style). Raises ValueError for another ``scale``
    or a bad ``scale_init``.
    """

    role = "weights"

    def __init__(
        self,
        weight: torch.Tensor,
        scale: Literal["learned", "analytic"] = "learned",
        nested: bool = False,
        scale_init: str = "mean_abs",
    ) -> None:
        super().__init__(weight.shape if nested else None)
        if scale not in ("learned", "analytic"):
            raise ValueError(f"scale must be 'learned' or 'analytic', got {scale!r}")
        constant = parse_scale_init(scale_init)
        self.analytic = scale == "analytic"
        if not self.analytic:
            init = self.mean_abs(weight.detach()).clone()
            if constant is not None:
                init.fill_(constant)
            self.scale = nn.Parameter(init)

    @staticmethod
    def mean_abs(w: torch.Tensor) -> torch.Tensor:
        """Per-output-channel mean |w| of weights (out, ...), shaped (out, 1, ...) to broadcast against w."""
        return w.abs().flatten(1).mean(1).view(-1, *([1] * (w.dim() - 1)))

    def channel_scale(self, w: torch.Tensor) -> torch.Tensor:
        """s_c of weights (out, in, k, k) or (out, in): the learned scale or mean|w_c|, shaped (out, 1, ...)."""
        return self.mean_abs(w) if self.analytic else self.scale

    def hard(self, w: torch.Tensor) -> torch.Tensor:
        """``sign(w) * s_c``: the binary weight (out, in, k, k) with the per-output-channel scale s_c, STE gradient.
        Taught in notebooks/03_sprinkled_binarization.ipynb."""
        return sign_ste(w) * self.channel_scale(w).to(w.dtype)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        """The gradual weight (w's shape and dtype); eager with a learned scale: :mod:`bintut.fused_quant`."""
        if self.analytic or torch.compiler.is_compiling():
            return super().forward(w)
        mask = self.eager_mask(w)
        if mask is False and self._r_host == 0.0:
            return KeptWeight.apply(w, self.scale)
        return GradualSign.apply(w, self.scale.to(w.dtype), mask, self.bin_ratio.to(w.dtype))


class Int8Quantizer(GradualQuantizer):
    """Symmetric per-tensor int8 fake quantization with an EMA running max of |x|.

    scale = running_max / 127; in training, running_max <- (1 - m) * running_max + m * max|x|
    (the first batch initialises it). Values round with a straight-through gradient and clamp
    to [-127, 127].

    The arithmetic runs in float32 whatever the autocast dtype, and the output is float32: under
    bf16 a code can land a whole step away from ``round(x / step)``, and then the network trained
    and evaluated is not the integer network that ``export`` writes. Sprinkling happens in
    training only (see the module docstring).
    """

    role = "activations"
    levels = INT8_MAX

    def __init__(self, momentum: float = 0.1) -> None:
        super().__init__(None)
        self.momentum = momentum
        self.register_buffer("running_max", torch.zeros(()))
        self.register_buffer("initialized", torch.zeros((), dtype=torch.bool))

    def observe(self, x: torch.Tensor, current: torch.Tensor | None = None) -> None:
        """Track max|x| of a training batch (any shape): an exponential moving average with ``momentum``
        (the first batch sets it), a 0-d float32 buffer. ``current``: max|x| when the caller has it already.
        An empty batch changes nothing. Taught in notebooks/04_int8_activations.ipynb."""
        if x.numel() == 0:
            return
        current = abs_max(x) if current is None else current
        ema = torch.lerp(self.running_max, current, self.momentum)
        self.running_max.copy_(torch.where(self.initialized, ema, current))
        self.initialized.fill_(True)

    def step_for(self, x: torch.Tensor, current: torch.Tensor | None = None) -> torch.Tensor:
        """Quantization step (the int8 scale) for x: running_max / 127, a 0-d float32 tensor in units of x per code.

        A quantizer never run in training has no running max yet and uses max|x| of this
        batch (no Python branch on tensor values, so torch.compile keeps one graph).
        ``current``: max|x| when the caller has it already. Taught in notebooks/04_int8_activations.ipynb.
        """
        current = abs_max(x) if current is None else current
        running = torch.where(self.initialized, self.running_max, current)
        return running.clamp_min(torch.finfo(torch.float32).tiny) / self.levels

    def scaled(self, x: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
        """x / step in float32 (``x``'s shape, ``step`` 0-d), bounded to [-128, 128] so that rounding never meets
        an infinity.

        A zero or subnormal range makes the step subnormal and x / step overflow to +-inf; the bound keeps
        the codes (+-127 after the clamp, as :meth:`integer` gives) and, since codes beyond +-127.5 get no
        gradient anyway, the straight-through gradient of every finite input.
        """
        return torch.clamp(x.float() / step, -self.levels - 1, self.levels + 1)

    def hard(self, x: torch.Tensor) -> torch.Tensor:
        """int8 fake-quantized ``x`` (any shape): ``round(x / step)`` clamped to ±127, times step; STE gradient.
        In training it first updates the running max|x|. Taught in notebooks/04_int8_activations.ipynb."""
        if self.training:
            self.observe(x)
        step = self.step_for(x)
        q = torch.clamp(round_ste(self.scaled(x, step)), -self.levels, self.levels)
        return q * step

    def sprinkle(self, x: torch.Tensor, hard: torch.Tensor) -> torch.Tensor:
        """In training as :meth:`GradualQuantizer.sprinkle` (same shape as ``x``); in eval ``x`` unchanged."""
        return super().sprinkle(x, hard) if self.training else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The layer input a quantized layer sees: ``x`` (any shape) blended and sprinkled, computed in float32;
        float32 out under autocast, else x's dtype (a model cast with ``.to(torch.bfloat16)`` still runs). Eager
        mode: :class:`bintut.fused_quant.GradualInt8`, or only max|x| where the result is x (p = bin_ratio = 0)."""
        dtype, given = (torch.float32 if torch.is_autocast_enabled(x.device.type) else x.dtype), x
        x = x.float()
        if torch.compiler.is_compiling():
            return super().forward(x).to(dtype)
        current = abs_max(x)
        if self.training:
            self.observe(x, current)
        mask = self.eager_mask(x) if self.training else False
        if mask is False and self._r_host == 0.0:
            return given.to(dtype)  # x itself, in any dtype
        return GradualInt8.apply(x, self.step_for(x, current), mask, self.bin_ratio.float()).to(dtype)

    def integer(self, x: torch.Tensor) -> torch.Tensor:
        """The int8 codes of x (int8, same shape) at the current scale (no running-max update)."""
        q = torch.round(self.scaled(x, self.step_for(x)))
        return torch.clamp(q, -self.levels, self.levels).to(torch.int8)


def _quantize_input(module: nn.Module, args: tuple) -> tuple:
    return (module.input_quant(args[0]), *args[1:])


def binarize_(model: nn.Module, config: QuantConfig | None = None) -> nn.Module:
    """Convert every Conv2d/Linear of ``model`` in place; returns the model.

    The controls start at 0, so the converted model computes what it computed before.
    Raises ValueError when ``config`` quantizes nothing, the model is already converted, or it has no
    Conv2d or Linear layer.
    """
    config = config or QuantConfig()
    if not (config.weights or config.activations):
        raise ValueError("QuantConfig quantizes nothing: enable weights and/or activations")
    if any(isinstance(m, GradualQuantizer) for m in model.modules()):
        raise ValueError("model is already converted by bintut.binarize_")
    layers = [m for m in model.modules() if isinstance(m, QUANTIZED_LAYERS)]
    if not layers:
        raise ValueError("model has no Conv2d or Linear layer to binarize")
    for layer in layers:
        if config.weights:
            quantizer = SignQuantizer(layer.weight, config.scale, config.nested, config.scale_init)
            parametrize.register_parametrization(layer, "weight", quantizer)
        if config.activations:
            layer.input_quant = Int8Quantizer(config.momentum)
            layer.register_forward_pre_hook(_quantize_input)
    return model


def quantizers(model: nn.Module, target: Target = "all") -> Iterator[GradualQuantizer]:
    """The quantizers of a converted model, optionally only those of weights or activations.

    Raises ValueError for a ``target`` other than 'all', 'weights' or 'activations'."""
    if target not in ("all", "weights", "activations"):
        raise ValueError(f"target must be 'all', 'weights' or 'activations', got {target!r}")
    for m in model.modules():
        if isinstance(m, GradualQuantizer) and target in ("all", m.role):
            yield m


def set_controls(
    model: nn.Module, p: float | None = None, bin_ratio: float | None = None, target: Target = "all"
) -> None:
    """Set p and/or bin_ratio of every quantizer (or those of one target) in place.

    Raises ValueError when a control is outside [0, 1], ``target`` is unknown, or the model has no such
    quantizers (not converted with :func:`binarize_`)."""
    p = None if p is None else check_control("p", p)
    bin_ratio = None if bin_ratio is None else check_control("bin_ratio", bin_ratio)
    found = False
    for q in quantizers(model, target):
        q.set_controls(p, bin_ratio)
        found = True
    if not found:
        raise ValueError(f"model has no {target} quantizers: convert it with bintut.binarize_ first")


def get_controls(model: nn.Module) -> dict[str, float]:
    """Current controls per target, e.g. {'weights.p': 0.3, 'weights.bin_ratio': 0.3, ...}."""
    out: dict[str, float] = {}
    for q in quantizers(model):
        out.setdefault(f"{q.role}.p", q.p.item())
        out.setdefault(f"{q.role}.bin_ratio", q.bin_ratio.item())
    return out


@contextlib.contextmanager
def hard_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Temporarily the deployable network: p = bin_ratio = 1 everywhere and every module in eval mode.

    Eval mode whatever the model's mode: BatchNorm then uses its running statistics (what the export
    folds) and neither BatchNorm statistics nor the activations' running maxes move, so a look at the
    deployable network neither changes the model nor depends on the batch. On exit every control and
    every module's training flag is restored exactly as found.
    """
    controls = [(q, q.p.item(), q.bin_ratio.item()) for q in quantizers(model)]
    modes = [(m, m.training) for m in model.modules()]
    try:
        for q, _, _ in controls:
            q.set_controls(1.0, 1.0)
        model.eval()
        yield model
    finally:
        for q, p, r in controls:
            q.set_controls(p, r)
        for m, training in modes:
            m.training = training


def is_fully_binary(model: nn.Module) -> bool:
    """True when every quantizer of the model is at p = bin_ratio = 1."""
    qs = list(quantizers(model))
    return bool(qs) and all(q.p.item() == 1.0 and q.bin_ratio.item() == 1.0 for q in qs)


def weight_quantizer(layer: nn.Module) -> SignQuantizer | None:
    """The SignQuantizer that binarize_ registered on this layer's weight, if any."""
    weights = getattr(getattr(layer, "parametrizations", None), "weight", None)
    return weights[0] if weights is not None and isinstance(weights[0], SignQuantizer) else None


@torch.no_grad()
def distinct_weight_values(model: nn.Module) -> dict[str, int]:
    """Per weight-quantized layer: the most distinct values any output channel's weights take.

    2 everywhere means every weight is ±scale_c: the layer is binary.
    """
    out = {}
    for name, m in model.named_modules():
        if weight_quantizer(m) is not None:
            w = m.weight.flatten(1)
            out[name] = max(len(torch.unique(row)) for row in w)
    return out


def plain_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The state_dict the model had before :func:`binarize_`: full-precision weights (their original shapes),
    no quantizer state."""
    plain = {}
    for key, value in model.state_dict().items():
        if ".input_quant." in key or ".parametrizations.weight.0." in key:
            continue
        plain[key.replace(".parametrizations.weight.original", ".weight")] = value
    return plain

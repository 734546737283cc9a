"""Training configuration: one dataclass, four presets (``PRESETS``), every field overridable."""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Literal

from bintut.schedule import REFERENCE_BINARIZATION, REFERENCE_LR, Schedule, constant

# Each schedule and the range its values must stay in, over the whole run.
SCHEDULE_RANGES = {"lr": (0.0, math.inf), "weight_p": (0.0, 1.0), "weight_ratio": (0.0, 1.0),
                   "act_p": (0.0, 1.0), "act_ratio": (0.0, 1.0)}
SCHEDULE_FIELDS = tuple(SCHEDULE_RANGES)


# Integer fields and the values a run can use: a seed numpy and torch accept (and that the data order's
# seed arithmetic keeps below 2**64), sizes that fit in memory.
INT_RANGES = {"seed": (0, 2**32 - 1), "epochs": (1, 1_000_000), "batch_size": (1, 1 << 20),
              "eval_batch_size": (1, 1 << 20), "synthetic_train": (1, 1_000_000), "synthetic_test": (1, 1_000_000),
              "train_subset": (1, 10**9), "test_subset": (1, 10**9), "num_workers": (-1, 256)}
# Float fields that must be finite and >= 0 (False) or > 0 (True: Beta(alpha, alpha) needs alpha > 0).
FLOAT_FIELDS = {"weight_decay": False, "grad_clip": False, "mixup_alpha": True, "cutmix_alpha": True}


def _phases(default: list, help: str) -> Any:
    return field(default_factory=lambda: [list(p) for p in default], metadata={"help": help})


def _f(default: Any, help: str) -> Any:
    return field(default=default, metadata={"help": help})


def parse_scale_init(text: str) -> float | None:
    """'mean_abs' -> None (per channel mean|w_c|); 'constant:VALUE' -> VALUE (> 0, finite).

    Raises ValueError, quoting ``text``, when it is neither form or VALUE is not a finite number > 0.
    """
    if text == "mean_abs":
        return None
    kind, _, value = text.partition(":")
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if kind != "constant" or not math.isfinite(number) or number <= 0:
        raise ValueError(f"scale_init must be 'mean_abs' or 'constant:VALUE' with VALUE > 0, got {text!r}")
    return number


# The data sets a config may name, with their display names (bintut.data.choice: classes, normalisation).
DATA_NAMES = {"cifar100": "CIFAR-100", "synthetic": "synthetic data", "fashion-mnist": "Fashion-MNIST"}

INT8_MAX = 127  # symmetric int8 codes lie in [-127, 127]: the fake-quantizer's levels and the integer network's clamp


@dataclass(frozen=True)
class QuantConfig:
    """How :func:`bintut.quant.binarize_` converts a model: what to quantize, how the weight scale is
    found, and the momentum of the activations' running max|x| (taught in notebooks/04_int8_activations.ipynb)."""

    weights: bool = True
    activations: bool = True
    scale: Literal["learned", "analytic"] = "learned"
    nested: bool = False
    momentum: float = 0.1
    scale_init: str = "mean_abs"  # or "constant:0.01", the reference's


@dataclass
class TrainConfig:
    """Everything a run needs. Defaults are the reference recipe (docs/recipe.md, "`seed` and the reference, side by
    side"), the `seed` preset.

    Where bintut offers more than the reference, the reference's choice is the default and
    bintut's is an option: ``weights``, ``scale_init``, ``mix_draw``, ``amp``, ``data_path``.
    Constructing one validates it: raises ValueError naming the field (see :meth:`validate`).
    """

    preset: str = _f("seed", "the preset these values started from")
    # data
    data: str = _f("cifar100", "'cifar100' (the real data), 'fashion-mnist' (real 28x28 gray photos, 10 classes, "
                   "padded to 32x32 RGB; Debian: apt-get install dataset-fashion-mnist) or 'synthetic' "
                   "(generated offline)")
    data_root: str | None = _f(None, "folder holding cifar-100-python/ or FashionMNIST/raw/ (default: "
                               "$BINTUT_DATA or ./data)")
    download: bool = _f(False, "let bintut download the data set if it is missing")
    synthetic_train: int = _f(5000, "training images in the synthetic data set")
    synthetic_test: int = _f(1000, "test images in the synthetic data set")
    train_subset: int | None = _f(None, "train on a random subset of this many images")
    test_subset: int | None = _f(None, "evaluate on a random subset of this many images")
    augment: str = _f("reference", "training augmentation: 'reference', 'basic' (crop+flip) or 'none'")
    num_workers: int = _f(-1, "data-loader processes (-1: up to 8 on a GPU, none on a CPU)")
    data_path: str = _f("loader", "'loader' (DataLoader workers, per-image augmentation: the reference), 'device' "
                        "(data resident on the GPU, batched augmentation) or 'auto' (device on a GPU, loader on a CPU)")
    # model and quantization
    pretrained: bool = _f(True, "start from ImageNet-pretrained ResNet18 weights (see --weights)")
    weights: str = _f("timm", "which ImageNet weights: 'timm' (resnet18.a1_in1k, what the reference loads; needs "
                      "the timm extra) or 'torchvision' (IMAGENET1K_V1)")
    init_from: str | None = _f(None, "start from the model in this run folder's checkpoint (e.g. a baseline)")
    quant_weights: bool = _f(True, "binarize the weights of every Conv2d/Linear")
    quant_activations: bool = _f(True, "fake-quantize the inputs of every Conv2d/Linear to int8")
    scale: str = _f("learned", "binary weight scale: 'learned' (reference) or 'analytic' (mean|w|)")
    scale_init: str = _f("constant:0.01", "initial learned scale: 'constant:VALUE' (reference: 0.01) or 'mean_abs' "
                         "(mean|w_c| per channel)")
    nested: bool = _f(False, "nested sprinkling masks for weights (once binarized, stays binarized)")
    activation_momentum: float = _f(0.1, "momentum of the exponential moving average of each activation "
                                    "quantizer's max|x| (its int8 range), in (0, 1]")
    # optimisation
    epochs: int = _f(300, "training epochs")
    batch_size: int = _f(128, "training batch size")
    eval_batch_size: int = _f(512, "evaluation batch size")
    drop_last: bool = _f(False, "leave out each epoch's last, smaller training batch (the reference keeps it; a "
                         "compiled step then needs only one graph)")
    weight_decay: float = _f(1e-4, "AdamW weight decay")
    grad_clip: float = _f(1.0, "gradient-norm clip (0 disables)")
    label_smoothing: float = _f(0.1, "label smoothing of the one-hot targets of mixed batches")
    mix_prob: float = _f(0.5, "probability that a batch gets mixup or cutmix (50/50)")
    mix_draw: str = _f("reference", "'reference': one coin picks Beta(mixup_alpha) or Beta(cutmix_alpha), another "
                       "mixup or cutmix; 'independent': mixup always with mixup_alpha, cutmix with cutmix_alpha")
    mixup_alpha: float = _f(0.2, "mixup's Beta(alpha, alpha) (mix_draw 'reference': either op's, half the time)")
    cutmix_alpha: float = _f(0.5, "cutmix's Beta(alpha, alpha) (mix_draw 'reference': either op's, half the time)")
    lr: list = _phases(REFERENCE_LR, "learning-rate phases, JSON [[end_t, kind, start, end], ...], or one number "
                       "for a constant value (as every schedule)")
    weight_p: list = _phases(REFERENCE_BINARIZATION, "phases of the weights' sprinkling probability p")
    weight_ratio: list = _phases(REFERENCE_BINARIZATION, "phases of the weights' bin_ratio")
    act_p: list = _phases(REFERENCE_BINARIZATION, "phases of the activations' sprinkling probability p")
    act_ratio: list = _phases(REFERENCE_BINARIZATION, "phases of the activations' bin_ratio")
    # machinery
    seed: int = _f(0, "random seed (data order, augmentation, masks)")
    device: str = _f("auto", "'auto' (cuda if present), 'cuda' or 'cpu'")
    amp: str = _f("auto", "autocast: 'auto' (fp16 with a GradScaler on a GPU, as the reference; off on a CPU), "
                  "'bf16', 'fp16' or 'off'. Evaluation always runs in float32")
    channels_last: bool = _f(True, "channels_last memory format (faster convs)")
    compile: bool = _f(False, "torch.compile the model")
    out: str = _f("results", "output folder: metrics, checkpoint, figure")
    resume: bool = _f(False, "continue the run in --out from its checkpoint")
    progress: bool = _f(True, "show progress bars (the one line per epoch shows either way)")
    wandb: str = _f("offline", "Weights & Biases: 'offline' (no account), 'online' or 'disabled'")

    def __post_init__(self) -> None:
        for name in SCHEDULE_FIELDS:  # a bare number is a constant schedule
            value = getattr(self, name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                try:
                    setattr(self, name, constant(float(value)))
                except OverflowError:
                    raise ValueError(f"{name}: {value} is too large for a schedule value") from None
        self.validate()

    def validate(self) -> None:
        """Reject bad values with a message naming the field.

        Raises ValueError naming the field, its value and what is allowed when a choice is not one of its
        options, a count is below 1, a fraction leaves [0, 1], both quantizers are off, a schedule leaves its
        range at some t of the run, or ``out`` is empty.
        """
        choices = {
            "data": tuple(sorted(DATA_NAMES)),  # ("cifar100", "fashion-mnist", "synthetic")
            "augment": ("reference", "basic", "none"),
            "scale": ("learned", "analytic"),
            "device": ("auto", "cuda", "cpu"),
            "amp": ("auto", "bf16", "fp16", "off"),
            "wandb": ("offline", "online", "disabled"),
            "data_path": ("auto", "device", "loader"),
            "mix_draw": ("reference", "independent"),
            "weights": ("timm", "torchvision"),
        }
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        for name in ("epochs", "batch_size", "eval_batch_size", "synthetic_train", "synthetic_test"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        for name in ("train_subset", "test_subset"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"{name} must be at least 1 (or None for all), got {value}")
        if not 0.0 < self.activation_momentum <= 1.0:
            raise ValueError(f"activation_momentum must be in (0, 1], got {self.activation_momentum}")
        for name in ("mix_prob", "label_smoothing"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        self._check_magnitudes()
        parse_scale_init(self.scale_init)
        if not (self.quant_weights or self.quant_activations):
            raise ValueError("quant_weights and quant_activations are both off: nothing to binarize")
        for name, (low, high) in SCHEDULE_RANGES.items():
            self.schedule(name).check_range(low, high)  # the whole run, now: not when the bad value is reached
        if not str(self.out).strip():
            raise ValueError("out must name a folder, got an empty string")

    def _check_magnitudes(self) -> None:
        """Numbers within what the run can use: seeds and sizes the libraries accept, positive Beta parameters."""
        for name, (low, high) in INT_RANGES.items():
            value = getattr(self, name)
            if value is not None and not low <= value <= high:
                raise ValueError(f"{name} must be between {low} and {high:,}, got {value}")
        for name, positive in FLOAT_FIELDS.items():
            value = getattr(self, name)
            if not (math.isfinite(value) and (value > 0 if positive else value >= 0)):
                raise ValueError(f"{name} must be a finite number {'above' if positive else 'at least'} 0, "
                                 f"got {value}")

    def quant_config(self) -> QuantConfig:
        """The quantizer options of this run: the one place a TrainConfig becomes a QuantConfig."""
        return QuantConfig(weights=self.quant_weights, activations=self.quant_activations, scale=self.scale,
                           nested=self.nested, momentum=self.activation_momentum, scale_init=self.scale_init)

    def schedule(self, name: str) -> Schedule:
        return Schedule(getattr(self, name), name)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)


FAST_BINARIZATION = [
    [0.15, "stay", 0.0, 0.0], [0.3, "cosine", 0.0, 0.5], [0.9, "cosine", 0.5, 1.0], [1.0, "stay", 1.0, 1.0],
]
SMOKE_BINARIZATION = [[0.25, "stay", 0.0, 0.0], [0.7, "cosine", 0.0, 1.0], [1.0, "stay", 1.0, 1.0]]

# Measured on the smoke preset (2-core AMD EPYC, 2026-11-27): final hard accuracy 10 % with mean_abs,
# 0 % (chance: 1 %) with the reference's constant 0.01, which suits its 240 binarizing epochs.
SHORT_RUN = dict(scale_init="mean_abs")

PRESETS: dict[str, dict[str, Any]] = {
    # The published recipe: 300 epochs on CIFAR-100 from ImageNet weights.
    "seed": {},
    # A laptop CPU in about ten minutes: a subset of CIFAR-100, few epochs, crop+flip only. In runs this
    # short the learned scale cannot travel far from its start, so it starts at mean|w_c| (SHORT_RUN).
    "workshop": dict(
        train_subset=3000, test_subset=500, epochs=6, augment="basic", eval_batch_size=250, **SHORT_RUN,
    ),
    # A shorter recipe for one GPU, designed (not yet verified on CIFAR-100) to reach the reference's
    # final binary accuracy in a third of the epochs; rationale in docs/fast_training.md.
    "fast": dict(
        epochs=100, batch_size=512, eval_batch_size=2000, drop_last=True, data_path="device", compile=True,
        amp="bf16",
        lr=[[0.05, "linear", 1e-5, 2e-3], [1.0, "cosine", 2e-3, 1e-5]],
        weight_p=FAST_BINARIZATION, weight_ratio=FAST_BINARIZATION,
        act_p=FAST_BINARIZATION, act_ratio=FAST_BINARIZATION,
    ),
    # About two minutes on two quiet CPU cores (docs/benchmarks.md, "Measured here"), offline: synthetic data,
    # random init, no mixing.
    "smoke": dict(
        data="synthetic", synthetic_train=640, synthetic_test=100, pretrained=False, epochs=3,
        batch_size=32, eval_batch_size=100, augment="basic", mix_prob=0.0, num_workers=0,
        lr=[[0.1, "linear", 1e-4, 3e-3], [1.0, "cosine", 3e-3, 5e-4]],
        weight_p=SMOKE_BINARIZATION, weight_ratio=SMOKE_BINARIZATION,
        act_p=SMOKE_BINARIZATION, act_ratio=SMOKE_BINARIZATION, wandb="disabled", **SHORT_RUN,
    ),
}


def preset(name: str, **overrides: Any) -> TrainConfig:
    """The named preset with field overrides, e.g. ``preset('smoke', epochs=2)``.

    Raises ValueError listing the presets for an unknown ``name``, or the unknown field names for an override
    that is not a TrainConfig field.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    known = {f.name for f in dataclasses.fields(TrainConfig)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ValueError(f"unknown config field(s) {unknown}; see TrainConfig")
    values = {**PRESETS[name], **overrides, "preset": name}
    return TrainConfig(**values)

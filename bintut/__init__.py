"""bintut: gradual binarization of an ImageNet-pretrained ResNet18 on CIFAR-100, step by step."""

from .config import PRESETS, TrainConfig, preset
from .data import DataNotFoundError, load_cifar100, write_synthetic_cifar100
from .model import WeightsUnavailableError, resnet18_cifar
from .quant import (
    GradualQuantizer,
    Int8Quantizer,
    QuantConfig,
    SignQuantizer,
    binarize_,
    get_controls,
    hard_mode,
    is_fully_binary,
    quantizers,
    set_controls,
)
from .schedule import Schedule, plot_schedules

__version__ = "0.1.0"

__all__ = [
    "PRESETS", "TrainConfig", "preset", "DataNotFoundError", "load_cifar100", "write_synthetic_cifar100",
    "WeightsUnavailableError", "resnet18_cifar", "GradualQuantizer", "Int8Quantizer", "QuantConfig",
    "SignQuantizer", "binarize_", "get_controls", "hard_mode", "is_fully_binary", "quantizers", "set_controls",
    "Schedule", "plot_schedules",
]

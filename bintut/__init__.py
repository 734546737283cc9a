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

_SUBMODULES = {
    "anatomy", "checkpoint", "cli", "config", "data", "device_data", "distributed", "engine", "export", "fixedpoint",
    "intkernels", "model", "opcount", "plots", "quant", "runs", "schedule", "stages", "tracking", "train", "viz",
    "cexport",
}


def __getattr__(name: str):
    """``bintut.viz``, ``bintut.plots`` ...: submodules imported on first use (keeps ``import bintut`` light)."""
    if name in _SUBMODULES:
        import importlib

        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'bintut' has no attribute {name!r}")

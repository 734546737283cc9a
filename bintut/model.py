"""ResNet18 for 32x32 images, from an ImageNet-pretrained ResNet18.

The ImageNet stem (7x7 stride-2 conv + 3x3 stride-2 maxpool) shrinks a 32x32 CIFAR image to
8x8 before the first residual block; a 3x3 stride-1 conv and no maxpool keep it at 32x32.

The architecture is always torchvision's. Its ImageNet weights come from one of two sources:
``"torchvision"`` (``ResNet18_Weights.IMAGENET1K_V1``, through torchvision's weights API) or
``"timm"`` (``resnet18.a1_in1k``, the ResNet-Strikes-Back A1 weights that the reference gets from
``timm.create_model('resnet18', pretrained=True)``, through timm's API; timm's ResNet18 uses
torchvision's parameter names, so its state dict loads as it is).
"""

from __future__ import annotations

import os
import re
import socket
import urllib.parse

import torch
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights, resnet18

from bintut.errors import BintutError
from bintut.files.atomic import storage_error
from bintut.files.download import announce, describe, download, socket_seconds, socket_timeout, timeout


@torch.no_grad()
def record_io(model: nn.Module, names: list[str], images: torch.Tensor) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """One eval-mode forward of ``images``; returns copies of each named submodule's (first input, output).

    Copies: torchvision's in-place ReLU would otherwise overwrite a recorded BatchNorm output.
    """
    modules = dict(model.named_modules())
    seen: dict[str, tuple[torch.Tensor, torch.Tensor]] = {}
    hooks = [
        modules[name].register_forward_hook(
            lambda mod, args, out, name=name: seen.__setitem__(name, (args[0].detach().clone(), out.detach().clone()))
        )
        for name in names
    ]
    try:
        model.eval()(images)
    finally:
        for h in hooks:
            h.remove()
    return seen


WEIGHT_SOURCES = ("torchvision", "timm")

TIMM_NAME = "resnet18.a1_in1k"

TIMM_FILES = ("model.safetensors", "pytorch_model.bin")

TORCHVISION_BYTES = 46_830_571  # resnet18-f37072fd.pth


class WeightsUnavailableError(RuntimeError, BintutError):
    """The ImageNet weights are neither cached nor downloadable."""


def weights_path(weights: ResNet18_Weights = ResNet18_Weights.IMAGENET1K_V1) -> str:
    """Where torchvision's weights API caches the file (``$TORCH_HOME/hub/checkpoints``)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))


def imagenet_state_dict(progress: bool = True, source: str = "torchvision") -> dict[str, torch.Tensor]:
    """The ImageNet ResNet18 state dict from ``source`` ('torchvision' or 'timm'), or a clear error.

    Raises ValueError for another ``source``; WeightsUnavailableError when the weights are neither cached nor
    downloadable (the message names the file, its URL and how to copy it in or start without them), or when
    the cached file is truncated or foreign. A full disk is re-raised as it came.
    """
    if source not in WEIGHT_SOURCES:
        raise ValueError(f"weights source must be one of {WEIGHT_SOURCES}, got {source!r}")
    if source == "timm":
        return timm_state_dict()
    weights = ResNet18_Weights.IMAGENET1K_V1
    path = weights_path(weights)
    cached = os.path.isfile(path)
    seconds = timeout()
    try:
        if not cached:  # bintut's own download: a stall timeout on progress, its partial file always removed
            digits = re.search(r"-([a-f0-9]+)\.", os.path.basename(path))  # torch.hub's names carry a sha256 prefix
            download(weights.url, path, "torchvision's ImageNet ResNet18 weights (IMAGENET1K_V1)", TORCHVISION_BYTES,
                     progress=progress, sha256_prefix=digits[1] if digits else None)
        with socket_timeout(seconds):  # in case torch.hub still connects
            return weights.get_state_dict(progress=progress, check_hash=True)
    except Exception as err:  # noqa: BLE001 - network, hash and file errors all mean "not available"
        if cached:  # a file torch cannot read: truncated or foreign
            raise _corrupt_cache(path, err) from err
        if storage_error(err) is not None:
            raise
        raise WeightsUnavailableError(
            f"Could not load the ImageNet ResNet18 weights ({describe(err, seconds)}). torchvision looks for the "
            f"file {path} and downloads it from {weights.url} when it is "
            "missing. Without network access, copy resnet18-f37072fd.pth there from a machine "
            "that has it (or set TORCH_HOME to a folder holding hub/checkpoints/ with it), or "
            "start from random weights with pretrained=False (CLI: --no-pretrained)."
        ) from err


def _corrupt_cache(path: str, err: BaseException) -> WeightsUnavailableError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return WeightsUnavailableError(f"the cached ImageNet weights file {path} cannot be read ({reason}); it is "
                                   "truncated or corrupt: delete it, and the next run downloads it again")


def _timm_unavailable(reason: str, repo: str = f"timm/{TIMM_NAME}") -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"Could not load the timm ImageNet ResNet18 weights {TIMM_NAME} ({reason}). timm looks in the Hugging "
        f"Face cache (${{HF_HOME}}/hub, default ~/.cache/huggingface/hub) and downloads from "
        f"{_hub_endpoint()}/{repo} when the file is missing. Without network access, copy that cache folder "
        "from a machine that has it, or use torchvision's weights (--weights torchvision) or random weights "
        "(--no-pretrained)."
    )


def _hub_endpoint() -> str:
    """The Hugging Face endpoint huggingface_hub uses ($HF_ENDPOINT, default https://huggingface.co)."""
    from huggingface_hub import constants

    return constants.ENDPOINT


def _hub_reachable(endpoint: str) -> bool:
    """A name lookup, so that an offline machine fails at once instead of after the hub's retries."""
    host = urllib.parse.urlsplit(endpoint).hostname or endpoint
    try:
        socket.getaddrinfo(host, 443)
    except OSError:
        return False
    return True


def _timm_file(repo: str) -> str:
    """The weights file of ``repo``: from the Hugging Face cache, else downloaded with a timeout."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url

    for filename in TIMM_FILES:
        try:
            return hf_hub_download(repo, filename, local_files_only=True)
        except Exception:  # noqa: BLE001 - any miss in the cache: try the next name, then the network
            continue
    endpoint = _hub_endpoint()
    if not _hub_reachable(endpoint):
        raise _timm_unavailable(f"{endpoint} cannot be reached and the file is not cached", repo)
    seconds = timeout()
    url = hf_hub_url(repo, TIMM_FILES[0], endpoint=endpoint)
    try:
        size = get_hf_file_metadata(url, timeout=socket_seconds(seconds)).size
        announce(f"timm's ImageNet ResNet18 weights ({TIMM_NAME})", url, "the Hugging Face cache", size)
        with socket_timeout(seconds):
            return hf_hub_download(repo, TIMM_FILES[0], endpoint=endpoint, etag_timeout=socket_seconds(seconds))
    except Exception as err:  # noqa: BLE001 - the hub raises many kinds; all mean "not available"
        raise _timm_unavailable(describe(err, seconds), repo) from err


def timm_state_dict() -> dict[str, torch.Tensor]:
    """``resnet18.a1_in1k`` through timm's API: from the local cache if it is there, else downloaded; parameter
    name -> tensor in torchvision's ResNet18 layout (conv weights (out, in, k, k), fc (1000, 512)).

    Raises WeightsUnavailableError when timm is not installed (the message gives the pip command, or
    --weights torchvision), or when the cached file cannot be loaded."""
    try:
        import timm
    except ImportError as err:
        raise WeightsUnavailableError(
            f"--weights timm needs the timm package ({err}); install it with pip install 'bintut[timm]' "
            "(make does), or use torchvision's weights with --weights torchvision"
        ) from err
    repo = timm.models.get_pretrained_cfg(TIMM_NAME).hf_hub_id
    path = _timm_file(repo)
    try:
        model = timm.create_model(TIMM_NAME, pretrained=True, pretrained_cfg_overlay={"file": path})
    except Exception as err:  # noqa: BLE001 - a truncated or foreign file
        raise _corrupt_cache(path, err) from err
    return model.state_dict()


def cifar_stem(model: ResNet) -> ResNet:
    """Replace the ImageNet stem in place: 3x3 stride-1 conv (Kaiming init), no maxpool.
    Taught in notebooks/01_stem.ipynb."""
    model.conv1 = nn.Conv2d(3, 64, kernel_size=3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.conv1.weight, mode="fan_out", nonlinearity="relu")
    model.maxpool = nn.Identity()
    return model


def resnet18_cifar(
    num_classes: int = 100, pretrained: bool = True, progress: bool = True, weights: str = "torchvision"
) -> ResNet:
    """torchvision ResNet18 with the CIFAR stem and a ``num_classes`` head.

    With ``pretrained=True`` every layer but the stem conv and the head starts from ImageNet
    weights of ``weights`` ('torchvision' or 'timm', see the module docstring). The model maps
    normalised float images (N, 3, H, W) (32 x 32 in the tutorial) to (N, num_classes) float logits.

    Raises ValueError when ``num_classes`` < 1 or ``weights`` is neither source; with ``pretrained``, as
    :func:`imagenet_state_dict` does (WeightsUnavailableError when the weights cannot be had).
    """
    if num_classes < 1:
        raise ValueError(f"num_classes must be positive, got {num_classes}")
    if weights not in WEIGHT_SOURCES:
        raise ValueError(f"weights must be one of {WEIGHT_SOURCES}, got {weights!r}")
    model = resnet18()
    if pretrained:
        model.load_state_dict(imagenet_state_dict(progress, weights))
    cifar_stem(model)
    model.fc = nn.Linear(model.fc.in_features, num_classes)
    return model

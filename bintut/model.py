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

import hashlib
import os
import socket
import urllib.parse
from pathlib import Path

import torch
from torch import nn
from torchvision.models import ResNet, ResNet18_Weights, resnet18

from bintut.errors import BintutError
from bintut.files.atomic import replacing, storage_error
from bintut.files.download import describe, download, timeout


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

# the published files, pinned by their whole sha256 (the 8 hex digits in torch.hub's file names are only 32 bits)
TORCHVISION_BYTES = 46_830_571  # resnet18-f37072fd.pth
TORCHVISION_SHA256 = "f37072fd47e89c5e827621c5baffa7500819f7896bbacec160b1a16c560e07ec"
TIMM_REVISION = "491b427b45c94c7fb0e78b5474cc919aff584bbf"  # the commit of timm/resnet18.a1_in1k bintut downloads
TIMM_BYTES = 46_807_446  # its model.safetensors
TIMM_SHA256 = "80c49dee3da4822c009c5a7fe591e9223c5a2cfcf95a4067ca4dfb5a7b89c612"


class WeightsUnavailableError(RuntimeError, BintutError):
    """The ImageNet weights are neither cached nor downloadable."""


def weights_path(weights: ResNet18_Weights = ResNet18_Weights.IMAGENET1K_V1) -> str:
    """Where torchvision's weights API caches the file (``$TORCH_HOME/hub/checkpoints``)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(weights.url))


def file_sha256(path: str | os.PathLike) -> str:
    """The hex sha256 of a file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(1 << 20):
            digest.update(piece)
    return digest.hexdigest()


def checked_imagenet_state(state: object, origin: str) -> dict[str, torch.Tensor]:
    """``state`` if it is torchvision's ResNet18 state dict (the same names, shapes and float tensors), else
    WeightsUnavailableError naming ``origin`` and the first difference."""
    expected = resnet18().state_dict()
    if not isinstance(state, dict):
        raise WeightsUnavailableError(f"{origin} holds a {type(state).__name__}, not a ResNet18 state dict")
    optional = {key for key in expected if key.endswith("num_batches_tracked")}  # older files lack the counters
    for key in sorted((expected.keys() - optional - state.keys()) | (state.keys() - expected.keys()), key=str)[:1]:
        raise WeightsUnavailableError(f"{origin} is not ResNet18's weights ({str(key)[:100]!r} is "
                                      f"{'missing' if key in expected else 'not a ResNet18 parameter'})")
    for key, tensor in expected.items():
        got = state.get(key, tensor)
        if not isinstance(got, torch.Tensor) or got.shape != tensor.shape or (got.dtype != tensor.dtype
                                                                              and key not in optional):
            raise WeightsUnavailableError(f"{origin}: {key} is {getattr(got, 'dtype', type(got).__name__)} "
                                          f"{tuple(getattr(got, 'shape', ()))}, expected {tensor.dtype} "
                                          f"{tuple(tensor.shape)}")
    return state


def imagenet_state_dict(progress: bool = True, source: str = "torchvision") -> dict[str, torch.Tensor]:
    """The ImageNet ResNet18 state dict from ``source`` ('torchvision' or 'timm'), or a clear error.

    torchvision's file is downloaded by bintut (:func:`bintut.files.download.download`), checked against its
    published sha256 (:data:`TORCHVISION_SHA256`) whenever it is read, and unpickled with torch's safe loader
    (``weights_only=True``: tensors and plain containers; a planted pickle never runs).
    Raises ValueError for another ``source``; WeightsUnavailableError when the weights are neither cached nor
    downloadable (the message names the file, its URL and how to copy it in or start without them), or when
    the cached file is truncated, foreign or not the published one. A full disk is re-raised as it came.
    """
    if source not in WEIGHT_SOURCES:
        raise ValueError(f"weights source must be one of {WEIGHT_SOURCES}, got {source!r}")
    if source == "timm":
        return timm_state_dict(progress)
    weights = ResNet18_Weights.IMAGENET1K_V1
    path = weights_path(weights)
    cached = os.path.isfile(path)
    seconds = timeout()
    try:
        if not cached:  # bintut's own download: a stall timeout on progress, its partial file always removed
            download(weights.url, path, "torchvision's ImageNet ResNet18 weights (IMAGENET1K_V1)", TORCHVISION_BYTES,
                     progress=progress, sha256=TORCHVISION_SHA256)
    except Exception as err:  # noqa: BLE001 - network, hash and file errors all mean "not available"
        if storage_error(err) is not None:
            raise
        raise WeightsUnavailableError(
            f"Could not load the ImageNet ResNet18 weights ({describe(err, seconds)}). torchvision looks for the "
            f"file {path} and downloads it from {weights.url} when it is "
            "missing. Without network access, copy resnet18-f37072fd.pth there from a machine "
            "that has it (or set TORCH_HOME to a folder holding hub/checkpoints/ with it), or "
            "start from random weights with pretrained=False (CLI: --no-pretrained)."
        ) from err
    try:
        digest = file_sha256(path)
        if digest != TORCHVISION_SHA256:  # checked before unpickling: a planted file is never opened by torch
            raise ValueError(f"its sha256 {digest} is not the published {TORCHVISION_SHA256}")
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - a file torch cannot read: truncated or foreign
        raise _corrupt_cache(path, err) from err
    return checked_imagenet_state(state, path)


def _corrupt_cache(path: str, err: BaseException) -> WeightsUnavailableError:
    reason = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return WeightsUnavailableError(f"the cached ImageNet weights file {path} cannot be read ({reason[:300]}); it "
                                   "is truncated, corrupt or foreign: delete it, and the next run downloads it again")


def _timm_unavailable(reason: str, repo: str = f"timm/{TIMM_NAME}") -> WeightsUnavailableError:
    return WeightsUnavailableError(
        f"Could not load the timm ImageNet ResNet18 weights {TIMM_NAME} ({reason}). timm looks in the Hugging "
        f"Face cache (${{HF_HOME}}/hub, default ~/.cache/huggingface/hub) and bintut downloads the file from "
        f"{_hub_endpoint()}/{repo} when it is missing. Without network access, copy that cache folder "
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


def timm_cache_path(repo: str) -> Path:
    """Where bintut puts the pinned file of ``repo``: its snapshot in the Hugging Face cache layout
    (``$HF_HUB_CACHE/models--timm--resnet18.a1_in1k/snapshots/<TIMM_REVISION>/model.safetensors``)."""
    from huggingface_hub import constants

    return (Path(constants.HF_HUB_CACHE) / f"models--{repo.replace('/', '--')}" / "snapshots" / TIMM_REVISION
            / TIMM_FILES[0])


def _timm_file(repo: str, progress: bool = True) -> str:
    """The weights file of ``repo``: from the Hugging Face cache, else downloaded by bintut's downloader (its
    timeouts cover the whole transfer) at the pinned revision and checked against its whole sha256."""
    from huggingface_hub import hf_hub_download, hf_hub_url

    for filename in TIMM_FILES:
        try:
            return hf_hub_download(repo, filename, local_files_only=True)
        except Exception:  # noqa: BLE001 - any miss in the cache: try the next name, then the network
            continue
    path = timm_cache_path(repo)
    if path.is_file():
        return str(path)
    endpoint = _hub_endpoint()
    if not _hub_reachable(endpoint):
        raise _timm_unavailable(f"{endpoint} cannot be reached and the file is not cached", repo)
    url = hf_hub_url(repo, TIMM_FILES[0], revision=TIMM_REVISION, endpoint=endpoint)
    try:
        download(url, path, f"timm's ImageNet ResNet18 weights ({TIMM_NAME})", TIMM_BYTES, progress=progress,
                 sha256=TIMM_SHA256)
    except Exception as err:  # noqa: BLE001 - network and hash errors all mean "not available"
        if storage_error(err) is not None:
            raise
        raise _timm_unavailable(describe(err, timeout()), repo) from err
    refs = path.parents[2] / "refs" / "main"
    if not os.path.lexists(refs):  # so that huggingface_hub finds the snapshot too (never through a link)
        refs.parent.mkdir(parents=True, exist_ok=True)
        with replacing(refs) as tmp:
            tmp.write_text(TIMM_REVISION)
    return str(path)


def timm_state_dict(progress: bool = True) -> dict[str, torch.Tensor]:
    """``resnet18.a1_in1k`` through timm's API: from the local cache if it is there, else downloaded; parameter
    name -> tensor in torchvision's ResNet18 layout (conv weights (out, in, k, k), fc (1000, 512)).

    Raises WeightsUnavailableError when timm is not installed (the message gives the pip command, or
    --weights torchvision), when the file cannot be had, or when the cached file cannot be loaded."""
    try:
        import timm
    except ImportError as err:
        raise WeightsUnavailableError(
            f"--weights timm needs the timm package ({err}); install it with pip install 'bintut[timm]' "
            "(make does), or use torchvision's weights with --weights torchvision"
        ) from err
    repo = timm.models.get_pretrained_cfg(TIMM_NAME).hf_hub_id
    path = _timm_file(repo, progress)
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

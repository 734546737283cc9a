import time
import urllib.error

import pytest
import torch
from torch import nn

from bintut import model as model_mod
from bintut.model import WeightsUnavailableError, resnet18_cifar, weights_path


def test_cifar_stem_and_head():
    m = resnet18_cifar(num_classes=100, pretrained=False)
    assert (m.conv1.kernel_size, m.conv1.stride, m.conv1.padding) == ((3, 3), (1, 1), (1, 1))
    assert m.conv1.bias is None
    assert isinstance(m.maxpool, nn.Identity)
    assert m.fc.out_features == 100
    feats = {}
    for name in ("layer1", "layer4"):
        getattr(m, name).register_forward_hook(lambda mod, i, o, name=name: feats.update({name: o.shape}) and None)
    with torch.no_grad():
        out = m.eval()(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 100)
    assert feats == {"layer1": (2, 64, 32, 32), "layer4": (2, 512, 4, 4)}


def test_pretrained_loads_imagenet_weights_except_stem_and_head(monkeypatch):
    from torchvision.models import resnet18

    torch.manual_seed(0)
    fake = resnet18().state_dict()
    monkeypatch.setattr(model_mod, "imagenet_state_dict", lambda progress=True, source="torchvision": fake)
    m = resnet18_cifar(pretrained=True)
    assert torch.equal(m.layer3[0].conv1.weight, fake["layer3.0.conv1.weight"])
    assert torch.equal(m.bn1.running_var, fake["bn1.running_var"])
    assert m.conv1.weight.shape == (64, 3, 3, 3)


def test_offline_weights_give_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))

    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -2] Name or service not known")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    with pytest.raises(WeightsUnavailableError) as info:
        resnet18_cifar(pretrained=True)
    message = str(info.value)
    assert str(tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth") == weights_path()
    assert weights_path() in message and "pretrained=False" in message and "--no-pretrained" in message


def test_bad_num_classes():
    with pytest.raises(ValueError, match="num_classes must be positive"):
        resnet18_cifar(num_classes=0, pretrained=False)


class _Planted:
    """What a hostile pickle does on load: here only create a marker file (so the test can see it ran)."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return open, (self.marker, "w")


def _plant(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    marker = tmp_path / "the-pickle-ran"
    planted = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    planted.parent.mkdir(parents=True)
    torch.save({"conv1.weight": _Planted(marker)}, planted)
    return planted, marker


def test_a_planted_pickle_in_the_weights_cache_never_runs(tmp_path, monkeypatch):
    """Issue 24, kind 1: torch.hub's full unpickler ran a pickle planted as torchvision's weights at every
    start. The file is checked against its published sha256 before torch opens it ..."""
    planted, marker = _plant(tmp_path, monkeypatch)
    with pytest.raises(WeightsUnavailableError, match=f"{planted} cannot be read .*is not the published "
                                                      f"{model_mod.TORCHVISION_SHA256}.*delete it"):
        resnet18_cifar(weights="torchvision", progress=False)
    assert not marker.exists()


def test_a_planted_pickle_with_a_matching_hash_is_still_refused_by_the_safe_loader(tmp_path, monkeypatch):
    """... and, should the hash ever match, torch's weights_only loader refuses anything but tensors."""
    planted, marker = _plant(tmp_path, monkeypatch)
    monkeypatch.setattr(model_mod, "TORCHVISION_SHA256", model_mod.file_sha256(planted))
    with pytest.raises(WeightsUnavailableError, match=f"{planted} cannot be read"):
        resnet18_cifar(weights="torchvision", progress=False)
    assert not marker.exists()


def test_cached_weights_are_checked_for_resnet18s_structure(tmp_path, monkeypatch):
    from torchvision.models import resnet18

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    path = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    path.parent.mkdir(parents=True)
    torch.manual_seed(0)
    state = resnet18().state_dict()
    torch.save(state, path)
    monkeypatch.setattr(model_mod, "TORCHVISION_SHA256", model_mod.file_sha256(path))
    loaded = model_mod.imagenet_state_dict(progress=False)
    assert torch.equal(loaded["layer2.0.conv1.weight"], state["layer2.0.conv1.weight"])
    state["fc.weight"] = torch.zeros(10, 512)
    torch.save(state, path)
    monkeypatch.setattr(model_mod, "TORCHVISION_SHA256", model_mod.file_sha256(path))
    with pytest.raises(WeightsUnavailableError, match=r"fc\.weight is torch\.float32 \(10, 512\), expected "
                                                      r"torch\.float32 \(1000, 512\)"):
        model_mod.imagenet_state_dict(progress=False)


def test_timm_weights_are_downloaded_pinned_into_the_hugging_face_cache(tmp_path, monkeypatch):
    """timm's file comes through bintut's downloader (its timeouts, the whole sha256) into the cache's layout,
    where huggingface_hub finds it the next time."""
    timm = pytest.importorskip("timm", reason="the timm extra is not installed")
    from huggingface_hub import constants, hf_hub_download
    from safetensors.torch import save_file

    from ..files.test_download import serve_once

    torch.manual_seed(0)
    source = timm.create_model("resnet18", pretrained=False).state_dict()
    served = tmp_path / "served.safetensors"
    save_file(source, served)
    body = served.read_bytes()
    url, thread, listener = serve_once(body)
    monkeypatch.setattr(model_mod, "_hub_endpoint", lambda: url.rsplit("/", 1)[0])
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(model_mod, "TIMM_SHA256", model_mod.file_sha256(served))
    monkeypatch.setattr(model_mod, "TIMM_BYTES", len(body))
    monkeypatch.setenv("BINTUT_DOWNLOAD_TIMEOUT", "20")
    loaded = model_mod.timm_state_dict(progress=False)
    thread.join(5)
    listener.close()
    assert torch.equal(loaded["layer4.1.conv2.weight"], source["layer4.1.conv2.weight"])
    cached = model_mod.timm_cache_path(f"timm/{model_mod.TIMM_NAME}")
    assert cached.read_bytes() == body
    assert hf_hub_download(f"timm/{model_mod.TIMM_NAME}", "model.safetensors", local_files_only=True) == str(cached)


def test_imagenet_weights_from_a_stalled_server_time_out_clearly(stalled_server, tmp_path, monkeypatch, capsys):
    from torchvision.models import ResNet18_Weights

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setattr(ResNet18_Weights.IMAGENET1K_V1.value, "url", f"{stalled_server}/resnet18-f37072fd.pth")
    with pytest.raises(WeightsUnavailableError, match="did not answer within 1 s.*--no-pretrained"):
        resnet18_cifar(weights="torchvision", progress=False)
    assert "downloading torchvision's ImageNet ResNet18 weights (IMAGENET1K_V1) (44.7 MiB)" in capsys.readouterr().out


def test_timm_weights_from_a_stalled_server_time_out_clearly(stalled_server, tmp_path, monkeypatch):
    pytest.importorskip("timm", reason="the timm extra is not installed")
    from huggingface_hub import constants

    from bintut import model

    monkeypatch.setattr(model, "_hub_endpoint", lambda: stalled_server)  # as $HF_ENDPOINT would
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path))  # nothing cached
    started = time.monotonic()
    with pytest.raises(WeightsUnavailableError, match="did not answer within 1 s.*--weights torchvision"):
        resnet18_cifar(weights="timm")
    assert time.monotonic() - started < 30


def test_a_corrupt_cached_imagenet_weights_file_is_named_with_delete_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    cached = tmp_path / "hub" / "checkpoints" / "resnet18-f37072fd.pth"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"PK\x03\x04 half a download")
    with pytest.raises(WeightsUnavailableError, match=f"{cached} cannot be read .*: delete it"):
        resnet18_cifar(weights="torchvision", progress=False)


def test_a_corrupt_cached_timm_weights_file_is_named_with_delete_it(tmp_path, monkeypatch):
    pytest.importorskip("timm", reason="the timm extra is not installed")
    from bintut import model

    cached = tmp_path / "model.safetensors"
    cached.write_bytes(b"\x08\x00\x00\x00\x00\x00\x00\x00{trunc")
    monkeypatch.setattr(model, "_timm_file", lambda repo, progress=True: str(cached))  # what the HF cache holds
    with pytest.raises(WeightsUnavailableError, match=f"{cached} cannot be read .*: delete it"):
        resnet18_cifar(weights="timm")

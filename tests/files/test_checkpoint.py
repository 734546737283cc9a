"""bintut.files.checkpoint: a flipped bit anywhere that matters is found before a resume or an export uses the
file; a checkpoint from before the SHA-256 record still loads, checked by torch's CRC-32s and its structure;
NaN weights are refused naming the tensor (issue 24, kind 2)."""

from __future__ import annotations

import zipfile

import pytest
import torch

from bintut.files.checkpoint import DIGEST_RECORD, CheckpointError, load_checkpoint, save_checkpoint
from bintut.files.run_folder import CHECKPOINT


def state() -> dict:
    torch.manual_seed(0)
    return {"model": {"conv.weight": torch.randn(64, 3, 3, 3), "bn.num_batches_tracked": torch.tensor(7)},
            "optimizer": {"state": {0: {"momentum_buffer": torch.randn(64, 3, 3, 3)}}, "param_groups": [{"lr": 0.1}]},
            "epoch": 3, "config": {"lr": [[1.0, "cosine", 0.1, 0.0]]}, "last_row": {"epoch": 3, "loss": 1.25}}


def flip(path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_a_checkpoint_round_trips_and_carries_its_sha256(tmp_path):
    path = save_checkpoint(tmp_path / CHECKPOINT, state())
    loaded = load_checkpoint(path)
    assert torch.equal(loaded["model"]["conv.weight"], state()["model"]["conv.weight"])
    assert loaded["optimizer"]["state"][0]["momentum_buffer"].shape == (64, 3, 3, 3) and loaded["epoch"] == 3
    with zipfile.ZipFile(path) as archive:
        record = [n for n in archive.namelist() if n.endswith(DIGEST_RECORD)]
        assert len(record) == 1 and len(archive.read(record[0])) == 64
    assert torch.load(path, weights_only=True)["epoch"] == 3  # still torch's format: other tools read it
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT]  # no temporary or sidecar file


def _offset_of(path, tensor: torch.Tensor) -> int:
    """Where ``tensor``'s storage starts in the file (the bytes as stored, whatever the memory format)."""
    offset = path.read_bytes().find(bytes(tensor.untyped_storage().tolist()[:64]))
    assert offset > 0
    return offset


@pytest.mark.parametrize("where", ["weights", "momentum", "pickle", "digest"])
def test_a_flipped_bit_is_found_before_anything_is_loaded(tmp_path, where):
    """A bit flipped on disk resumed or exported silently: torch's loader checks no checksum."""
    path = save_checkpoint(tmp_path / CHECKPOINT, state())
    data = path.read_bytes()
    offset = {"weights": _offset_of(path, state()["model"]["conv.weight"]) + 1000,
              "momentum": _offset_of(path, state()["optimizer"]["state"][0]["momentum_buffer"]) + 7,
              "pickle": data.find(b"conv.weight"),
              "digest": data.rfind(_digest_text(path))}[where]
    flip(path, offset, 3)
    with pytest.raises(CheckpointError, match="(does not match its SHA-256|not a readable checkpoint).*restore it "
                                              "or delete it") as info:
        load_checkpoint(path)
    assert "\n" not in str(info.value)


def _digest_text(path) -> bytes:
    with zipfile.ZipFile(path) as archive:
        return archive.read(next(n for n in archive.namelist() if n.endswith(DIGEST_RECORD)))


def test_a_change_with_consistent_crcs_is_found_by_the_sha256(tmp_path):
    """A record rewritten with a valid CRC-32 (a copy tool, an edit through zipfile) still fails the SHA-256."""
    path = save_checkpoint(tmp_path / CHECKPOINT, state())
    edited = tmp_path / "edited.pt"
    with zipfile.ZipFile(path) as source, zipfile.ZipFile(edited, "w") as target:
        for info in source.infolist():
            data = source.read(info)
            if info.filename.endswith("/data/0"):
                data = bytes([data[0] ^ 1]) + data[1:]
            target.writestr(info, data)
    with pytest.raises(CheckpointError, match="does not match its SHA-256 .*restore it or delete it"):
        load_checkpoint(edited)


def test_a_checkpoint_without_the_record_still_loads_checked_by_crc_and_structure(tmp_path):
    old = tmp_path / "old.pt"
    torch.save(state(), old)  # as bintut wrote it before the record, or an edit saved with torch.save
    assert load_checkpoint(old)["epoch"] == 3
    flip(old, _offset_of(old, state()["model"]["conv.weight"]) + 400, 5)
    with pytest.raises(CheckpointError, match="not a readable checkpoint .*CRC"):
        load_checkpoint(old)
    torch.save({**state(), "model": [torch.ones(2)]}, old)
    with pytest.raises(CheckpointError, match="its model entry is a list, not a state dict"):
        load_checkpoint(old)
    torch.save({**state(), "model": {"conv.weight": 1.5}}, old)
    with pytest.raises(CheckpointError, match="maps 'conv.weight' to a float, not a tensor"):
        load_checkpoint(old)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_non_finite_weights_are_refused_naming_the_tensor(tmp_path, value):
    broken = state()
    broken["model"]["conv.weight"][5, 1, 2, 0] = value
    path = save_checkpoint(tmp_path / CHECKPOINT, broken)
    with pytest.raises(CheckpointError, match="its model tensor conv.weight holds NaN or infinite values"):
        load_checkpoint(path)



"""bintut.config: presets and their checks -- every bad value is refused naming the field, schedules are
checked over the whole run before anything is written."""

from __future__ import annotations

import json

import pytest

from bintut.cli import build_parser, main
from bintut.config import preset


@pytest.mark.parametrize(
    "field, phases, message",
    [
        ("weight_p", [[0.5, "linear", 0, 1], [1.0, "cosine", 1, 1.2]], "weight_p: reaches 1.2 at t = 1; it must stay "
         "within \\[0.0, 1.0\\]"),
        ("act_ratio", [[0.9, "stay", 0, 0], [1.0, "circle", 0, -0.1]], "act_ratio: reaches -0.1 at t = 1"),
        ("lr", [[0.5, "stay", 1e-3, 1e-3], [1.0, "linear", 1e-3, -1e-4]], "lr: reaches -0.0001 at t = 1; it must "
         "stay at least 0"),
        ("lr", -0.001, "lr: reaches -0.001 at t = 0"),
    ],
)
def test_schedules_are_checked_over_the_whole_run_before_any_folder_is_written(field, phases, message, tmp_path):
    with pytest.raises(ValueError, match=message):
        preset("smoke", **{field: phases})
    with pytest.raises(SystemExit) as info:
        main(["train", "--preset", "smoke", "--out", str(tmp_path / "run"), f"--{field.replace('_', '-')}",
              json.dumps(phases)])
    assert info.value.code == 2 and not (tmp_path / "run").exists()


def test_a_bare_number_is_a_constant_schedule():
    args = vars(build_parser().parse_args(["train", "--lr", "0.001", "--weight-p", "1"]))
    cfg = preset("smoke", lr=args["lr"], weight_p=args["weight_p"])
    assert cfg.lr == [[1.0, "stay", 0.001, 0.001]] and cfg.schedule("weight_p")(0.3) == 1.0


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(data="imagenet"), "data must be one of"),
        (dict(epochs=0), "epochs must be at least 1"),
        (dict(mix_prob=2.0), "mix_prob must be in"),
        (dict(quant_weights=False, quant_activations=False), "nothing to binarize"),
        (dict(weight_p=[[0.5, "linear", 0, 1]]), "weight_p: the last phase"),
        (dict(wandb="cloud"), "wandb must be one of"),
        (dict(colour="red"), "unknown config field"),
    ],
)
def test_bad_config(overrides, message):
    with pytest.raises(ValueError, match=message):
        preset("smoke", **overrides)


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset 'fast-ish'"):
        preset("fast-ish")


def test_fast_preset_is_valid():
    cfg = preset("fast")
    assert cfg.batch_size == 512 and cfg.data_path == "device" and cfg.compile
    assert cfg.schedule("weight_p")(0.15) == 0.0 and cfg.schedule("weight_p")(0.9) == 1.0

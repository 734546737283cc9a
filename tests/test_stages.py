import pytest

from bintut.stages import MODES, STAGES, resolve_mode, stage_config


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("stage", STAGES)
def test_every_stage_has_a_valid_config_without_training(stage, mode, tmp_path, monkeypatch):
    monkeypatch.setenv("BINTUT_RUNS", str(tmp_path))
    cfg = stage_config(stage, mode)
    assert cfg.schedule("weight_p")(1.0) == (1.0 if stage in ("weights", "both", "reference") else 0.0)
    assert cfg.schedule("act_p")(1.0) == (1.0 if stage in ("activations", "both", "reference") else 0.0)
    if stage in ("baseline", "reference"):
        assert cfg.init_from is None
    else:
        assert cfg.init_from.startswith(str(tmp_path)) and "baseline" in cfg.init_from
    assert list(tmp_path.iterdir()) == []  # nothing was trained
    assert cfg.data == ("synthetic" if mode == "smoke" else "cifar100")


def test_mode_switch(monkeypatch):
    monkeypatch.setenv("BINTUT_MODE", "smoke")
    assert resolve_mode(None) == "smoke" and resolve_mode("workshop") == "workshop"
    with pytest.raises(ValueError, match="mode must be one of"):
        resolve_mode("turbo")
    with pytest.raises(ValueError, match="stage must be one of"):
        stage_config("finetune", "smoke")

"""bintut.teaching.lesson: costs against fp-continued, the sampling error, the seed spread, and the verdicts."""

import math
from pathlib import Path

import pytest

from bintut.teaching.lesson import (
    anchors,
    cost,
    gradual_vs_abrupt,
    lesson_rows,
    reference_stage,
    result,
    sampling_error,
)
from bintut.teaching.record import Recording


def _rows(acc: float, deployed: float | None = None) -> list[dict]:
    last = {"epoch": 2, "hard_acc": acc, "soft_acc": acc, "train_loss": 0.3, "test_images": 2000}
    if deployed is not None:
        last["deployed_acc"] = deployed
    return [{**last, "epoch": 1, "soft_acc": acc - 0.1, "hard_acc": acc - 0.1}, last]


def _recording(finals: dict[str, dict[int, float]]) -> Recording:
    seeds = {stage: {seed: _rows(acc, acc) for seed, acc in per_seed.items()} for stage, per_seed in finals.items()}
    metrics = {stage: runs[min(runs)] for stage, runs in seeds.items()}
    configs = {stage: {"data": "fashion-mnist", "train_subset": 6000, "test_subset": 2000} for stage in seeds}
    return Recording(Path("."), metrics, configs, {"date": "2026-12-05"}, seeds)


def test_sampling_error_is_the_binomial_standard_error_in_points():
    assert sampling_error(90.0, 2000) == pytest.approx(100 * math.sqrt(0.9 * 0.1 / 2000))
    assert sampling_error(50.0, 100) == pytest.approx(5.0)
    assert sampling_error(100.0, 10) == 0.0
    for bad in ((50.0, 0), (101.0, 10), (-1.0, 10)):
        with pytest.raises(ValueError, match="sampling_error"):
            sampling_error(*bad)


def test_costs_are_against_fp_continued_with_the_seed_spread():
    rec = _recording({"baseline": {0: 0.88}, "fp-continued": {0: 0.90, 1: 0.91},
                      "both": {0: 0.86, 1: 0.88}, "abrupt": {0: 0.80, 1: 0.81}})
    assert reference_stage(rec) == "fp-continued"
    both = result(rec, "both")
    assert both.mean == pytest.approx(87.0) and both.half_range == pytest.approx(1.0)
    assert both.text() == "87.0 ± 1.0 (2 seeds)"
    c = cost(rec, "both")
    assert c.value == pytest.approx(90.5 - 87.0)
    expected = 2 * math.hypot(sampling_error(90.5, 2000), sampling_error(87.0, 2000)) + 0.5 + 1.0
    assert c.uncertainty == pytest.approx(expected)
    assert c.inside == (abs(c.value) <= expected)
    d = gradual_vs_abrupt(rec)
    assert d.value == pytest.approx(87.0 - 80.5) and not d.inside and "outside its uncertainty" in d.text()


def test_a_difference_inside_its_uncertainty_is_called_so():
    rec = _recording({"baseline": {0: 0.88}, "fp-continued": {0: 0.90}, "both": {0: 0.895, 1: 0.90},
                      "abrupt": {0: 0.898, 1: 0.90}})
    d = gradual_vs_abrupt(rec)
    assert d.inside and "inside its uncertainty: no measured difference" in d.text()


def test_without_fp_continued_the_baseline_stands_in_and_the_table_says_so():
    rec = _recording({"baseline": {0: 0.88}, "both": {0: 0.86}})
    assert reference_stage(rec) == "baseline"
    rows = lesson_rows(rec)
    assert [r["stage"] for r in rows] == ["baseline", "both"]
    assert "cost vs baseline" in rows[0] and rows[0]["cost vs baseline"] == "–"
    assert rows[1]["cost vs baseline"].startswith("+2.0 ±")
    with pytest.raises(KeyError, match="no 'abrupt' stage"):
        gradual_vs_abrupt(rec)


def test_lesson_rows_carry_deployed_accuracy_and_na_where_it_was_not_measured():
    rec = _recording({"baseline": {0: 0.88}, "fp-continued": {0: 0.90}, "both": {0: 0.86}})
    rec.seeds["both"][0][-1]["deployed_acc"] = None
    assert {r["stage"]: r for r in lesson_rows(rec)}["both"]["deployed %"] == "n/a"  # before it was measured
    rec.seeds["both"][0][-1]["deployed_acc"] = 0.86
    rows = {r["stage"]: r for r in lesson_rows(rec)}
    assert rows["baseline"]["deployed %"] == "–"  # not fully binary: its integer network is not what it trained
    assert rows["both"]["deployed %"] == "86.0 ± 0.0 (1 seed)"
    assert rows["both"]["sampling error"] == f"± {sampling_error(86.0, 2000):.1f}"


def test_anchors_name_their_sources():
    rows = anchors()
    assert {r["accuracy %"] for r in rows} >= {94.9, 76.7, 74.3}
    assert all(r["source"] for r in rows)


def test_cost_line_gives_a_learners_cost_with_its_sampling_error_and_caveats():
    from bintut.teaching.lesson import cost_line

    line = cost_line("x", {"soft_acc": 0.90, "test_images": 500}, {"soft_acc": 0.88, "test_images": 500})
    u = 2 * math.hypot(sampling_error(90.0, 500), sampling_error(88.0, 500))
    assert line.startswith(f"x cost +2.0 ± {u:.1f} points") and "not a measured difference" in line
    assert "trained longer" in line  # against the baseline
    other = cost_line("y", {"soft_acc": 0.95, "test_images": 2000}, {"soft_acc": 0.80, "test_images": 2000},
                      "activations")
    assert "outside the sampling error" in other and "trained longer" not in other

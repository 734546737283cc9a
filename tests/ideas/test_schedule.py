import math

import numpy as np
import pytest

from bintut.schedule import REFERENCE_BINARIZATION, REFERENCE_LR, SHAPES, Schedule


def test_reference_binarization_at_known_points():
    s = Schedule(REFERENCE_BINARIZATION)
    assert s(0.0) == 0.0 and s(0.2) == 0.0
    assert s(0.25) == pytest.approx(0.25, abs=1e-12)
    assert s(0.225) == pytest.approx(0.0732233, abs=1e-6)
    assert s(0.3) == pytest.approx(0.5)
    assert s(0.65) == pytest.approx(0.75)
    assert s(1.0) == 1.0


def test_reference_lr():
    s = Schedule(REFERENCE_LR)
    assert s(0.0) == pytest.approx(1e-5)
    assert s(0.025) == pytest.approx((1e-5 + 1e-3) / 2)
    assert s(0.05) == pytest.approx(1e-3)
    assert s(1.0) == pytest.approx(1e-5)


@pytest.mark.parametrize(
    "kind, u, expected",
    [("stay", 0.7, 2.0), ("linear", 0.25, 2.5), ("cosine", 0.5, 3.0), ("circle", 0.25, 2.0 + 2 * 0.75)],
)
def test_shapes(kind, u, expected):
    # circle: 1 - (1 - sqrt(0.25))^2 = 0.75
    assert Schedule([[1.0, kind, 2.0, 4.0]])(u) == pytest.approx(expected)


def test_clamps_progress_outside_unit_interval():
    s = Schedule([[1.0, "linear", 0.0, 1.0]])
    assert s(-1) == 0.0 and s(2) == 1.0
    with pytest.raises(ValueError, match="NaN"):
        s(math.nan)


@pytest.mark.parametrize(
    "phases, message",
    [
        ([], "non-empty"),
        ([[0.5, "linear", 0, 1], [0.4, "linear", 0, 1], [1.0, "stay", 1, 1]], "increase"),
        ([[0.5, "linear", 0, 1]], "last phase must end at t = 1.0"),
        ([[1.0, "wobble", 0, 1]], "unknown kind 'wobble'"),
        ([[1.0, "linear", 0]], "not \\[end_t, kind, start, end\\]"),
        ([[1.0, "linear", "a", 1]], "non-numeric"),
        ([[1.0, "linear", 0, float("inf")]], "non-finite"),
        ([[0.0, "linear", 0, 1], [1.0, "stay", 1, 1]], "increase"),
    ],
)
def test_bad_phase_lists(phases, message):
    with pytest.raises(ValueError, match=message):
        Schedule(phases, "weight_p")


def test_every_schedule_kind_is_monotone_so_its_ends_bound_it():
    u = np.linspace(0, 1, 1001)
    for kind, shape in SHAPES.items():
        values = np.array([shape(x) for x in u])
        assert np.all(np.diff(values) >= -1e-12), kind
        assert values.min() >= min(shape(0.0), shape(1.0)) and values.max() <= max(shape(0.0), shape(1.0))

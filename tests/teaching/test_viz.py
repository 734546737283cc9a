"""bintut.teaching.viz: the teaching figures draw what they are given."""


import pytest

from bintut.schedule import REFERENCE_BINARIZATION, REFERENCE_LR, Schedule
from bintut.teaching.viz.quant import plot_schedules


def test_plot_schedules_draws_each_schedule():
    fig = plot_schedules({"lr": REFERENCE_LR, "bin_ratio": Schedule(REFERENCE_BINARIZATION)}, epochs=300)
    ax = fig.axes[0]
    assert [line.get_label() for line in ax.get_lines()] == ["lr", "bin_ratio"]
    assert ax.get_lines()[1].get_xdata()[-1] == pytest.approx(300)

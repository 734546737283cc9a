"""The lesson, measured: what a recording says about gradual against abrupt binarization, with its uncertainty.

Every cost is measured against ``fp-continued`` -- the baseline trained on for the same epochs and learning
rates as the stage, every quantizer off -- so that a cost never mixes "binarized" with "trained longer". Where a
recording has no ``fp-continued`` stage (recordings before it existed) the baseline stands in, and the tables
say so.

Two sources of uncertainty, both in points of test accuracy (notebooks 03 and 04 teach them):

* sampling error of one accuracy ``a`` measured on ``n`` test images: ``se = sqrt(a (1 - a) / n)`` (the binomial
  standard error; about 0.7 points at 90 % on 2,000 images);
* seed spread: half the range of the final accuracies over a stage's seeds (0 with one seed).

A difference ``d`` between two stages is *inside its uncertainty* when ``|d| <= 2 sqrt(se_a^2 + se_b^2) + h_a
+ h_b`` (``h``: each stage's seed half-range): two standard errors of independent samples -- conservative here,
since both stages are scored on the same test images -- widened by what a change of seed alone moves.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any

from bintut.teaching.record import Recording
from bintut.teaching.stages import STAGE_TITLES

REFERENCE = "fp-continued"
BINARIZING = ("both", "abrupt", "p-only", "ratio-only", "weights", "activations")


def sampling_error(accuracy: float, n: int) -> float:
    """Binomial standard error, in points, of an accuracy given in percent on ``n`` test images.

    Raises ValueError when ``n`` < 1 or the accuracy is outside [0, 100].

    >>> round(sampling_error(90.0, 2000), 2)
    0.67
    """
    if n < 1 or not 0.0 <= accuracy <= 100.0:
        raise ValueError(f"sampling_error wants 0 <= accuracy <= 100 and n >= 1, got {accuracy}, {n}")
    a = accuracy / 100
    return 100 * math.sqrt(a * (1 - a) / n)


@dataclass(frozen=True)
class Result:
    """A stage's final accuracy (percent) over its seeds: the mean, each seed's value, the half-range and the
    sampling error of the mean value on ``n`` test images."""

    stage: str
    per_seed: dict[int, float]
    n: int

    @property
    def mean(self) -> float:
        return statistics.fmean(self.per_seed.values())

    @property
    def half_range(self) -> float:
        return (max(self.per_seed.values()) - min(self.per_seed.values())) / 2

    @property
    def sampling(self) -> float:
        return sampling_error(self.mean, self.n)

    def text(self) -> str:
        """``'88.4 ± 0.3 (2 seeds)'``: the mean and the seed half-range."""
        seeds = len(self.per_seed)
        return f"{self.mean:.1f} ± {self.half_range:.1f} ({seeds} seed{'s' if seeds > 1 else ''})"


def result(rec: Recording, stage: str, key: str = "soft_acc") -> Result:
    """The final ``key`` accuracy of ``stage`` over its seeds. Raises KeyError naming a stage the recording lacks,
    ValueError when a seed has no value of ``key`` (e.g. deployed accuracy before it was measured)."""
    if stage not in rec.seeds:
        raise KeyError(f"the recording has no {stage!r} stage (it has {', '.join(rec.seeds)})")
    finals = rec.finals(stage, key)
    if any(v is None for v in finals.values()):
        raise ValueError(f"{stage}: no {key} in some seed's last row")
    return Result(stage, finals, rec.test_images)


@dataclass(frozen=True)
class Difference:
    """``a - b`` in points with the uncertainty of the module's rule, and whether it lies inside it."""

    a: Result
    b: Result

    @property
    def value(self) -> float:
        return self.a.mean - self.b.mean

    @property
    def uncertainty(self) -> float:
        return 2 * math.hypot(self.a.sampling, self.b.sampling) + self.a.half_range + self.b.half_range

    @property
    def inside(self) -> bool:
        return abs(self.value) <= self.uncertainty

    def text(self) -> str:
        """``'+1.3 ± 1.9 points (inside its uncertainty)'``."""
        verdict = "inside its uncertainty: no measured difference" if self.inside else "outside its uncertainty"
        return f"{self.value:+.1f} ± {self.uncertainty:.1f} points ({verdict})"


def reference_stage(rec: Recording) -> str:
    """The stage costs are measured against: ``fp-continued`` where recorded, else ``baseline``."""
    return REFERENCE if REFERENCE in rec.seeds else "baseline"


def cost(rec: Recording, stage: str) -> Difference:
    """What a stage costs: the reference's final soft accuracy (full precision) minus the stage's final soft
    accuracy (the network it trained, at its final controls: fully binary for the binarizing stages).
    Raises KeyError when the recording lacks the stage."""
    return Difference(result(rec, reference_stage(rec)), result(rec, stage))


def cost_points(rec: Recording) -> dict[str, float]:
    """What each binarizing stage in the recording costs, in points rounded to 0.1: :func:`cost`'s value, the
    reference's final soft accuracy minus the stage's, each the mean over its seeds. The tutorial's one definition
    of "the cost of binarizing" (notebooks 03 and 04). Raises nothing for a recording without binarizing stages
    (an empty dict)."""
    return {stage: round(cost(rec, stage).value, 1) for stage in BINARIZING if stage in rec.seeds}


def gradual_vs_abrupt(rec: Recording, key: str = "soft_acc") -> Difference:
    """``both`` (gradual) minus ``abrupt`` (the control), final ``key`` accuracy. Raises KeyError when the
    recording lacks either stage."""
    return Difference(result(rec, "both", key), result(rec, "abrupt", key))


def lesson_rows(rec: Recording) -> list[dict[str, Any]]:
    """One row per recorded stage: final soft, hard and deployed accuracy (mean ± seed half-range), the
    sampling error, and the cost against the reference with its uncertainty."""
    ref = reference_stage(rec)
    rows = []
    for stage in ("baseline", REFERENCE, *BINARIZING):
        if stage not in rec.seeds:
            continue
        soft = result(rec, stage)
        try:  # the integer network of a stage that is not fully binary is not what it trained
            deployed = result(rec, stage, "deployed_acc").text() if stage in BINARIZING else "–"
        except ValueError:
            deployed = "n/a"
        rows.append({
            "stage": stage, "trains": STAGE_TITLES[stage], "epochs": rec.metrics[stage][-1]["epoch"],
            "soft %": soft.text(), "hard %": result(rec, stage, "hard_acc").text(), "deployed %": deployed,
            "sampling error": f"± {soft.sampling:.1f}",
            f"cost vs {ref}": "–" if stage in ("baseline", ref) else cost(rec, stage).text(),
        })
    return rows


ANCHORS = [
    {"what": "ResNet18 on the whole Fashion-MNIST (60,000 training images, augmentation)", "accuracy %": 94.9,
     "source": "Fashion-MNIST's benchmark table"},
    {"what": "a linear classifier on Fashion-MNIST", "accuracy %": "about 84", "source": "Fashion-MNIST's benchmark "
     "table"},
    {"what": "the reference, full precision at epoch 60 (CIFAR-100: other data)", "accuracy %": 76.7,
     "source": "github.com/SebastianFia/binary_resnet18"},
    {"what": "the reference, fully binary at epoch 300 (CIFAR-100: other data)", "accuracy %": 74.3,
     "source": "github.com/SebastianFia/binary_resnet18"},
]


def anchors() -> list[dict[str, Any]]:
    """Published accuracies to read a recording against (none of them measured by bintut)."""
    return [dict(a) for a in ANCHORS]


def cost_line(label: str, reference: dict[str, Any], stage: dict[str, Any], reference_name: str = "baseline") -> str:
    """One line for a learner's own runs: what ``label`` cost against ``reference_name``, with the sampling error
    of the two final soft accuracies (last metrics rows, ``test_images`` each) and the caveats of one seed.

    Raises KeyError when a row lacks ``soft_acc`` or ``test_images``."""
    a, b = 100 * reference["soft_acc"], 100 * stage["soft_acc"]
    n = min(int(reference["test_images"]), int(stage["test_images"]))
    d = Difference(Result(reference_name, {0: a}, n), Result(label, {0: b}, n))  # one seed: no spread
    u = d.uncertainty
    verdict = "inside the sampling error: not a measured difference" if d.inside else "outside the sampling error"
    longer = ("; the stage also trained longer than the baseline, which the recording's fp-continued stage takes "
              "out" if reference_name == "baseline" else "")
    return (f"{label} cost {a - b:+.1f} ± {u:.1f} points ({reference_name} {a:.1f} % soft, stage {b:.1f} % soft, "
            f"{n:,} test images, one seed: {verdict}{longer})")

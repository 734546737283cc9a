"""Schedules: plain functions of training progress t in [0, 1], built from phase lists.

A phase is ``[end_t, kind, start_value, end_value]``; phase i covers (end of phase i-1, end_t]
with local progress u in [0, 1]. Kinds (the reference's, docs/recipe.md): ``stay``
(start value), ``linear``, ``cosine`` ((1 - cos(pi u)) / 2) and ``circle`` (1 - (1 - sqrt(u))^2). A bare number is a
constant schedule. Every kind is monotone in u, so a phase's values lie between its values at
u = 0 and u = 1: checking those bounds a schedule over the whole run (:meth:`Schedule.check_range`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

SHAPES: dict[str, Callable[[float], float]] = {
    "stay": lambda u: 0.0,
    "linear": lambda u: u,
    "cosine": lambda u: (1.0 - math.cos(math.pi * u)) / 2.0,
    "circle": lambda u: 1.0 - (1.0 - math.sqrt(u)) ** 2,
}

PhaseList = Sequence[Sequence] | float


def constant(value: float) -> list[list]:
    """The phase list of a schedule that stays at ``value`` for the whole run."""
    return [[1.0, "stay", value, value]]


# The reference recipe (tests/training/test_reference_fidelity.py pins it against SebastianFia/binary_resnet18).
REFERENCE_LR: list[list] = [[0.05, "linear", 1e-5, 1e-3], [1.0, "cosine", 1e-3, 1e-5]]

REFERENCE_BINARIZATION: list[list] = [
    [0.2, "stay", 0.0, 0.0],
    [0.3, "cosine", 0.0, 0.5],
    [1.0, "cosine", 0.5, 1.0],
]


@dataclass(frozen=True)
class Phase:
    end: float
    kind: str
    start: float
    stop: float


class Schedule:
    """A validated phase list, callable as ``schedule(t)`` (t: progress through the run, clamped to [0, 1]).

    Raises ValueError, naming the schedule, for a malformed phase list, and when called with t = NaN.
    """

    def __init__(self, phases: PhaseList, name: str = "schedule") -> None:
        self.name = name
        self.phases = self._validate(phases, name)

    @staticmethod
    def _validate(phases: PhaseList, name: str) -> tuple[Phase, ...]:
        if isinstance(phases, (int, float)) and not isinstance(phases, bool):
            phases = constant(phases)
        if isinstance(phases, (str, bytes, bool, int, float)) or not phases:
            raise ValueError(f"{name}: expected a non-empty list of [end_t, kind, start, end] phases")
        out: list[Phase] = []
        previous = 0.0
        for i, phase in enumerate(phases):
            if isinstance(phase, (str, bytes)) or not isinstance(phase, Sequence) or len(phase) != 4:
                raise ValueError(f"{name}: phase {i} {phase!r} is not [end_t, kind, start, end]")
            end, kind, start, stop = phase
            if not isinstance(kind, str) or kind not in SHAPES:
                raise ValueError(f"{name}: phase {i} has unknown kind {kind!r}; known: {sorted(SHAPES)}")
            try:
                end, start, stop = float(end), float(start), float(stop)
            except (TypeError, ValueError, OverflowError):
                raise ValueError(f"{name}: phase {i} {list(phase)!r} has a non-numeric value") from None
            if not all(math.isfinite(v) for v in (end, start, stop)):
                raise ValueError(f"{name}: phase {i} {list(phase)!r} has a non-finite value")
            if not previous < end <= 1.0:
                raise ValueError(
                    f"{name}: phase end points must increase within (0, 1]; phase {i} ends at "
                    f"{end} after {previous}"
                )
            out.append(Phase(end, kind, start, stop))
            previous = end
        if out[-1].end != 1.0:
            raise ValueError(f"{name}: the last phase must end at t = 1.0, not {out[-1].end}")
        return tuple(out)

    def __call__(self, t: float) -> float:
        if math.isnan(t):
            raise ValueError(f"{self.name}: progress t is NaN")
        t = min(max(t, 0.0), 1.0)
        begin = 0.0
        for phase in self.phases:
            if t <= phase.end:
                u = (t - begin) / (phase.end - begin)
                return phase.start + (phase.stop - phase.start) * SHAPES[phase.kind](u)
            begin = phase.end
        raise AssertionError("unreachable: the last phase ends at 1.0")

    def extremes(self) -> list[tuple[float, float]]:
        """(t, value) at both ends of every phase: the schedule's smallest and largest values are among them."""
        points, begin = [], 0.0
        for phase in self.phases:
            for t, u in ((begin, 0.0), (phase.end, 1.0)):
                points.append((t, phase.start + (phase.stop - phase.start) * SHAPES[phase.kind](u)))
            begin = phase.end
        return points

    def check_range(self, low: float, high: float = math.inf) -> None:
        """Raise ValueError, naming the schedule, the value and the t, if it leaves [low, high] anywhere in
        the run (t: progress through the run, 0 to 1)."""
        for t, value in self.extremes():
            if not low <= value <= high:
                allowed = f"at least {low}" if high == math.inf else f"within [{low}, {high}]"
                raise ValueError(f"{self.name}: reaches {value:g} at t = {t:g}; it must stay {allowed} "
                                 "over the whole run")

    def as_list(self) -> list[list]:
        return [[p.end, p.kind, p.start, p.stop] for p in self.phases]

    def __repr__(self) -> str:
        return f"Schedule({self.as_list()!r}, name={self.name!r})"

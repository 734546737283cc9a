"""The notebooks' "Try it" checks: a reader's prediction against what the code computes.

A prediction left as ``...`` (how the notebooks ship) prints "not answered yet" instead of failing, so every
notebook still runs top to bottom (in CI too); a wrong one says what the code gives, without an error.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any


def _close(prediction: Any, actual: Any, tolerance: float) -> bool:
    if isinstance(prediction, (list, tuple)) and isinstance(actual, (list, tuple)):
        return len(prediction) == len(actual) and all(
            _close(p, a, tolerance) for p, a in zip(prediction, actual, strict=True))
    if isinstance(prediction, bool) or isinstance(actual, bool):
        return prediction == actual
    if isinstance(prediction, (int, float)) and isinstance(actual, (int, float)):
        return math.isclose(prediction, actual, rel_tol=0.0, abs_tol=tolerance)
    return prediction == actual


def check(prediction: Any, actual: Any, tolerance: float = 0.0) -> bool | None:
    """Compare a Try-it prediction with the computed value and print the verdict in one line.

    Numbers match within ``tolerance`` (absolute), lists and tuples entry by entry, anything else by ``==``.
    Returns None (and prints "not answered yet") while ``prediction`` is ``...``, else whether it matched.
    """
    if prediction is Ellipsis:
        print("not answered yet: replace the ... with your prediction and run the cell again")
        return None
    if _close(prediction, actual, tolerance):
        print(f"right: {actual!r}")
        return True
    print(f"not quite: you predicted {prediction!r}, the code gives {actual!r}")
    return False


def largest_accepted(accepts: Callable[[int], object], start: int = 1) -> int:
    """The largest integer ``n >= start`` that ``accepts(n)`` takes without raising a ValueError, when every
    smaller one is taken too (a doubling, then a bisection). Raises ValueError when ``start`` itself is refused.

    >>> def at_most_100(n):
    ...     if n > 100:
    ...         raise ValueError(n)
    >>> largest_accepted(at_most_100)
    100
    """
    accepts(start)  # a ValueError here: nothing is accepted
    low, high = start, start * 2
    while True:
        try:
            accepts(high)
        except ValueError:
            break
        low, high = high, high * 2
    while high - low > 1:  # low is accepted, high is not
        middle = (low + high) // 2
        try:
            accepts(middle)
            low = middle
        except ValueError:
            high = middle
    return low

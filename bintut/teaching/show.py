"""``bintut.show(obj)``: the library code behind an idea, shown where the notebook explains it.

Notebooks refer to objects (``show(bintut.quant.sign_ste)``), never to line numbers, so what they
show follows the code as it changes. The result renders as Markdown (syntax-highlighted by
JupyterLab, GitHub and the rendered book) with a "defined in bintut/quant.py:39" line, d2l style.
Only the standard library is imported here: ``import bintut`` stays fast.
"""

from __future__ import annotations

import inspect
import textwrap
from dataclasses import dataclass


@dataclass(frozen=True)
class Source:
    """The source of one or more library objects, displayable in a notebook."""

    parts: tuple[tuple[str, str, int, str], ...]  # (qualified name, file, first line, code)

    def _repr_markdown_(self) -> str:
        blocks = [f"**`{name}`** — defined in `{path}:{line}`\n\n```python\n{code}\n```" for name, path, line, code in
                  self.parts]
        return "\n\n".join(blocks)

    def __repr__(self) -> str:
        return "\n\n".join(f"# {name} -- defined in {path}:{line}\n{code}" for name, path, line, code in self.parts)


def source_of(obj: object) -> tuple[str, str, int, str]:
    """(qualified name, repository-relative file, first line, dedented code) of a function, method or class.

    Raises TypeError when ``obj`` is not bintut's own, or its source cannot be found."""
    target = inspect.unwrap(obj.fget if isinstance(obj, property) else obj)
    module = inspect.getmodule(target)
    if module is None or not module.__name__.startswith("bintut"):
        raise TypeError(f"show() displays bintut's own functions and classes, not {obj!r}")
    try:
        lines, first = inspect.getsourcelines(target)
    except (OSError, TypeError) as err:
        raise TypeError(f"show() cannot find the source of {obj!r} ({err})") from err
    path = module.__name__.replace(".", "/") + ".py"
    name = getattr(target, "__qualname__", getattr(target, "__name__", repr(target)))
    return name, path, first, textwrap.dedent("".join(lines)).rstrip()


def show(*objects: object) -> Source:
    """The source of bintut functions, methods or classes, with the file and line each is defined at.

    Raises TypeError when called with no object, or (as :func:`source_of`) with one that is not bintut's.

    >>> import bintut
    >>> bintut.show(bintut.quant.sign_ste)  # doctest: +SKIP
    """
    if not objects:
        raise TypeError("show() needs at least one function, method or class")
    return Source(tuple(source_of(obj) for obj in objects))

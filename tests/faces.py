"""What every layer's face is held to (tests/<layer>/test_face.py): each name of its ``__all__`` resolves to an
object of that layer, no public name hides a submodule of the same name, and importing the face loads only what
the test names."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parent.parent


def face_problems(face: ModuleType, every_module: bool = True) -> list[str]:
    """Names of ``face.__all__`` that do not resolve, that resolve outside the face's package, or that are also a
    submodule's name (importing that submodule would rebind the package attribute to the module); a ``_SUBMODULES``
    that is not the package's modules (unless ``every_module`` is False)."""
    problems = []
    package = face.__name__
    for name in face.__all__:
        try:
            value = getattr(face, name)
        except AttributeError as err:
            problems.append(f"{package}.{name} does not resolve: {err}")
            continue
        home = value.__name__ if isinstance(value, ModuleType) else getattr(value, "__module__", None)
        if home is not None and not (home == package or home.startswith(package + ".")):
            problems.append(f"{package}.{name} comes from {home}, outside the face's layer")
        if not isinstance(value, ModuleType) and importlib.util.find_spec(f"{package}.{name}") is not None:
            problems.append(f"{package}.{name} is both a public name and a submodule")
    missing = sorted(set(face.__all__) - set(dir(face)))
    problems += [f"{package}.{name} missing from dir()" for name in missing]
    modules = {m.name for m in pkgutil.iter_modules(face.__path__)}
    if every_module and getattr(face, "_SUBMODULES", modules) != modules:
        problems.append(f"{package}._SUBMODULES is not its modules: {sorted(face._SUBMODULES ^ modules)}")
    return problems


def loaded_after(statement: str, prefixes: tuple[str, ...]) -> list[str]:
    """The modules whose names start with one of ``prefixes`` that ``statement`` (an import) loads in a fresh
    interpreter, sorted."""
    code = (f"import sys; {statement}; "
            f"print(' '.join(sorted(m for m in sys.modules if m.startswith({prefixes!r}))))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()

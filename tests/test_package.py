import subprocess
import sys
from pathlib import Path

import bintut


def test_every_module_is_reachable_as_an_attribute():
    root = Path(bintut.__file__).parent
    modules = {p.stem for p in root.glob("*.py")} - {"__init__", "__main__", "commands"}  # commands: the CLI's
    layers = {p.parent.name for p in root.glob("*/__init__.py")}
    assert modules | layers == bintut._SUBMODULES
    assert bintut.integer.__name__ == "bintut.integer"


def test_unknown_attribute_is_an_attribute_error():
    try:
        bintut.nonexistent  # noqa: B018
    except AttributeError as err:
        assert "nonexistent" in str(err)
    else:
        raise AssertionError("expected AttributeError")


def test_import_bintut_is_light():
    code = "import sys, bintut; print('torch' in sys.modules, 'matplotlib' in sys.modules, bintut.show.__module__)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "False", "bintut.teaching.show"]
    assert bintut.TrainConfig.__module__ == "bintut.config"  # lazy names still resolve

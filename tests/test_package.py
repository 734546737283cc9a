from pathlib import Path

import bintut


def test_every_module_is_reachable_as_an_attribute():
    modules = {p.stem for p in Path(bintut.__file__).parent.glob("*.py")} - {"__init__", "__main__"}
    assert modules == bintut._SUBMODULES
    assert bintut.viz.__name__ == "bintut.viz"


def test_unknown_attribute_is_an_attribute_error():
    try:
        bintut.nonexistent  # noqa: B018
    except AttributeError as err:
        assert "nonexistent" in str(err)
    else:
        raise AssertionError("expected AttributeError")

"""bintut.show: the library source behind an idea, with where it is defined; and a light `import bintut`."""

import inspect

import pytest

import bintut


def test_show_gives_source_file_and_line_by_object():
    from bintut.quant import Int8Quantizer, sign_ste

    shown = bintut.show(sign_ste, Int8Quantizer.observe)
    text = shown._repr_markdown_()
    line = inspect.getsourcelines(sign_ste)[1]
    assert f"defined in `bintut/quant.py:{line}`" in text and "```python\ndef sign_ste(" in text
    assert "**`Int8Quantizer.observe`**" in text and "\ndef observe(self" in text  # dedented method
    assert "(hard - x).detach()" in repr(shown)


def test_show_refuses_what_it_cannot_show():
    with pytest.raises(TypeError, match="bintut's own"):
        bintut.show(len)
    with pytest.raises(TypeError, match="at least one"):
        bintut.show()



"""bintut.integer.c_build: the golden build never reuses an object compiled with another compiler, other flags or
other sources (issue 24, kind 2: CC="gcc -fsanitize=..." sanitized nothing and printed PASS). The library is a
tiny numpy-made network (tests/test_format.py), compiled in a second or two."""

from __future__ import annotations

import os
import shutil
import stat

import numpy as np
import pytest

from bintut.integer import c_build, c_source
from bintut.integer.c_library import check_c_folder, write_c_library

from .test_format import tiny_export


@pytest.fixture
def library(tmp_path, monkeypatch):
    monkeypatch.delenv("CC", raising=False)
    try:
        c_build.host_compiler()
    except c_build.CompilerNotFound as err:
        pytest.skip(f"{err}: the golden build needs one")
    images = np.random.default_rng(1).normal(size=(2, 3, 8, 8)).astype(np.float32)
    write_c_library(tiny_export(), tmp_path / "lib", images, kernel="reference")
    return tmp_path / "lib"


def objects(folder):
    return sorted(p.name for p in folder.glob("bintut*.o"))


def test_changing_cc_compiles_the_library_again(library, tmp_path, monkeypatch):
    run = c_build.run_host_golden(library)
    assert run.passed, run.output
    first = objects(library)
    assert len(first) == 1 and first[0].startswith("bintut_") and c_build.run_host_golden(library).passed
    assert objects(library) == first  # same compiler, flags and sources: reused

    log = tmp_path / "cc.log"  # a compiler that says what it was asked to compile
    wrapper = tmp_path / "logging-cc"
    wrapper.write_text(f'#!/bin/sh\necho "$@" >> {log}\nexec {c_build.host_compiler()[0]} "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("CC", f"{wrapper} -DBINTUT_PROBE=1")
    run = c_build.run_host_golden(library)
    assert run.passed, run.output
    assert "-DBINTUT_PROBE=1" in log.read_text() and " -c bintut.c " in log.read_text()  # the library itself
    second = objects(library)
    assert len(second) == 1 and second != first  # the earlier key's object is gone
    assert check_c_folder(library) == library  # build products are bintut's: an export may replace the folder


def test_changed_sources_compile_again_even_with_an_older_time(library):
    assert c_build.run_host_golden(library).passed
    first = objects(library)
    header = library / "bintut_model.h"
    status = header.stat()
    text = header.read_text()
    header.write_text(text.replace("/* conv1:", "/* the stem conv1:", 1))
    os.utime(header, ns=(status.st_atime_ns, status.st_mtime_ns - 10**10))  # older than the object
    assert c_build.run_host_golden(library).passed
    assert objects(library) != first


def test_a_failed_compile_leaves_no_object(library, monkeypatch):
    false = shutil.which("false")
    if false is None:
        pytest.skip("no `false` program")
    monkeypatch.setenv("CC", false)
    with pytest.raises(RuntimeError, match="compiling failed"):
        c_build.build_host(library)
    assert objects(library) == [] and not [p for p in library.iterdir() if ".tmp" in p.name]


def test_cexport_host_checks_its_arguments(c_export, tmp_path, monkeypatch, capsys):
    """2e: a missing bintut.c was a traceback, --limit -5 printed 'FAIL: None', --limit 0 ran every image,
    a $CC with flags or naming a missing compiler was silently replaced by cc."""
    folder = tmp_path / "lib"
    shutil.copytree(c_export[2], folder)
    (folder / "bintut.c").unlink()
    assert c_build.main(["host", str(folder)]) == 2
    assert f"bintut: error: {folder} lacks bintut.c of an exported C library" in capsys.readouterr().err
    for limit in ("-5", "0"):
        with pytest.raises(SystemExit):
            c_build.main(["host", str(folder), "--limit", limit])
        assert "--limit must be at least 1" in capsys.readouterr().err
    shutil.copyfile(c_source.c_sources() / "bintut.c", folder / "bintut.c")
    monkeypatch.setenv("CC", "no-such-cc-1234 -O2")
    assert c_build.main(["host", str(folder)]) == 2
    assert "$CC names 'no-such-cc-1234', which is not installed" in capsys.readouterr().err
    if shutil.which("cc"):
        monkeypatch.setenv("CC", "cc -O0 -DX='a b'")
        assert c_build.host_compiler() == [shutil.which("cc"), "-O0", "-DX=a b"]

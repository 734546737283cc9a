"""bintut.integer.c_build: the golden build never reuses an object compiled with another compiler, other flags or
other sources (issue 24, kind 2: CC="gcc -fsanitize=..." sanitized nothing and printed PASS). The library is a
tiny numpy-made network (tests/test_format.py), compiled in a second or two."""

from __future__ import annotations

import os
import shutil
import stat

import numpy as np
import pytest

from bintut.integer import c_build
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

"""The C99 export: compiled with the host's cc, and under QEMU on a Cortex-M4, it must reproduce the numpy
integer-only engine's int32 logits bit for bit."""

import random
import re

import numpy as np
import pytest

from bintut.integer import c_build, c_source
from bintut.integer.c_library import write_c_library
from bintut.integer.fold import export_resnet
from bintut.integer.format import load_export

from .conftest import calibrated_binary_model


def _compiler_or_skip() -> None:
    try:
        c_build.host_compiler()
    except c_build.CompilerNotFound as err:
        pytest.skip(f"{err}: the C golden test needs one")


@pytest.fixture(scope="module")
def c_library(tmp_path_factory):
    """A calibrated random model's export (.npz) and its C library with 3 golden images (seeded random, normalised):
    what `export --c` writes, made without training (tests/entry/test_commands.py exports a trained run)."""
    folder = tmp_path_factory.mktemp("c")
    export = export_resnet(calibrated_binary_model())
    export.save(folder / "model.npz")
    images = np.random.default_rng(3).standard_normal((3, 3, 32, 32)).astype(np.float32)
    write_c_library(load_export(folder / "model.npz"), folder / "lib", images)
    return folder


def test_c_sources_are_integer_only_and_static():
    for name in ("bintut.c", "bintut_fast.c", "bintut_amx.c"):
        code = re.sub(r"/\*.*?\*/", "", (c_source.c_sources() / name).read_text(), flags=re.S)
        for word in ("float", "double", "malloc", "calloc", "free", "printf"):
            assert not re.search(rf"\b{word}\b", code), (name, word)
    assert "plus + plus - total" in c_build.inner_loop()  # the reference's add/sub form
    assert "__usada8" in c_build.inner_loop(kernel="fast")  # the fast kernel's |x - mask| sums


def test_host_c_build_is_bit_exact_and_reports_the_first_mismatch(c_library):
    _compiler_or_skip()
    lib = c_library / "lib"
    run = c_build.run_host_golden(lib)
    assert run.passed, run.output
    assert [r["image"] for r in run.images] == [0, 1, 2] and run.unit == "us"
    assert run.warnings == "", run.warnings  # -std=c99 -Wall -Wextra -pedantic: clean
    # tamper with one expected logit: the C main must exit non-zero, naming the first differing logit
    golden = lib / "golden.h"
    text = golden.read_text()
    head, rest = text.split("bintut_golden_logits[3][100] = {\n  {\n    ")
    value, tail = rest.split(",", 1)
    golden.write_text(f"{head}bintut_golden_logits[3][100] = {{\n  {{\n    {int(value) + 1},{tail}")
    try:
        bad = c_build.run_host_golden(lib)
    finally:
        golden.write_text(text)
    assert bad.returncode == 1 and not bad.passed
    assert bad.failure == f"image 0: FAIL first differing logit [0]: got {value}, expected {int(value) + 1}"


def test_fast_kernel_equals_the_reference_layer_by_layer(c_library):
    """layer_check.c: every conv's int32 accumulators, fast vs reference kernel, on seeded random inputs
    (uniform, sparse and saturated codes), the stem's codes, and one random image end to end; on this
    machine's best path (AVX-512 VNNI where the CPU has it) and on the portable C path."""
    _compiler_or_skip()
    seed = random.randrange(1, 2**31)
    for simd in (True, False):
        check = c_build.run_layer_check(c_library / "lib", seed=seed, simd=simd)
        assert check.passed, f"seed {seed}, simd {simd}:\n{check.output}"
        assert check.warnings == "", check.warnings
        assert len(re.findall(r"accumulators equal", check.output)) == 19
        assert "random image 0: 100 logits equal" in check.output
        assert "batch of 3 random images: 300 logits equal" in check.output  # bintut_infer_batch
        if not simd:
            assert check.path == "portable C"


def test_amx_path_equals_the_reference_layer_by_layer(c_library):
    """On an x86-64 whose CPU and OS offer AMX-INT8 (cpuid, then Linux's tile permission), layer_check.c
    runs the AMX tiles by default, and -DBINTUT_NO_AMX keeps the AVX-512 VNNI path: both bit-exact."""
    _compiler_or_skip()
    seed = random.randrange(1, 2**31)
    best = c_build.run_layer_check(c_library / "lib", seed=seed, images=0)
    assert best.passed, f"seed {seed}:\n{best.output}"
    if best.path != "x86-64 AMX-INT8":
        pytest.skip(f"no AMX-INT8 here (CPU or OS): the best fast path on this machine is {best.path}")
    assert len(re.findall(r"accumulators equal", best.output)) == 19
    vnni = c_build.run_layer_check(c_library / "lib", seed=seed, amx=False)
    assert vnni.passed and vnni.path == "x86-64 AVX-512 VNNI", f"seed {seed}:\n{vnni.output}"
    assert "batch of 3 random images: 300 logits equal" in vnni.output


def test_host_golden_with_each_kernel(c_library):
    """The golden logits, one image at a time and through bintut_infer_batch, with the fast kernel's best path
    (AMX-INT8 where the CPU and OS offer it), its AVX-512 VNNI and portable paths and the reference kernel."""
    _compiler_or_skip()
    lib = c_library / "lib"
    assert "#define BINTUT_FAST 1" in (lib / "bintut.h").read_text()  # the default
    for kernel, simd, amx in (("fast", True, True), ("fast", True, False), ("fast", False, True),
                              ("reference", True, True)):
        run = c_build.run_host_golden(lib, kernel=kernel, simd=simd, amx=amx)
        assert run.passed and len(run.images) == 3, (kernel, simd, amx, run.output)
        assert run.batch is not None and run.batch["images"] == 3, run.output  # bintut_infer_batch, bit-exact too
        assert run.warnings == "", run.warnings


def test_mcu_golden_under_qemu(c_library):
    missing = c_build.missing_mcu_tools()
    if missing:
        pytest.skip(f"{', '.join(missing)} not installed: `make mcu` installs them with apt-get (CI does not)")
    lib = c_library / "lib"
    reference = c_build.run_mcu_golden(lib, limit=1, kernel="reference")
    assert reference.passed, reference.output
    assert reference.unit == "instructions" and reference.images[0]["counter"] > 555_000_000  # >= 1 per add/sub
    run = c_build.run_mcu_golden(lib, limit=1)  # the default: the fast kernel (USADA8)
    assert run.passed, run.output
    assert run.images[0]["counter"] * 4 < reference.images[0]["counter"]
    size = c_build.mcu_size(lib / "golden.elf")
    assert 1_400_000 < size["flash"] < 1_600_000 and 131_072 < size["ram"] < 200_000, size


def _golden_array(text: str, name: str) -> list[int]:
    body = re.search(rf"{name}\[\d+\]\[\d+\] = \{{(.*?)\n\}};", text, re.S).group(1)
    return [int(v) for v in re.findall(r"-?\d+", body)]


def test_torch_integer_network_computes_the_c_librarys_logits(c_library):
    """torch = C, bit for bit: the logits the host-compiled C library reproduces for the golden images
    are exactly what bintut.integer.torch_engine computes for the same int8 codes."""
    import numpy as np
    import torch

    from bintut.integer.torch_engine import TorchIntegerResNet

    _compiler_or_skip()
    lib = c_library / "lib"
    assert c_build.run_host_golden(lib).passed
    text = (lib / "golden.h").read_text()
    export = load_export(c_library / "model.npz")
    size = export.image_size
    codes = np.array(_golden_array(text, "bintut_golden_images"), dtype=np.int8).reshape(-1, size, size, 3)
    logits = TorchIntegerResNet(export).integer_logits(torch.from_numpy(codes).permute(0, 3, 1, 2).contiguous())
    assert logits.reshape(-1).tolist() == _golden_array(text, "bintut_golden_logits")

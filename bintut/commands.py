"""What the command line runs: training, export and reproduce, each with one-line errors and exit codes
for scripts (0 done, 2 a clear error, 128 + N stopped by signal N). :mod:`bintut.cli` parses the
arguments and imports this module only when a command runs.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path

import torch

from bintut.config import TrainConfig
from bintut.data.choice import golden_images, test_images
from bintut.data.cifar100 import cifar100_found
from bintut.data.fashion_mnist import fashion_mnist_found
from bintut.data.images import DataNotFoundError, data_root
from bintut.errors import BintutError, run_command
from bintut.files.atomic import StorageFullError
from bintut.files.run_folder import EXPORT, check_name_lengths
from bintut.integer.c_library import check_c_folder, write_c_library
from bintut.integer.format import ExportError, ResNetExport
from bintut.integer.onnx_compare import onnx_agreement, onnx_session
from bintut.integer.onnx_export import OPSET, OnnxExportError, require, save_onnx
from bintut.integer.opcount import layer_costs, summary_table
from bintut.model import WeightsUnavailableError
from bintut.teaching.stages import FASHION_WORKSHOP
from bintut.training.devices import process_group
from bintut.training.export import export_run
from bintut.training.loop import train


def reproduce_settings() -> dict:
    """``python -m bintut reproduce``: preset 'seed' on a GPU, 'workshop' on a CPU, into results/<preset>, on
    CIFAR-100 where it is found or can be downloaded. Without CIFAR-100 in the data root but with Fashion-MNIST
    here (the data root, or Debian's package dataset-fashion-mnist), the workshop recipe on Fashion-MNIST
    (:data:`bintut.teaching.stages.FASHION_WORKSHOP`: random initial weights, a subset) into
    results/workshop-fashion-mnist. Says in one line which data and why."""
    name = "seed" if torch.cuda.is_available() else "workshop"
    print(f"bintut: {'a GPU is' if name == 'seed' else 'no GPU is'} visible: running preset {name!r}")
    if not cifar100_found() and fashion_mnist_found():
        print(f"bintut: no CIFAR-100 in {data_root(None)}, but Fashion-MNIST is here: running the workshop recipe on "
              "Fashion-MNIST (real photos, random initial weights: ImageNet weights need a download)")
        return {"preset": "workshop", "out": "results/workshop-fashion-mnist", "resume": True, **FASHION_WORKSHOP}
    print("bintut: data: CIFAR-100 (downloaded into the data root if it is missing)")
    return {"preset": name, "out": f"results/{name}", "download": True, "resume": True}


def run_training(cfg: TrainConfig, hint: str | None = None) -> int:
    """Train under the command line's error policy (:func:`bintut.errors.run_command`): known failures as one
    clear line, exit codes for scripts.

    0 done (also for a run that had finished before: nothing is trained then); 2 a clear error (bad input,
    data or weights unavailable, divergence, a busy or unusable run folder, a full disk); 128 + N stopped by
    signal N (130 Ctrl-C, 143 SIGTERM). ``hint`` follows a missing-data or missing-weights error (reproduce's
    way forward offline).
    """
    def body() -> int:
        with process_group():
            summary = train(cfg)
        if "hard_acc" in summary:
            deployed = summary.get("deployed_acc")
            what = "nothing to do" if summary.get("already_finished") else "done"
            print(f"bintut: {what}. final hard accuracy {100 * summary['hard_acc']:.2f}%, soft "
                  f"{100 * summary['soft_acc']:.2f}%, deployed (integer-only) "
                  f"{'n/a' if deployed is None else f'{100 * deployed:.2f}%'}; results in {summary['out']}")
        return 0

    def offline(err: BaseException) -> str | None:
        return hint if hint and isinstance(err, (DataNotFoundError, WeightsUnavailableError)) else None

    def stopped(signum: int) -> str | None:  # the training loop says what it kept after a Ctrl-C
        return f"bintut: stopped by signal {signum}" if signum != signal.SIGINT else None

    return run_command(body, stopped=stopped, hint=offline, writing=cfg.out)


def run_export(run: str, out: str | None, c_dir: str | None = None, golden: int = 8, force: bool = False,
               c_kernel: str = "fast", onnx: str | None = None, onnx_weights: str = "int8",
               onnx_residual: str = "float") -> int:
    """Export a run (:func:`bintut.training.export.export_run`): the .npz (always), with ``c_dir`` the C
    library, with ``onnx`` an ONNX model checked in onnxruntime (:func:`export_onnx`); one-line errors, exit 2
    (:func:`bintut.errors.run_command`).

    Ctrl-C or SIGTERM stops it quietly (exit 130 or 143): each file and the C folder is replaced whole
    or not at all, so what was there before stays.
    """
    return run_command(
        lambda: _export(run, out, c_dir, golden, force, c_kernel, onnx, onnx_weights, onnx_residual),
        stopped=lambda signum: f"\nbintut: export stopped (signal {signum}); files not yet replaced are as they were",
        writing=out or str(Path(run) / EXPORT))


class CommandError(BintutError):
    """A command cannot do what was asked; the message says why and what to do instead (one line, exit 2)."""


def _export(run: str, out: str | None, c_dir: str | None, golden: int, force: bool, c_kernel: str,
            onnx: str | None = None, onnx_weights: str = "int8", onnx_residual: str = "float") -> int:
    path = Path(out) if out else Path(run) / EXPORT
    check_name_lengths(path, "--out")
    if path.is_dir():
        raise CommandError(f"--out {path} is a folder: name the .npz file to write")
    if c_dir is not None:
        check_c_folder(c_dir)  # CFolderError, a BintutError: one line
    if onnx is not None:
        check_onnx_path(onnx)  # before the work: a missing extra or a bad path is one line
    exported = export_run(run, force=force)
    if exported.warning:
        print(f"bintut: warning: {exported.warning}", file=sys.stderr)
    export, config = exported.export, exported.run.config
    fp32 = exported.fp32_bytes()
    try:
        export.save(path)
    except OSError as err:  # a full disk comes as StorageFullError, whose cause says which limit
        cause = err.__cause__ if isinstance(err, StorageFullError) and isinstance(err.__cause__, OSError) else err
        raise CommandError(f"could not write {path} ({cause.strerror or cause}); nothing was changed there") from err
    print(summary_table(layer_costs(export)))
    size = path.stat().st_size
    print(f"\n{path}: {size:,} bytes on disk; the fp32 state_dict: {fp32:,} bytes ({fp32 / size:.1f}x larger); "
          f"input normalisation recorded: {export.normalization_words}")
    if c_dir:
        images, origin = golden_images(config, golden)
        try:
            library = write_c_library(export, c_dir, images, source=f"run {Path(run).name}", kernel=c_kernel)
        except ExportError:
            raise
        except (OSError, ValueError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            raise CommandError(f"could not write the C library to {c_dir} ({reason}); the folder is as it was") \
                from err
        flash, ram = sum(library.flash.values()), sum(library.ram.values())
        print(f"{c_dir}: C99 library and golden test ({library.golden} images: {origin}); constant data "
              f"{flash:,} bytes (flash), static buffers {ram:,} bytes (RAM); build and run: {c_dir}/README.md")
    if onnx:
        try:
            print(export_onnx(export, onnx, config, Path(run).name, onnx_weights, onnx_residual))
        except (BintutError, ValueError):
            raise
        except OSError as err:
            raise CommandError(f"could not write {onnx} ({getattr(err, 'strerror', None) or err}); nothing was "
                               "changed there") from err
    return 0


def check_onnx_path(path: str) -> None:
    """Refuse, before any work, an ONNX destination that is a folder or has too long a name, and a missing onnx or
    onnxruntime package. Raises OnnxExportError, RunFolderError or OnnxUnavailableError (one line each)."""
    check_name_lengths(Path(path), "--onnx")
    if Path(path).is_dir():
        raise OnnxExportError(f"--onnx {path} is a folder: name the .onnx file to write")
    require("onnx")
    require("onnxruntime")


def export_onnx(export: ResNetExport, path: str, cfg: TrainConfig, run: str, weights: str = "int8",
                residual: str = "float") -> str:
    """Write the ONNX model (:func:`bintut.integer.onnx_export.save_onnx`, with the class names of the run's data
    when it is here), run it in onnxruntime on up to 64 of the run's test images (seeded random images without
    them) and return a line saying its size and its top-1 agreement with the deployed network. Raises what
    save_onnx and onnx_agreement raise."""
    try:
        images, _, classes = test_images(cfg, 64)
        images, origin = images.numpy(), f"test images of the run's {cfg.data} data"
    except (DataNotFoundError, OSError):
        images, _ = golden_images(cfg, 64)
        classes, origin = None, "seeded random images (no test data here)"
    save_onnx(export, path, run, classes, weights, residual)
    result = onnx_agreement(export, images, onnx_session(path))
    same = round(result["top-1 agreement"] * result["images"])
    return (f"{path}: ONNX opset {OPSET}, {weights} weight codes, {residual} residual branches, "
            f"{Path(path).stat().st_size:,} bytes; onnxruntime "
            f"{require('onnxruntime').__version__} (CPU) gives the deployed network's top-1 on {same}/"
            f"{result['images']} {origin} (largest logit difference {result['largest logit difference']:.3g})")

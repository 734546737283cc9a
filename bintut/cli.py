"""``python -m bintut``: train a preset, with any config field overridden from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys

from .config import PRESETS, SCHEDULE_FIELDS, TrainConfig, preset

DESCRIPTION = """\
Gradual binarization of an ImageNet-pretrained ResNet18 on CIFAR-100.

Presets: 'seed' is the published recipe (300 epochs, for a GPU), 'fast' a 100-epoch recipe for
one GPU (untested on CIFAR-100), 'workshop' a ten-minute run on a laptop CPU (a CIFAR-100 subset),
'smoke' a seconds-long run on synthetic data made offline. Any field of the preset can be
overridden, e.g.:

  python -m bintut train --preset smoke --out runs/smoke
  python -m bintut train --preset seed --download --out runs/seed
  python -m bintut train --preset workshop --epochs 4 --no-pretrained
  python -m bintut train --preset seed --out runs/seed --resume     # continue after a stop
  torchrun --nproc_per_node=4 -m bintut train --preset fast --out runs/fast   # several GPUs

A run folder holds config.json, metrics.jsonl (one row per epoch), checkpoint.pt (every
epoch, and on Ctrl-C) and results.png. No CIFAR-100 at hand? Add --data synthetic.
"""


def _base_type(annotation: str) -> type:
    hint = {"int | None": int, "str | None": str}.get(annotation)
    if hint:
        return hint
    return {"int": int, "float": float, "str": str, "bool": bool, "list": list}[annotation]


def _phases(text: str) -> list | float:
    """A JSON phase list, or a bare number: a constant schedule (e.g. --lr 0.001)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not a JSON phase list or a number ({err}): {text!r}") from None
    return value


def build_parser() -> argparse.ArgumentParser:
    # allow_abbrev=False: a mistyped or shortened flag (--epoch for --epochs) is an error, not a guess.
    parser = argparse.ArgumentParser(prog="python -m bintut", description=DESCRIPTION, allow_abbrev=False,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    train = commands.add_parser("train", help="train (or resume) a run", description=DESCRIPTION,
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    train.add_argument("--preset", choices=sorted(PRESETS), default="seed", help="starting values (default: seed)")
    export = commands.add_parser(
        "export", help="export a finished run's fully binary model to a bit-packed .npz (and C99 with --c)",
        description="Fold a run's model (at p = bin_ratio = 1) into packed sign bits, per-channel scales, "
        "int8 activation steps, BN-folded epilogues and the integer-only fixed-point constants; print the "
        "per-layer op table and the sizes on disk. With --c DIR also write a self-contained C99 library "
        "with golden test vectors (see DIR/README.md). A run that never reached p = bin_ratio = 1 is "
        "refused unless --force.", allow_abbrev=False,
    )
    export.add_argument("run", help="a run folder holding checkpoint.pt")
    export.add_argument("--out", help="the .npz to write (default: RUN/model_int.npz)")
    export.add_argument("--c", dest="c_dir", metavar="DIR", help="also write the C99 library and golden test here")
    export.add_argument("--golden", type=int, default=8, metavar="N",
                        help="golden test images in the C library (default: 8)")
    export.add_argument("--force", action="store_true",
                        help="export the fully binary view of a run that never reached p = bin_ratio = 1")
    commands.add_parser(
        "reproduce", help="the main job: preset 'seed' on a GPU, 'workshop' on a CPU, into results/<preset>",
        description="Run the reference recipe (GPU) or the workshop preset (CPU) on real CIFAR-100, "
        "downloading it if needed, into results/<preset>; rerunning continues a stopped run.", allow_abbrev=False,
    )
    from .record import add_parser as add_record_parser

    add_record_parser(commands)
    for f in dataclasses.fields(TrainConfig):
        if f.name == "preset":
            continue
        flag = "--" + f.name.replace("_", "-")
        kind = _base_type(str(f.type))
        help_text = f.metadata.get("help", "")
        if kind is bool:
            train.add_argument(flag, dest=f.name, action=argparse.BooleanOptionalAction,
                               default=argparse.SUPPRESS, help=help_text)
        elif f.name in SCHEDULE_FIELDS:
            train.add_argument(flag, dest=f.name, type=_phases, default=argparse.SUPPRESS, metavar="JSON|NUMBER",
                               help=help_text)
        else:
            train.add_argument(flag, dest=f.name, type=kind, default=argparse.SUPPRESS, help=help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    command = args.pop("command")
    if command == "export":
        if args["golden"] < 1:
            parser.error(f"--golden must be at least 1, got {args['golden']}")
        return run_export(args["run"], args["out"], args["c_dir"], args["golden"], args["force"])
    if command == "record":
        from .record import main as record_main

        return record_main(args)
    if command == "reproduce":
        import torch

        name = "seed" if torch.cuda.is_available() else "workshop"
        print(f"bintut: {'a GPU is' if name == 'seed' else 'no GPU is'} visible: running preset {name!r}")
        args = {"preset": name, "out": f"results/{name}", "download": True, "resume": True}
    try:
        cfg = preset(args.pop("preset"), **args)
    except ValueError as err:
        parser.error(str(err))
    return run_training(cfg)


def run_training(cfg: TrainConfig) -> int:
    """Train with the CLI's manners: known failures as one clear line, exit codes for scripts.

    0 done; 2 a clear error (bad input, data or weights unavailable, divergence, a busy or
    unusable run folder, a full disk); 128 + N stopped by signal N (130 Ctrl-C, 143 SIGTERM).
    """
    from .data import DataNotFoundError
    from .device_data import DeviceMemoryError
    from .distributed import process_group
    from .model import WeightsUnavailableError
    from .runfolder import RunFolderError, StorageFullError, full_message, storage_error
    from .train import Diverged, train

    try:
        with process_group():
            summary = train(cfg)
    except (DataNotFoundError, WeightsUnavailableError, Diverged, FileExistsError, FileNotFoundError,
            DeviceMemoryError, RunFolderError, ValueError) as err:
        print(f"bintut: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        return 128 + getattr(err, "signum", signal.SIGINT)
    except Exception as err:
        full = storage_error(err)
        if full is None:
            raise
        text = str(full) if isinstance(full, StorageFullError) else full_message(full.filename or cfg.out, full)
        print(f"bintut: error: {text}", file=sys.stderr)
        return 2
    if "hard_acc" in summary:
        print(f"bintut: done. final hard accuracy {100 * summary['hard_acc']:.2f}%, soft "
              f"{100 * summary['soft_acc']:.2f}%; results in {summary['out']}")
    return 0


def run_export(run: str, out: str | None, c_dir: str | None = None, golden: int = 8, force: bool = False) -> int:
    """Export a run: the .npz (always) and, with ``c_dir``, the C library; one-line errors, exit 2."""
    from pathlib import Path

    from .checkpoint import CheckpointError
    from .export import ExportError, export_resnet, fp32_state_dict_bytes
    from .opcount import layer_costs, summary_table
    from .quant import get_controls, hard_mode
    from .runs import load_run

    def fail(message: str) -> int:
        print(f"bintut: error: {message}", file=sys.stderr)
        return 2

    try:
        loaded = load_run(run)
        controls = get_controls(loaded.model)
        if not controls or any(value != 1.0 for value in controls.values()):
            last = ", ".join(f"{k} = {v:.4g}" for k, v in controls.items()) or "no quantizers"
            if not force:
                return fail(f"run {run} never reached p = bin_ratio = 1 (its last controls: {last}), so its "
                            "fully binary view is not the network it trained; train it to the end, or pass "
                            "--force to export that view anyway")
            print(f"bintut: warning: run {run} never reached p = bin_ratio = 1 (its last controls: {last}); "
                  "exporting its fully binary view because of --force", file=sys.stderr)
        with hard_mode(loaded.model):
            export = export_resnet(loaded.model)
            fp32 = fp32_state_dict_bytes(loaded.model)
    except (FileNotFoundError, CheckpointError, ExportError) as err:
        return fail(str(err))
    path = Path(out) if out else Path(run) / "model_int.npz"
    try:
        export.save(path)
    except OSError as err:
        return fail(f"could not write {path} ({err.strerror or err}); nothing was changed there")
    print(summary_table(layer_costs(export)))
    size = path.stat().st_size
    print(f"\n{path}: {size:,} bytes on disk; the fp32 state_dict: {fp32:,} bytes ({fp32 / size:.1f}x larger)")
    if c_dir:
        from .cexport import run_test_images, write_c_library

        images, origin = run_test_images(loaded, golden)
        try:
            library = write_c_library(export, c_dir, images, source=f"run {Path(run).name}")
        except OSError as err:
            return fail(f"could not write the C library to {c_dir} ({err.strerror or err})")
        flash, ram = sum(library.flash.values()), sum(library.ram.values())
        print(f"{c_dir}: C99 library and golden test ({library.golden} images: {origin}); constant data "
              f"{flash:,} bytes (flash), static buffers {ram:,} bytes (RAM); build and run: {c_dir}/README.md")
    return 0

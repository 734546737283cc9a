"""``python -m bintut``: train a preset, with any config field overridden from the command line."""

from __future__ import annotations

import argparse
import dataclasses
import json
import signal
import sys
import threading

from .config import PRESETS, SCHEDULE_FIELDS, TrainConfig, preset

DESCRIPTION = """\
Gradual binarization of an ImageNet-pretrained ResNet18 on CIFAR-100.

Presets: 'seed' is the published recipe (300 epochs, for a GPU), 'fast' a 100-epoch recipe for
one GPU (untested on CIFAR-100), 'workshop' a ten-minute run on a laptop CPU (a CIFAR-100 subset),
'smoke' about two minutes on two quiet CPU cores, on synthetic data made offline. Any field of
the preset can be overridden, e.g.:

  python -m bintut train --preset smoke --out runs/smoke
  python -m bintut train --preset seed --download --out runs/seed
  python -m bintut train --preset workshop --epochs 4 --no-pretrained
  python -m bintut train --preset seed --out runs/seed --resume     # continue after a stop
  torchrun --nproc_per_node=4 -m bintut train --preset fast --out runs/fast   # several GPUs

A run folder holds config.json, metrics.jsonl (one row per epoch), checkpoint.pt (every
epoch, and on Ctrl-C) and results.png. No CIFAR-100 at hand? Add --data fashion-mnist (real photos;
Debian: apt-get install dataset-fashion-mnist) or --data synthetic (made offline).
"""


REPRODUCE_OFFLINE = """\
bintut: reproduce takes no options: it needs CIFAR-100 and timm's ImageNet ResNet18 weights (resnet18.a1_in1k).
Without them (e.g. offline):
  make smoke     # synthetic data made offline, random initial weights
  python -m bintut train --preset workshop --data fashion-mnist --out results/workshop-fashion-mnist
                 # real photos, offline from Debian's package dataset-fashion-mnist (else add --download)
The workshop and seed presets start from those ImageNet weights; where they cannot be downloaded, add
--no-pretrained (random initial weights), or copy ~/.cache/huggingface/hub/models--timm--resnet18.a1_in1k/
from a machine that has it to the same place here ($HF_HOME/hub/ if HF_HOME is set).\
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
    export.add_argument("--c-kernel", choices=("fast", "reference"), default="fast",
                        help="the C library's default kernel: fast (SIMD where the CPU has it, portable C "
                        "elsewhere) or the readable reference loop; same logits (default: fast)")
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


class Terminated(KeyboardInterrupt):
    """SIGTERM outside the training loop: unwinds like Ctrl-C, so that every temporary file is removed."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _terminate(signum: int, frame: object) -> None:
    raise Terminated(signum)


def main(argv: list[str] | None = None) -> int:
    """The command line; SIGTERM unwinds like Ctrl-C (temporaries removed, exit 143) for the whole command."""
    if threading.current_thread() is not threading.main_thread():
        return _main(argv)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        return _main(argv)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = vars(parser.parse_args(argv))
    command = args.pop("command")
    if command == "export":
        from .cexport import MAX_GOLDEN

        if not 1 <= args["golden"] <= MAX_GOLDEN:
            parser.error(f"--golden must be between 1 and {MAX_GOLDEN}, got {args['golden']}")
        for flag, key in (("--out", "out"), ("--c", "c_dir")):
            if args[key] is not None and not args[key].strip():
                parser.error(f"{flag} is empty: name a {'file' if key == 'out' else 'folder'}, or leave {flag} out")
        return run_export(args["run"], args["out"], args["c_dir"], args["golden"], args["force"],
                          args["c_kernel"])
    if command == "record":
        from .record import main as record_main

        return record_main(args)
    hint = None
    if command == "reproduce":
        import torch

        name = "seed" if torch.cuda.is_available() else "workshop"
        print(f"bintut: {'a GPU is' if name == 'seed' else 'no GPU is'} visible: running preset {name!r}")
        args = {"preset": name, "out": f"results/{name}", "download": True, "resume": True}
        hint = REPRODUCE_OFFLINE
    try:
        cfg = preset(args.pop("preset"), **args)
    except ValueError as err:
        parser.error(str(err))
    return run_training(cfg, hint)


def run_training(cfg: TrainConfig, hint: str | None = None) -> int:
    """Train with the CLI's manners: known failures as one clear line, exit codes for scripts.

    0 done (also for a run that had finished before: nothing is trained then); 2 a clear error (bad input,
    data or weights unavailable, divergence, a busy or unusable run folder, a full disk); 128 + N stopped by
    signal N (130 Ctrl-C, 143 SIGTERM). ``hint`` follows a missing-data or missing-weights error (reproduce's
    way forward offline).
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
        if hint and isinstance(err, (DataNotFoundError, WeightsUnavailableError)):
            print(hint, file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        if isinstance(err, Terminated):  # before or after the training loop, which says what it kept
            print(f"bintut: stopped by signal {signum}", file=sys.stderr)
        return 128 + signum
    except Exception as err:
        full = storage_error(err)
        if full is None:
            raise
        text = str(full) if isinstance(full, StorageFullError) else full_message(full.filename or cfg.out, full)
        print(f"bintut: error: {text}", file=sys.stderr)
        return 2
    if "hard_acc" in summary:
        deployed = summary.get("deployed_acc")
        what = "nothing to do" if summary.get("already_finished") else "done"
        print(f"bintut: {what}. final hard accuracy {100 * summary['hard_acc']:.2f}%, soft "
              f"{100 * summary['soft_acc']:.2f}%, deployed (integer-only) "
              f"{'n/a' if deployed is None else f'{100 * deployed:.2f}%'}; results in {summary['out']}")
    return 0


def run_export(run: str, out: str | None, c_dir: str | None = None, golden: int = 8, force: bool = False,
               c_kernel: str = "fast") -> int:
    """Export a run: the .npz (always) and, with ``c_dir``, the C library; one-line errors, exit 2.

    Ctrl-C or SIGTERM stops it quietly (exit 130 or 143): each file and the C folder is replaced whole
    or not at all, so what was there before stays.
    """
    try:
        return _export(run, out, c_dir, golden, force, c_kernel)
    except KeyboardInterrupt as err:
        signum = getattr(err, "signum", signal.SIGINT)
        print(f"\nbintut: export stopped (signal {signum}); files not yet replaced are as they were", file=sys.stderr)
        return 128 + signum


def _export(run: str, out: str | None, c_dir: str | None, golden: int, force: bool, c_kernel: str) -> int:
    from pathlib import Path

    from .checkpoint import CheckpointError
    from .export import ExportError, export_resnet, fp32_state_dict_bytes
    from .opcount import layer_costs, summary_table
    from .quant import get_controls, hard_mode
    from .runfolder import RunFolderError, check_name_lengths
    from .runs import load_run

    def fail(message: str) -> int:
        print(f"bintut: error: {message}", file=sys.stderr)
        return 2

    path = Path(out) if out else Path(run) / "model_int.npz"
    try:
        check_name_lengths(path, "--out")
        if path.is_dir():
            return fail(f"--out {path} is a folder: name the .npz file to write")
        if c_dir is not None:
            from .cexport import CFolderError, check_c_folder

            try:
                check_c_folder(c_dir)
            except CFolderError as err:
                return fail(str(err))
        loaded = load_run(run, metrics=False)
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
    except (FileNotFoundError, CheckpointError, ExportError, RunFolderError, ValueError) as err:
        return fail(str(err))
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
            library = write_c_library(export, c_dir, images, source=f"run {Path(run).name}", kernel=c_kernel)
        except ExportError as err:
            return fail(str(err))
        except (OSError, ValueError) as err:
            reason = err.strerror if isinstance(err, OSError) and err.strerror else err
            return fail(f"could not write the C library to {c_dir} ({reason}); the folder is as it was")
        flash, ram = sum(library.flash.values()), sum(library.ram.values())
        print(f"{c_dir}: C99 library and golden test ({library.golden} images: {origin}); constant data "
              f"{flash:,} bytes (flash), static buffers {ram:,} bytes (RAM); build and run: {c_dir}/README.md")
    return 0

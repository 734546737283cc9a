"""``python -m bintut``: the commands' parsers (torch-free, so ``--help`` answers at once) and their dispatch:
``train`` a preset with any config field overridden, ``export`` a run, ``reproduce``, ``record`` and ``clean``.
Every command runs under one error policy (:func:`bintut.errors.run_command`); a flag error prints the usage of
the command it belongs to."""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import json
import signal
import sys
import threading
from types import ModuleType

from bintut.config import DATA_NAMES, PRESETS, SCHEDULE_FIELDS, TrainConfig, preset
from bintut.errors import EXIT_ERROR, Terminated, run_command
from bintut.integer.c_library import MAX_GOLDEN

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

train needs --preset: with no arguments it prints its usage and the presets, rather than starting the
300-epoch GPU recipe in ./results (python -m bintut reproduce picks the main job for this machine).

A run folder holds config.json, metrics.jsonl (one row per epoch), checkpoint.pt (every
epoch, and on Ctrl-C) and results.png. No CIFAR-100 at hand? Add --data fashion-mnist (real photos;
Debian: apt-get install dataset-fashion-mnist) or --data synthetic (made offline).
"""


REPRODUCE_OFFLINE = """\
bintut: reproduce takes no options: on CIFAR-100 it needs timm's ImageNet ResNet18 weights (resnet18.a1_in1k).
Without CIFAR-100 it runs on Fashion-MNIST where that is here (random initial weights); offline, install it with
  apt-get install dataset-fashion-mnist      # Debian's package; then run make reproduce again
or run on synthetic data made offline: make smoke. For CIFAR-100 without a download of the ImageNet weights, add
--no-pretrained to a train command (random initial weights), or copy ~/.cache/huggingface/hub/
models--timm--resnet18.a1_in1k/ from a machine that has it to the same place here ($HF_HOME/hub/ if HF_HOME is set).\
"""


TRAIN_USAGE = ("python -m bintut train [-h] --preset {fast,seed,smoke,workshop} [--out DIR] [--resume] "
               "[--FIELD VALUE ...]  (every field: --help)")


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
    train = commands.add_parser("train", help="train (or resume) a run", description=DESCRIPTION, usage=TRAIN_USAGE,
                                formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    train.add_argument("--preset", choices=sorted(PRESETS), default=None,
                       help="starting values (required): seed, fast, workshop or smoke")
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
    export.add_argument("--onnx", metavar="FILE", help="also write the network as an ONNX model (QDQ, int8 "
                        "activations, +-1 weight codes) and check it in onnxruntime; needs pip install 'bintut[onnx]'")
    export.add_argument("--onnx-weights", choices=("int8", "int4"), default="int8",
                        help="the ONNX weight codes' type: int8 (onnxruntime runs int8 kernels) or int4 (half the "
                        "file; onnxruntime dequantizes it to float) (default: int8)")
    export.add_argument("--onnx-residual", choices=("float", "int8"), default="float",
                        help="float: conv2 and the shortcut feed each residual addition unrounded, as in the deployed "
                        "network; int8: each branch is rounded to int8 codes first (as TFLite's int8 ADD), so that "
                        "onnxruntime runs every convolution in int8 (faster; more codes one step apart) "
                        "(default: float)")
    commands.add_parser(
        "reproduce", help="the main job: preset 'seed' on a GPU, 'workshop' on a CPU, into results/<preset>",
        description="Run the reference recipe (GPU) or the workshop preset (CPU) on real CIFAR-100, "
        "downloading it if needed, into results/<preset>; rerunning continues a stopped run.", allow_abbrev=False,
    )
    add_record_parser(commands)
    clean = commands.add_parser(
        "clean", allow_abbrev=False, help="free the run cache (trained runs the notebooks and record reuse)",
        description="Delete the run folders of the run cache: ./runs, notebooks/runs and $BINTUT_RUNS when it is "
        "set (the notebooks and record train into it and reuse what is there; anything is trained again on "
        "demand). Only run folders (config.json or checkpoint.pt inside) and their lock files are deleted; other "
        "files, a run that is training now, results/ and docs/recorded are left alone. Says how much it freed.")
    clean.add_argument("--dry-run", action="store_true", help="list what would be deleted and how much it holds")
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


def add_record_parser(commands: argparse._SubParsersAction) -> argparse.ArgumentParser:
    """The ``record`` subcommand of ``python -m bintut`` (run by :func:`bintut.teaching.record.main`)."""
    parser = commands.add_parser(
        "record", allow_abbrev=False, help="train the tutorial's stages and record their metrics in docs/recorded/",
        description="Train the tutorial's stages (baseline; then, each from it: the baseline trained on; binary "
        "weights only; int8 activations only; both, gradually; both at once, the control; p alone; bin_ratio alone) "
        "and copy each run's metrics.jsonl and config.json into OUT/<data>/<stage>/seed-<k>/ with a provenance.json "
        "(commands, machine, dates, commit). The notebooks show that recording. Rerunning continues where it "
        "stopped; other stages or seeds add to it.",
    )
    parser.add_argument("--mode", choices=("smoke", "workshop", "full"), default=None,
                        help="the stages' recipe (default: full on a GPU, workshop on a CPU)")
    parser.add_argument("--data", choices=tuple(DATA_NAMES), default="cifar100", help="the data set")
    parser.add_argument("--out", default=None, help="recording folder (default: $BINTUT_RECORDED, else "
                        "docs/recorded of this checkout)")
    parser.add_argument("--baseline-epochs", type=int, default=None, help="the baseline's epochs (default: mode's)")
    parser.add_argument("--ramp", type=json.loads, default=None, metavar="JSON",
                        help="phases of p and bin_ratio in the binarizing stages (default: the mode's)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                        help="a config field for every stage, VALUE as JSON or text (repeatable), e.g. "
                        "--set train_subset=2000 --set epochs=3")
    parser.add_argument("--stages", default=None, metavar="LIST",
                        help="stages to record, comma-separated (the baseline always comes first); default: all of "
                        "baseline, fp-continued, weights, activations, both, abrupt, p-only, ratio-only")
    parser.add_argument("--seeds", default=None, metavar="LIST",
                        help="seeds of every stage after the baseline, comma-separated, e.g. 0,1 (default: the "
                        "config's seed)")
    return parser


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


TRAIN_HINT = ("bintut: train needs --preset: smoke (about two minutes on a CPU, synthetic data), workshop (a "
              "ten-minute run on a CPU), fast (100 epochs, one GPU) or seed (the published 300-epoch recipe, a GPU), "
              "e.g. python -m bintut train --preset smoke --out runs/smoke; python -m bintut reproduce runs the main "
              "job")


def command_parser(parser: argparse.ArgumentParser, command: str) -> argparse.ArgumentParser:
    """The subparser of ``command`` (its usage line is what an error in its flags prints)."""
    actions = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return actions[0].choices[command]


def _main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    namespace, extra = parser.parse_known_args(argv)
    args = vars(namespace)
    command = args.pop("command")
    own = command_parser(parser, command)
    if extra:  # argparse would print the top-level usage for a flag the command does not know
        own.error(f"unrecognized arguments: {' '.join(extra)}")
    if command == "export":
        if not 1 <= args["golden"] <= MAX_GOLDEN:
            own.error(f"--golden must be between 1 and {MAX_GOLDEN}, got {args['golden']}")
        for flag, key in (("--out", "out"), ("--c", "c_dir"), ("--onnx", "onnx")):
            if args[key] is not None and not args[key].strip():
                own.error(f"{flag} is empty: name a {'folder' if key == 'c_dir' else 'file'}, or leave {flag} out")
        return commands().run_export(args["run"], args["out"], args["c_dir"], args["golden"], args["force"],
                                     args["c_kernel"], args["onnx"], args["onnx_weights"],
                                     args["onnx_residual"])
    if command == "record":
        return record_command().main(args)
    if command == "clean":
        return run_command(lambda: clean_command().clean(dry_run=args["dry_run"]))
    hint = None
    if command == "reproduce":
        args, hint = commands().reproduce_settings(), REPRODUCE_OFFLINE
    elif args["preset"] is None:
        own.print_usage(sys.stderr)
        print(TRAIN_HINT, file=sys.stderr)
        return EXIT_ERROR
    try:
        cfg = preset(args.pop("preset"), **args)
    except ValueError as err:
        own.error(str(err))
    return commands().run_training(cfg, hint)


def commands() -> ModuleType:
    """The commands themselves (:mod:`bintut.commands`), imported when one runs: ``--help`` needs no torch."""
    return importlib.import_module("bintut.commands")


def clean_command() -> ModuleType:
    """``python -m bintut clean`` (:mod:`bintut.files.run_cache`: standard library only)."""
    return importlib.import_module("bintut.files.run_cache")


def record_command() -> ModuleType:
    """``python -m bintut record`` (:mod:`bintut.teaching.record`), imported when that command runs."""
    return importlib.import_module("bintut.teaching.record")

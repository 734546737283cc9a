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
        "export", help="export a finished run's fully binary model to a bit-packed .npz",
        description="Fold a run's model (at p = bin_ratio = 1) into packed sign bits, per-channel scales, "
        "int8 activation steps and BN-folded epilogues; print the per-layer op table and the sizes on disk.",
    )
    export.add_argument("run", help="a run folder holding checkpoint.pt")
    export.add_argument("--out", help="the .npz to write (default: RUN/model_int.npz)")
    commands.add_parser(
        "reproduce", help="the main job: preset 'seed' on a GPU, 'workshop' on a CPU, into results/<preset>",
        description="Run the reference recipe (GPU) or the workshop preset (CPU) on real CIFAR-100, "
        "downloading it if needed, into results/<preset>; rerunning continues a stopped run.", allow_abbrev=False,
    )
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
        return run_export(args["run"], args["out"])
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


def run_export(run: str, out: str | None) -> int:
    from pathlib import Path

    from .export import ExportError, export_resnet, fp32_state_dict_bytes
    from .opcount import layer_costs, summary_table
    from .quant import hard_mode
    from .runs import load_run

    try:
        model = load_run(run).model
        with hard_mode(model):
            export = export_resnet(model)
            fp32 = fp32_state_dict_bytes(model)
    except (FileNotFoundError, ExportError) as err:
        print(f"bintut: error: {err}", file=sys.stderr)
        return 2
    path = export.save(Path(out) if out else Path(run) / "model_int.npz")
    print(summary_table(layer_costs(export)))
    size = path.stat().st_size
    print(f"\n{path}: {size:,} bytes on disk; the fp32 state_dict: {fp32:,} bytes ({fp32 / size:.1f}x larger)")
    return 0

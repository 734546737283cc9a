"""Record the tutorial's stages once, read the recording everywhere (notebooks, book, tests).

``python -m bintut record`` trains the stages of :mod:`bintut.teaching.stages` -- ``baseline`` (full precision),
then ``weights`` (binary weights only), ``activations`` (int8 inputs only) and ``both``, each starting
from the baseline with its gradual schedule -- and copies each stage's ``metrics.jsonl`` and
``config.json`` (never the checkpoint) into ``docs/recorded/<data>/<stage>/``, with a
``provenance.json`` beside them: the command, the machine (CPU model or GPU name), the date, the git
commit, the torch version and the wall time of each stage (and whether it was trained by this call or
found finished in the run cache). Paths in the copied configs are made portable
(:func:`portable_config`). Each stage is copied as soon as it has finished, so an interrupted
recording keeps what it has; rerunning continues (the run cache of :mod:`bintut.training.runs` resumes a
stage's checkpoint).

The notebooks draw their "recorded" figures from these files with :func:`load_recording`, the same
in every mode: what binarization costs on real images can be read without training anything.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from bintut.config import DATA_NAMES, TrainConfig
from bintut.errors import BintutError
from bintut.files.checkpoint import is_finished
from bintut.files.metrics import read_metrics
from bintut.files.run_folder import CONFIG, METRICS
from bintut.teaching.stages import PUBLISHED, STAGE_TITLES, stage_config
from bintut.training.runs import load_or_train, run_name, runs_dir

RECORD_STAGES = ("baseline", "weights", "activations", "both")

RECORDED_ENV = "BINTUT_RECORDED"

RECORD_FILES = (METRICS, CONFIG)

PROVENANCE = "provenance.json"

ROOT = Path(__file__).resolve().parent.parent.parent  # the checkout: bintut/teaching/ is two levels down


class RecordingError(FileNotFoundError, BintutError):
    """A recording folder is missing or lacks a stage's files."""


def recorded_dir() -> Path:
    """Where recordings live: ``$BINTUT_RECORDED``, else ``docs/recorded`` of this checkout."""
    return Path(os.environ.get(RECORDED_ENV) or ROOT / "docs" / "recorded")


def record_configs(mode: str, data: str, ramp: list | None = None, baseline_epochs: int | None = None,
                   **overrides: Any) -> dict[str, TrainConfig]:
    """The four stages' configurations of one recording.

    ``mode`` and the stage recipes come from :func:`bintut.teaching.stages.stage_config`; ``overrides`` (config
    fields) apply to every stage, ``baseline_epochs`` to the baseline only, ``ramp`` (a phase list)
    replaces the binarizing stages' schedule of p and bin_ratio. Later stages start from this baseline.
    """
    extra = {"epochs": baseline_epochs} if baseline_epochs else {}
    baseline = stage_config("baseline", mode, data=data, **{**overrides, **extra})
    start = str(runs_dir() / run_name(baseline, "baseline"))
    configs = {"baseline": baseline}
    for stage in RECORD_STAGES[1:]:
        schedule: dict[str, Any] = {}
        if ramp is not None:
            if stage in ("weights", "both"):
                schedule |= dict(weight_p=ramp, weight_ratio=ramp)
            if stage in ("activations", "both"):
                schedule |= dict(act_p=ramp, act_ratio=ramp)
        configs[stage] = stage_config(stage, mode, data=data, **{**overrides, **schedule, "init_from": start})
    return configs


def machine() -> str:
    """The GPU's name when one computes, else the CPU model (lscpu) and its core count."""
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name(0)}"
    model = platform.processor() or platform.machine()
    try:
        lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        model = next((line.split(":", 1)[1].strip() for line in lscpu.splitlines()
                      if line.startswith("Model name")), model)
    except (OSError, subprocess.SubprocessError):
        pass
    return f"CPU {model}, {os.cpu_count()} cores, {torch.get_num_threads()} torch threads"


def git_commit() -> str:
    """This checkout's commit (with ``+changes`` when the work tree differs from it), or 'unknown'."""
    try:
        head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("+changes" if dirty else "")


def record(configs: dict[str, TrainConfig], out: str | os.PathLike, command: str) -> Path:
    """Train (or load) each stage in order and copy its metrics and config into ``out/<data>/<stage>/``.

    Returns the recording folder. ``provenance.json`` is rewritten after every stage (what is there is
    always described); a stage that was already trained reports no wall time of its own.
    """

    data = configs["baseline"].data
    folder = Path(out) / data
    folder.mkdir(parents=True, exist_ok=True)
    provenance: dict[str, Any] = {
        "data": DATA_NAMES[data], "command": command, "machine": machine(),
        "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": git_commit(), "torch": torch.__version__, "python": platform.python_version(),
        "stages": {},
    }
    started = time.perf_counter()
    for stage, cfg in configs.items():
        run_folder = runs_dir() / run_name(cfg, stage)
        print(f"bintut: recording stage {stage!r} ({cfg.epochs} epochs on {DATA_NAMES[data]}) -> {run_folder}",
              flush=True)
        begun = time.perf_counter()
        finished = is_finished(run_folder, cfg.epochs)
        load_or_train(cfg, label=stage)
        target = folder / stage
        target.mkdir(exist_ok=True)
        shutil.copyfile(run_folder / METRICS, target / METRICS)
        saved = portable_config(json.loads((run_folder / CONFIG).read_text()), runs_dir())
        (target / CONFIG).write_text(json.dumps(saved, indent=2) + "\n")
        provenance["stages"][stage] = {"run": run_folder.name, "trained_here": not finished,
                                       "wall_seconds": round(time.perf_counter() - begun)}
        provenance["wall_seconds"] = round(time.perf_counter() - started)
        (folder / PROVENANCE).write_text(json.dumps(provenance, indent=2) + "\n")
    return folder


def portable_config(config: dict[str, Any], runs: Path) -> dict[str, Any]:
    """A run's config.json with this machine's paths made portable: run folders relative to the run cache
    (``runs/NAME``, as under the default ``$BINTUT_RUNS``), the data root dropped (it never changes a result)."""
    saved = dict(config)
    for key in ("out", "init_from"):
        if saved.get(key):
            saved[key] = str(Path("runs") / Path(saved[key]).name)
    saved["data_root"] = None
    return saved


def _overrides(pairs: list[str]) -> dict[str, Any]:
    values = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        if not sep:
            raise ValueError(f"--set wants FIELD=VALUE, got {pair!r}")
        try:
            values[name.strip()] = json.loads(text)
        except json.JSONDecodeError:
            values[name.strip()] = text
    return values


def main(args: dict[str, Any]) -> int:
    """``python -m bintut record``: one-line errors (exit 2) as ``train``."""
    try:
        configs = record_configs(args["mode"], args["data"], args["ramp"], args["baseline_epochs"],
                                 **_overrides(args["overrides"]))
        command = "python -m bintut " + shlex.join(sys.argv[1:])
        folder = record(configs, args["out"] or recorded_dir(), command)
    except (BintutError, ValueError, TypeError) as err:  # every bintut error, and bad --set values: one line
        print(f"bintut: error: {err}", file=sys.stderr)
        return 2
    print(f"bintut: recorded {', '.join(configs)} in {folder}")
    return 0


@dataclass
class Recording:
    """A recording read back: per stage its metrics rows and config, and the provenance."""

    folder: Path
    metrics: dict[str, list[dict[str, Any]]]
    configs: dict[str, dict[str, Any]]
    provenance: dict[str, Any]

    @property
    def data(self) -> str:
        """The data set's display name, e.g. 'Fashion-MNIST'."""
        return DATA_NAMES.get(self.configs["baseline"]["data"], self.configs["baseline"]["data"])

    def final(self, stage: str, key: str = "hard_acc") -> float:
        """A stage's last-epoch value of ``key``, in percent for accuracies."""
        value = self.metrics[stage][-1][key]
        return 100 * value if key.endswith("_acc") else value

    def source(self) -> str:
        """One line of provenance: data, subset, machine, date, commit."""
        cfg, p = self.configs["baseline"], self.provenance
        sizes = f"{cfg['train_subset'] or 'all'} training / {cfg['test_subset'] or 'all'} test images"
        return (f"{self.data} ({sizes}), recorded {p.get('date', '?')} on {p.get('machine', '?')}, "
                f"commit {str(p.get('commit', '?'))[:10]}")


def load_recording(data: str | None = None, folder: str | os.PathLike | None = None) -> Recording:
    """The recording of ``data`` under ``folder`` (default :func:`recorded_dir`); RecordingError if absent.

    ``data=None`` takes CIFAR-100's recording where one was made (``make record`` with the data and a GPU),
    else the Fashion-MNIST recording that ships with bintut.
    """
    if data is None:
        data = "cifar100" if (Path(folder or recorded_dir()) / "cifar100" / PROVENANCE).is_file() else "fashion-mnist"
    where = Path(folder or recorded_dir()) / data
    if not (where / PROVENANCE).is_file():
        raise RecordingError(f"no recording in {where} (make one with: python -m bintut record --data {data})")
    metrics, configs = {}, {}
    for stage in RECORD_STAGES:
        if not all((where / stage / name).is_file() for name in RECORD_FILES):
            continue
        metrics[stage] = read_metrics(where / stage / METRICS)
        configs[stage] = json.loads((where / stage / CONFIG).read_text())
    if "baseline" not in metrics:
        raise RecordingError(f"{where}: the recording holds no baseline stage")
    return Recording(where, metrics, configs, json.loads((where / PROVENANCE).read_text()))


def cost_points(rec: Recording) -> dict[str, float]:
    """What each binarizing stage costs, in points of test accuracy: the baseline's final soft accuracy (the
    full-precision network) minus the stage's final soft accuracy (the network the stage trained, its quantizers
    at p = bin_ratio = 1 at the end of its schedule).

    This is the tutorial's one definition of "the cost of binarizing" (notebooks 03 and 04): ``weights`` gives
    the cost of binary weights, ``activations`` of int8 inputs, ``both`` of the two together.
    """
    base = rec.final("baseline", "soft_acc")
    return {stage: round(base - rec.final(stage, "soft_acc"), 1) for stage in RECORD_STAGES[1:]
            if stage in rec.metrics}


def recorded_rows(rec: Recording) -> list[dict[str, Any]]:
    """Results-table rows of a recording (one per stage), labelled with their data set and provenance."""
    rows = []
    for stage, rows_ in rec.metrics.items():
        last = rows_[-1]
        rows.append({
            "stage": stage, "trains": STAGE_TITLES[stage], "data": rec.data, "epochs": last["epoch"],
            "hard %": round(100 * last["hard_acc"], 1), "soft %": round(100 * last["soft_acc"], 1),
            "source": f"recorded {rec.provenance.get('date', '?')[:10]}",
            "comparable to published": f"no: other data ({rec.data})",
        })
    return rows


def published_rows() -> list[dict[str, Any]]:
    """The published reference's two numbers (CIFAR-100) in the columns of :func:`recorded_rows`."""
    fp, epoch_fp, _ = PUBLISHED["fp"]
    binary, epoch_binary, _ = PUBLISHED["binary"]
    source = "published: github.com/SebastianFia/binary_resnet18"
    return [
        {"stage": "reference, fp part", "trains": "full precision", "data": "CIFAR-100", "epochs": epoch_fp,
         "hard %": "–", "soft %": fp, "source": source, "comparable to published": "(is the published number)"},
        {"stage": "reference, end", "trains": "binary weights + int8 activations", "data": "CIFAR-100",
         "epochs": epoch_binary, "hard %": binary, "soft %": binary, "source": source,
         "comparable to published": "(is the published number)"},
    ]

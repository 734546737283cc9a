"""Record the tutorial's stages once, read the recording everywhere (notebooks, book, tests).

``python -m bintut record`` trains the stages of :mod:`bintut.teaching.stages` -- ``baseline`` (full precision),
then, each from the baseline: ``fp-continued`` (the baseline trained on: the reference for costs), ``weights``
(binary weights only), ``activations`` (int8 inputs only), ``both`` (gradual, the method), ``abrupt`` (its
control: everything binary from the first step), ``p-only`` and ``ratio-only`` (one control each) -- each
binarizing stage for every seed of ``--seeds``. It copies each run's ``metrics.jsonl`` and ``config.json``
(never the checkpoint) into ``docs/recorded/<data>/<stage>/seed-<k>/``, with a ``provenance.json`` beside
them: the commands, the machine (CPU model or GPU name), the dates, the git commit, the torch version and the
wall time of each run (and whether it was trained by this call or found finished in the run cache). Paths in
the copied configs are made portable (:func:`portable_config`). Each run is copied, atomically, as soon as it
has finished, so an interrupted recording keeps what it has; rerunning continues (the run cache of
:mod:`bintut.training.runs` resumes a stage's checkpoint), and a later call with other stages or seeds adds
to the recording.

The notebooks draw their "recorded" figures from these files with :func:`load_recording`, the same
in every mode: what binarization costs on real images can be read without training anything.
"""

from __future__ import annotations

import datetime
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from bintut.config import DATA_NAMES, TrainConfig
from bintut.errors import BintutError, run_command
from bintut.files.atomic import replacing
from bintut.files.checkpoint import is_finished
from bintut.files.metrics import read_metrics
from bintut.files.run_folder import CONFIG, METRICS
from bintut.teaching.stages import PUBLISHED, STAGE_TITLES, stage_config, stage_schedules
from bintut.training.runs import Run, load_or_train, run_name, runs_dir

RECORD_STAGES = ("baseline", "fp-continued", "weights", "activations", "both", "abrupt", "p-only", "ratio-only")

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
                   stages: tuple[str, ...] = RECORD_STAGES, **overrides: Any) -> dict[str, TrainConfig]:
    """The configurations of one recording's stages (the baseline always first), by stage name.

    ``mode`` and the stage recipes come from :func:`bintut.teaching.stages.stage_config`; ``overrides`` (config
    fields) apply to every stage, ``baseline_epochs`` to the baseline only, ``ramp`` (a phase list)
    replaces the ramped controls' schedule (:data:`bintut.teaching.stages.RAMPED`). Later stages start from
    this baseline. Raises ValueError naming an unknown stage (and as stage_config does).
    """
    unknown = [s for s in stages if s not in RECORD_STAGES]
    if unknown:
        raise ValueError(f"unknown stage(s) {unknown}; record knows {', '.join(RECORD_STAGES)}")
    extra = {"epochs": baseline_epochs} if baseline_epochs else {}
    baseline = stage_config("baseline", mode, data=data, **{**overrides, **extra})
    start = str(runs_dir() / run_name(baseline, "baseline"))
    configs = {"baseline": baseline}
    for stage in dict.fromkeys(s for s in stages if s != "baseline"):  # in the order asked for
        schedule = stage_schedules(stage, ramp) if ramp is not None else {}
        configs[stage] = stage_config(stage, mode, data=data, **{**overrides, **schedule, "init_from": start})
    return configs


def parse_seeds(text: str) -> tuple[int, ...]:
    """``"0,1,2"`` -> (0, 1, 2): the seeds of ``--seeds`` (distinct, >= 0). Raises ValueError quoting the text."""
    try:
        seeds = tuple(int(part) for part in text.split(","))
    except ValueError:
        seeds = ()
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ValueError(f"--seeds wants distinct whole numbers >= 0 separated by commas, e.g. 0,1; got {text!r}")
    return seeds


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


def _write(path: Path, text: str) -> None:
    """Replace ``path`` whole (never through a symbolic link at it: the link itself is replaced)."""
    with replacing(path) as tmp:
        tmp.write_text(text)


def _earlier_provenance(folder: Path, data: str) -> dict[str, Any]:
    """What an earlier call recorded here (its runs are kept), or nothing when it is absent or unreadable."""
    try:
        earlier = json.loads((folder / PROVENANCE).read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(earlier, dict) or earlier.get("data") != DATA_NAMES[data]:
        return {}
    return earlier if isinstance(earlier.get("runs"), dict) else {}


def record(configs: dict[str, TrainConfig], out: str | os.PathLike, command: str,
           seeds: tuple[int, ...] | None = None, *, train: Callable[..., Run] = load_or_train) -> Path:
    """Train (or load) each stage for each seed and copy its metrics and config into
    ``out/<data>/<stage>/seed-<k>/``; the baseline once, with its own seed. Returns the recording folder.

    Order: the baseline, then seed by seed every other stage in the order given, so that an interrupted
    recording holds whole comparisons. ``provenance.json`` is rewritten (atomically) after every run, so what
    is there is always described; runs that an earlier call recorded stay. A run that was already trained
    reports no wall time of its own. ``seeds`` None: the configs' own seed. ``train`` trains or loads one stage
    (:func:`bintut.training.runs.load_or_train`; a test passes a substitute that writes a run folder).
    """
    data = configs["baseline"].data
    folder = Path(out) / data
    folder.mkdir(parents=True, exist_ok=True)
    now = _utc_now()
    earlier = _earlier_provenance(folder, data)
    provenance: dict[str, Any] = {
        "data": DATA_NAMES[data], "commands": [*earlier.get("commands", []), command], "machine": machine(),
        "date": earlier.get("date", now), "last_date": now, "commit": git_commit(), "torch": torch.__version__,
        "python": platform.python_version(), "runs": earlier.get("runs", {}),
    }
    started = time.perf_counter()
    jobs = [("baseline", configs["baseline"])] + [
        (stage, cfg if seeds is None else cfg.replace(seed=seed))
        for seed in (seeds or (None,)) for stage, cfg in configs.items() if stage != "baseline"]
    for stage, cfg in jobs:
        run_folder = runs_dir() / run_name(cfg, stage)
        print(f"bintut: recording stage {stage!r}, seed {cfg.seed} ({cfg.epochs} epochs on {DATA_NAMES[data]}) -> "
              f"{run_folder}", flush=True)
        begun = time.perf_counter()
        finished = is_finished(run_folder, cfg.epochs)
        run = train(cfg, label=stage)
        rows, last = read_metrics(run_folder / METRICS), getattr(run, "last_row", None)
        if last and (not rows or rows[-1].get("epoch", 0) < last.get("epoch", 0)):
            rows.append(last)  # the checkpoint's row: metrics.jsonl lags it after a crash between the two writes
        target = folder / stage / f"seed-{cfg.seed}"
        target.mkdir(parents=True, exist_ok=True)
        _write(target / METRICS, "".join(json.dumps(row) + "\n" for row in rows))
        saved = portable_config(json.loads((run_folder / CONFIG).read_text()), runs_dir())
        _write(target / CONFIG, json.dumps(saved, indent=2) + "\n")
        key, before = f"{stage}/seed-{cfg.seed}", provenance["runs"].get(f"{stage}/seed-{cfg.seed}")
        provenance["last_date"] = _utc_now()  # when this run was recorded
        if not (finished and before and before.get("run") == run_folder.name):  # keep who trained it, and when
            provenance["runs"][key] = {"run": run_folder.name, "trained_here": not finished,
                                       "wall_seconds": round(time.perf_counter() - begun),
                                       "recorded": provenance["last_date"]}
        provenance["wall_seconds_this_call"] = round(time.perf_counter() - started)
        provenance["wall_seconds"] = sum(r["wall_seconds"] for r in provenance["runs"].values() if r["trained_here"])
        _write(folder / PROVENANCE, json.dumps(provenance, indent=2) + "\n")
    return folder


def _utc_now() -> str:
    """The time now, to the minute, in UTC ("2026-12-05 10:04 UTC")."""
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


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
    """``python -m bintut record`` under the command line's error policy (:func:`bintut.errors.run_command`):
    one-line errors (exit 2) as ``train``; a stop by signal N is one line and exit 128 + N."""
    def body() -> int:
        stages = tuple(args["stages"].split(",")) if args.get("stages") else RECORD_STAGES
        try:
            configs = record_configs(args["mode"], args["data"], args["ramp"], args["baseline_epochs"], stages,
                                     **_overrides(args["overrides"]))
        except TypeError as err:  # a --set value of the wrong type, e.g. epochs="x": bad input, one line
            raise ValueError(f"a --set value has the wrong type for its field ({err})") from None
        seeds = parse_seeds(args["seeds"]) if args.get("seeds") else None
        command = "python -m bintut " + shlex.join(sys.argv[1:])
        folder = record(configs, args["out"] or recorded_dir(), command, seeds)
        print(f"bintut: recorded {', '.join(configs)} in {folder}")
        return 0

    # Ctrl-C or SIGTERM: every finished run is recorded, the stage checkpointed
    return run_command(body, stopped=lambda signum: f"bintut: recording stopped by signal {signum}; what finished "
                       "is recorded, and the same command continues where it stopped")


@dataclass
class Recording:
    """A recording read back: per stage the metrics rows and config of its first seed (``metrics``,
    ``configs``), every seed's rows (``seeds``: stage -> seed -> rows), and the provenance."""

    folder: Path
    metrics: dict[str, list[dict[str, Any]]]
    configs: dict[str, dict[str, Any]]
    provenance: dict[str, Any]
    seeds: dict[str, dict[int, list[dict[str, Any]]]] = field(default_factory=dict)

    @property
    def data(self) -> str:
        """The data set's display name, e.g. 'Fashion-MNIST'."""
        return DATA_NAMES.get(self.configs["baseline"]["data"], self.configs["baseline"]["data"])

    @property
    def test_images(self) -> int:
        """How many test images every evaluation of the recording counted."""
        return int(self.metrics["baseline"][-1]["test_images"])

    def final(self, stage: str, key: str = "hard_acc") -> float:
        """A stage's (first seed's) last-epoch value of ``key``, in percent for accuracies."""
        value = self.metrics[stage][-1][key]
        return 100 * value if key.endswith("_acc") else value

    def finals(self, stage: str, key: str = "hard_acc") -> dict[int, float]:
        """Each seed's last-epoch value of ``key`` for a stage, in percent for accuracies (None stays None)."""
        scale = 100 if key.endswith("_acc") else 1
        return {seed: None if rows[-1].get(key) is None else scale * rows[-1][key]
                for seed, rows in self.seeds[stage].items()}

    def source(self) -> str:
        """One line of provenance: data, subset, machine, date, commit."""
        cfg, p = self.configs["baseline"], self.provenance
        sizes = f"{cfg['train_subset'] or 'all'} training / {cfg['test_subset'] or 'all'} test images"
        return (f"{self.data} ({sizes}), recorded {p.get('date', '?')} on {p.get('machine', '?')}, "
                f"commit {str(p.get('commit', '?'))[:10]}")


ROW_KEYS = ("epoch", "hard_acc", "soft_acc", "train_loss")  # what every recorded metrics row must hold


def _read_run(folder: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """One recorded run's metrics rows and config, checked in structure; RecordingError (one line) if damaged."""
    try:
        rows = read_metrics(folder / METRICS)
        config = json.loads((folder / CONFIG).read_text())
    except (OSError, ValueError) as err:  # MetricsError and JSONDecodeError are ValueErrors
        raise RecordingError(f"{folder}: damaged recording ({str(err).splitlines()[0]}); re-record it with "
                             "python -m bintut record") from None
    bad = [r for r in rows if not isinstance(r, dict) or any(k not in r for k in ROW_KEYS)
           or not all(isinstance(r[k], (int, float)) for k in ROW_KEYS)]
    if not rows or bad or not isinstance(config, dict) or "data" not in config:
        raise RecordingError(f"{folder}: damaged recording (a metrics row without {', '.join(ROW_KEYS)}, no rows, "
                             "or a config without its data set); re-record it with python -m bintut record")
    return rows, config


def _seed_folders(stage_folder: Path) -> dict[int, Path]:
    """A stage's runs by seed: its ``seed-<k>`` folders, or the stage folder itself (recordings before seeds)."""
    found = {}
    for child in sorted(stage_folder.glob("seed-*")):
        suffix = child.name.removeprefix("seed-")
        if child.is_dir() and suffix.isdigit() and all((child / n).is_file() for n in RECORD_FILES):
            found[int(suffix)] = child
    if not found and all((stage_folder / n).is_file() for n in RECORD_FILES):
        found[0] = stage_folder
    return found


def load_recording(data: str | None = None, folder: str | os.PathLike | None = None) -> Recording:
    """The recording of ``data`` under ``folder`` (default :func:`recorded_dir`).

    ``data=None`` takes CIFAR-100's recording where one was made (``make record`` with the data and a GPU),
    else the Fashion-MNIST recording that ships with bintut. Every file is checked in its structure before
    anything is derived from it: raises RecordingError (one line) when the recording is absent, has no baseline,
    or a file is damaged (torn, not JSON, rows without their accuracies).
    """
    if data is None:
        data = "cifar100" if (Path(folder or recorded_dir()) / "cifar100" / PROVENANCE).is_file() else "fashion-mnist"
    where = Path(folder or recorded_dir()) / data
    if not (where / PROVENANCE).is_file():
        raise RecordingError(f"no recording in {where} (make one with: python -m bintut record --data {data})")
    metrics, configs, seeds = {}, {}, {}
    for stage in RECORD_STAGES:
        runs = {seed: _read_run(path) for seed, path in _seed_folders(where / stage).items()}
        if runs:
            seeds[stage] = {seed: rows for seed, (rows, _) in runs.items()}
            metrics[stage], configs[stage] = runs[min(runs)]
    if "baseline" not in metrics:
        raise RecordingError(f"{where}: the recording holds no baseline stage")
    try:
        provenance = json.loads((where / PROVENANCE).read_text())
    except (OSError, ValueError) as err:
        raise RecordingError(f"{where / PROVENANCE}: damaged ({err})") from None
    if not isinstance(provenance, dict):
        raise RecordingError(f"{where / PROVENANCE}: damaged (not a JSON object)")
    return Recording(where, metrics, configs, provenance, seeds)


def recorded_rows(rec: Recording) -> list[dict[str, Any]]:
    """Results-table rows of a recording (one per stage, accuracies the mean over its seeds), labelled with their
    data set and provenance."""
    rows = []
    for stage, runs in rec.seeds.items():
        last = [r[-1] for r in runs.values()]

        def mean(key: str, last: list = last) -> float | str:
            values = [row.get(key) for row in last]
            return "n/a" if None in values else round(100 * sum(values) / len(values), 1)

        rows.append({
            "stage": stage, "trains": STAGE_TITLES[stage], "data": rec.data, "epochs": last[0]["epoch"],
            "seeds": len(runs), "hard %": mean("hard_acc"), "soft %": mean("soft_acc"),
            "deployed %": mean("deployed_acc"), "source": f"recorded {rec.provenance.get('date', '?')[:10]}",
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
         "seeds": 1, "hard %": "–", "soft %": fp, "deployed %": "–", "source": source,
         "comparable to published": "(is the published number)"},
        {"stage": "reference, end", "trains": "binary weights + int8 activations", "data": "CIFAR-100",
         "epochs": epoch_binary, "seeds": 1, "hard %": binary, "soft %": binary, "deployed %": "–", "source": source,
         "comparable to published": "(is the published number)"},
    ]

"""Binary activations from a finished ``both`` run: what each choice of int8 layers costs, on the run's own data.

    OMP_NUM_THREADS=1 python benchmarks/binact_from_run.py RUN_FOLDER [--steps 300] [--seed 0]

Loads the run (binary weights + int8 inputs, e.g. a recording's ``both`` stage: a workshop run on Fashion-MNIST),
evaluates it hard, then fine-tunes three copies with binary activations (bintut.teaching.binact.compare_int8_layers:
stem and head int8; head int8; none int8), --steps AdamW steps each while p = bin_ratio of the binary quantizers
rise, and prints a Markdown table of hard test accuracies with the command, machine, load average, date and the
wall time -- what notebook 09 quotes once such a run exists. Training images, test images, batch sizes and the loss
are the run's own (its saved configuration).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

from bintut.teaching.binact import compare_int8_layers
from bintut.teaching.stages import format_table
from bintut.training.runs import load_run


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown CPU"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", help="a finished run folder with binary weights and int8 inputs (the both stage)")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    started, load = time.perf_counter(), os.getloadavg()[0]
    run = load_run(args.run)
    rows, histories = compare_int8_layers(run, args.steps, seed=args.seed)
    seconds = time.perf_counter() - started
    print(f"`OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')} python {' '.join(sys.argv)}`; run "
          f"{Path(args.run).name} ({run.config.data}, {run.config.train_subset or 'all'} training images); "
          f"{cpu_model()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, load average {load:.2f} at the "
          f"start, {seconds:.0f} s wall\n")
    print(format_table(rows))
    for label, history in histories.items():
        print(f"\n{label}: final training loss {history[-1]['loss']:.3f} at p = {history[-1]['p']:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

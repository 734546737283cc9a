"""Benchmark: the deployed evaluation (the integer-only network in torch) against the hard evaluation.

    python benchmarks/deployed_eval.py RUN_FOLDER [RUN_FOLDER ...] [--repeats 3] [--device cpu]

For each finished run: on its whole test set, the seconds of one hard evaluation (float32 fake-quant,
``bintut.training.loop.evaluate``) and of one deployed evaluation (export + ``TorchIntegerResNet``,
``bintut.integer.torch_engine.deployed_accuracy``), best of ``--repeats``; both accuracies; the top-1 agreement of
the two networks; the largest logit difference; and how many images have a hard-mode top-2 gap larger than
twice that (for those the two must agree). Prints a Markdown table for docs/benchmarks.md. On a shared
machine use ``OMP_NUM_THREADS=1``.
"""

from __future__ import annotations

import argparse
import platform
import time

import torch
from torch.utils.data import DataLoader

from bintut.data.choice import load_data
from bintut.data.transforms import ImageDataset
from bintut.integer.engine import clear_margin
from bintut.integer.torch_engine import TorchIntegerResNet, deployed_accuracy
from bintut.quant import hard_mode
from bintut.teaching.stages import format_table
from bintut.training.export import export_run
from bintut.training.recipe import evaluate


def best_of(fn, repeats: int) -> tuple[float, dict]:
    times, result = [], {}
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return min(times), result


def measure(folder: str, repeats: int, device: torch.device) -> dict:
    exported = export_run(folder)  # refuses a run that never reached p = bin_ratio = 1; normalisation recorded
    run = exported.run
    model = run.model.to(device)
    _, test_set = load_data(run.config)
    loader = DataLoader(ImageDataset(test_set), batch_size=run.config.eval_batch_size)
    hard_s, hard = best_of(lambda: evaluate(model, loader, device, hard=True), repeats)
    deployed_s, deployed = best_of(lambda: deployed_accuracy(model, loader, device), repeats)
    images = torch.cat([x for x, _ in loader]).to(device)
    with torch.no_grad(), hard_mode(model):
        ref = model(images)
    net = TorchIntegerResNet(exported.export, device)
    logits, ref = net(images).cpu().numpy(), ref.cpu().numpy()
    largest, clear = clear_margin(ref, logits)
    return {
        "run": run.out.name, "data": run.config.data, "test images": hard["count"],
        "hard %": round(100 * hard["acc"], 2), "deployed %": round(100 * deployed["acc"], 2),
        "top-1 agreement %": round(100 * float((logits.argmax(1) == ref.argmax(1)).mean()), 2),
        "largest logit difference": round(largest, 4),
        "clear-margin images (agree)": f"{int(clear.sum())} "
        f"({'all agree' if (logits.argmax(1)[clear] == ref.argmax(1)[clear]).all() else 'DISAGREE'})",
        "hard eval s": round(hard_s, 3), "deployed eval s": round(deployed_s, 3),
        "deployed / hard": round(deployed_s / hard_s, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("runs", nargs="+", help="finished run folders")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device = torch.device(args.device)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"{torch.get_num_threads()} threads, device {device}\n")
    print(format_table([measure(folder, args.repeats, device) for folder in args.runs]))


if __name__ == "__main__":
    main()

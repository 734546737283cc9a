"""Profile the `fast` preset: one training epoch of a few binarizing steps, and one evaluation.

    python benchmarks/profile_epoch.py --out prof            # on a GPU: 6 steps of 512, evaluation of 2,000
    python benchmarks/profile_epoch.py --tiny --out prof     # on a CPU: checks that it runs

A first epoch (training, evaluation, checkpoint) compiles and warms up, untimed; then
``torch.profiler`` records the second epoch's training (``train_epoch``: augmentation, mixing,
controls, the compiled forward and backward, AdamW) and its evaluation (``evaluate_epoch``: hard and
soft, float32) separately. Writes the top-20 operators by self device time (by self CPU time without a
GPU) of each to ``OUT/profile_train_top20.txt`` and ``OUT/profile_eval_top20.txt``, and the training
trace to ``OUT/profile_train_trace.json.gz`` (open it in Perfetto or chrome://tracing). p = bin_ratio
= 0.5 throughout (the binarizing phase). Under ``torch.compile`` the quantizers' operators appear
fused inside inductor kernels (``triton_*`` on a GPU, ``cpp_fused_*`` on a CPU).

Last, ``OUT/tf32_check.txt``: whether the compiled evaluation graph honours ``ieee_float32`` (cuDNN
convolutions without TF32) at run time, or has the setting of its first trace baked in. One test batch
in hard mode: the largest |logit difference| of compiled against eager, both inside ``ieee_float32``,
and of each outside it (PyTorch's TF32 default) against eager inside; and the compilations the toggle
caused (dynamo does not guard on the cuDNN flag; 0 expected).
"""

from __future__ import annotations

import argparse
import gzip
import shutil
import tempfile
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile

from bintut.config import preset
from bintut.quant import hard_mode
from bintut.training.guard import StopRequest
from bintut.training.loop import evaluate_epoch, finish_epoch, open_session, train_epoch
from bintut.training.recipe import ieee_float32


def table(prof: profile, cuda: bool) -> str:
    averages = prof.key_averages()
    for key in (("self_device_time_total", "self_cuda_time_total") if cuda else ("self_cpu_time_total",)):
        try:
            return averages.table(sort_by=key, row_limit=20, max_name_column_width=70)
        except (AttributeError, KeyError):
            continue
    return averages.table(sort_by="self_cpu_time_total", row_limit=20, max_name_column_width=70)


@torch.no_grad()
def tf32_check(s) -> str:
    """Hard-mode logits of one test batch: compiled and eager, inside and outside ieee_float32."""
    from torch._dynamo.utils import counters

    x, _ = next(iter(s.test_loader))
    fmt = torch.channels_last if s.cfg.channels_last else torch.contiguous_format
    x = x.to(s.device, memory_format=fmt).float()
    s.model.eval()
    before = counters["frames"]["total"]
    with hard_mode(s.net):
        with ieee_float32():
            eager, compiled = s.net(x), s.model(x)
        eager_tf32, compiled_tf32 = s.net(x), s.model(x)  # outside: PyTorch's default (TF32 convs on a GPU)
    s.model.train()
    recompiles = counters["frames"]["total"] - before

    def gap(a: torch.Tensor) -> float:
        return (a.float() - eager.float()).abs().max().item()

    return (f"batch of {len(x)}, hard mode, largest |logit difference| from eager inside ieee_float32:\n"
            f"  compiled, inside ieee_float32:  {gap(compiled):.3e}\n"
            f"  eager, outside (TF32 default):  {gap(eager_tf32):.3e}\n"
            f"  compiled, outside:              {gap(compiled_tf32):.3e}\n"
            f"compilations caused by the toggle: {recompiles}\n"
            "Read: compiled-inside near 0 and compiled-outside near eager-outside: the flag is read at run time "
            "(not baked). compiled-outside near 0 while eager-outside is not: baked at the first trace.\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--steps", type=int, default=6, help="training steps in the profiled epoch")
    parser.add_argument("--test-images", type=int, default=2000, help="test images of the profiled evaluation")
    parser.add_argument("--out", default=".", help="folder for the tables and the trace")
    parser.add_argument("--tiny", action="store_true", help="CPU check: batches of 16, 16 test images, amp off")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    sizes = dict(batch_size=16, eval_batch_size=12, amp="off") if args.tiny else {}
    if args.tiny:
        args.device, args.test_images = "cpu", 16
    cuda = args.device.startswith("cuda")
    batch = sizes.get("batch_size", preset("fast").batch_size)
    with tempfile.TemporaryDirectory(prefix="bintut-profile-") as folder:
        cfg = preset("fast", data="synthetic", synthetic_train=args.steps * batch, synthetic_test=args.test_images,
                     data_root=str(Path(folder) / "data"), out=str(Path(folder) / "run"), epochs=2,
                     pretrained=False, progress=False, wandb="disabled", device=args.device,
                     **{k: 0.5 for k in ("weight_p", "weight_ratio", "act_p", "act_ratio")}, **sizes)
        s, _ = open_session(cfg)
        stop = StopRequest()
        try:
            finish_epoch(s, evaluate_epoch(s, train_epoch(s, stop)))  # compiles and warms up
            activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
            with profile(activities=activities) as train_prof:
                seconds = train_epoch(s, stop)
            with profile(activities=activities) as eval_prof:
                evaluate_epoch(s, seconds)
            tf32 = tf32_check(s)
        finally:
            if s.lock is not None:
                s.lock.release()
    device = torch.cuda.get_device_name() if cuda else "CPU"
    (out / "tf32_check.txt").write_text(f"{device}, torch {torch.__version__}\n{tf32}")
    head = (f"{device}, torch {torch.__version__}, fast preset, batch {cfg.batch_size}, p = bin_ratio = 0.5\n"
            f"training epoch of {args.steps} steps: {seconds:.3f} s wall inside the profiler\n\n")
    (out / "profile_train_top20.txt").write_text(head + table(train_prof, cuda))
    (out / "profile_eval_top20.txt").write_text(
        head.splitlines()[0] + f"\nevaluation (hard + soft) of {args.test_images} test images, batch "
        f"{cfg.eval_batch_size}\n\n" + table(eval_prof, cuda))
    trace = out / "profile_train_trace.json"
    train_prof.export_chrome_trace(str(trace))
    with trace.open("rb") as raw, gzip.open(f"{trace}.gz", "wb") as packed:
        shutil.copyfileobj(raw, packed)
    trace.unlink()
    print((out / "profile_train_top20.txt").read_text())
    print((out / "profile_eval_top20.txt").read_text())
    print((out / "tf32_check.txt").read_text())


if __name__ == "__main__":
    main()

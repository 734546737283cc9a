"""Helpers of the command-line tests (tests/entry)."""

from __future__ import annotations


def tiny_cli(data_dir, out) -> list[str]:
    """A seconds-long smoke run through the command line: one epoch on 32 synthetic images."""
    return ["train", "--preset", "smoke", "--data-root", str(data_dir), "--out", str(out), "--synthetic-train", "32",
            "--synthetic-test", "16", "--batch-size", "16", "--eval-batch-size", "16", "--epochs", "1",
            "--wandb", "disabled", "--no-progress", "--resume"]


# The integer layer's exports (calibrated random models, no training), for the export commands' file checks.
from ..integer.conftest import c_export, saved_export  # noqa: E402, F401

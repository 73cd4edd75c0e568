"""`videomae2` command line: one subcommand per job.

Each subcommand lives in its own module exposing ``add_arguments(parser)`` and ``run(args) -> int``;
the table below maps names to modules so that ``videomae2 --help`` imports nothing heavy.
"""

from __future__ import annotations

import argparse
import importlib
import sys

# name -> (module, one-line help)
COMMANDS: dict[str, tuple[str, str]] = {
    "test": ("videomae2.engine.evaluate", "test a model with the multi-view protocol"),
    "predict": ("videomae2.engine.predict", "predict the class of one video"),
    "convert": ("videomae2.checkpoint.cli", "convert a checkpoint between layouts"),
    "demo": ("videomae2.demo", "the whole system end to end on generated videos"),
    "make-dataset": ("videomae2.data.generated", "write a generated video dataset"),
    "pretrain": ("videomae2.engine.pretrain", "masked-autoencoder pretraining (dual masking)"),
    "finetune": ("videomae2.engine.finetune", "fine-tune a classifier (post-pretraining too)"),
    "distill": ("videomae2.engine.distill", "distill a frozen teacher into a student"),
    "make-index-map": ("videomae2.label_space", "label-space index lists / union label maps"),
    "extract-features": (
        "videomae2.engine.extract",
        "sliding-window features per video (.npy) for temporal action detection",
    ),
    "export": ("videomae2.export", "a classifier as a torch.export program (.pt2) or ONNX"),
    "visualize-mae": ("videomae2.visualize", "picture of an MAE reconstruction (PNG)"),
    "bench": ("videomae2.bench", "run a benchmark of benchmarks/, or compare two of its reports"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="videomae2", description="VideoMAE V2: models, checkpoints, testing, training."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())

"""``videomae2 convert SRC DST --to {safetensors,mmaction2,original,hf}``.

Reads any supported layout (detected from the key names), writes any other. Prints what it
detected, what it inferred about the architecture and anything lossy, so nothing is silent.
"""

from __future__ import annotations

import argparse
import sys

from videomae2.checkpoint.layouts import LAYOUTS

OUTPUTS = ("safetensors", "mmaction2", "original", "hf")

_EPILOG = """\
outputs:
  safetensors  this package's layout; the model config rides in the file's metadata, so
               videomae2.checkpoint.load_model(DST) rebuilds the model with no flags
  mmaction2    flat dict of backbone.* / cls_head.fc_cls.* tensors (torch.save), as mmaction2
               publishes (no backbone.pos_embed: the table is computed)
  original     {'module': state_dict} (torch.save), as the distilled VideoMAE V2 release
  hf           folder with config.json + model.safetensors for transformers'
               VideoMAEForVideoClassification / VideoMAEForPreTraining. HF has no layer
               scale: gammas are folded into the following dense rows (same outputs).
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG
    parser.add_argument("src", help="checkpoint: .pth/.pt/.bin/.safetensors file or HF folder")
    parser.add_argument("dst", help="output file (an output folder for --to hf)")
    parser.add_argument("--to", required=True, choices=OUTPUTS, help="output layout")
    parser.add_argument(
        "--model",
        default=None,
        metavar="NAME",
        help="registry name fixing the head count (heads are not in the weights); default: "
        "the registry size with the same width/depth",
    )
    parser.add_argument(
        "--head-map",
        default=None,
        metavar="FILE",
        help="JSON index list (e.g. label_710to400.json): new head = old head rows [map]",
    )
    parser.add_argument(
        "--layout", default=None, choices=LAYOUTS, help="source layout (default: detect)"
    )
    parser.add_argument(
        "--num-heads", type=int, default=None, help="head count for a non-registry width"
    )
    parser.add_argument("--num-frames", type=int, default=None, help="clip length (default 16)")
    parser.add_argument("--img-size", type=int, default=None, help="frame size (default 224)")


def run(args: argparse.Namespace) -> int:
    from videomae2.checkpoint.load import convert_checkpoint

    try:
        report = convert_checkpoint(
            args.src,
            args.dst,
            args.to,
            model_name=args.model,
            head_index=args.head_map,
            layout=args.layout,
            num_heads=args.num_heads,
            num_frames=args.num_frames,
            img_size=args.img_size,
        )
    except (ValueError, FileNotFoundError) as e:
        print(f"videomae2 convert: error: {e}", file=sys.stderr)
        return 1
    print(report)
    return 0

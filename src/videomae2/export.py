"""`videomae2 export`: a classifier checkpoint as a `torch.export` program (.pt2) or ONNX (.onnx).

    videomae2 export CKPT --out model.pt2                      # logits from normalised clips
    videomae2 export CKPT --out model.onnx --input uint8       # uint8 clips, normalised inside
    videomae2 export CKPT --out feats.pt2 --output features    # forward_features (fc_norm)

The batch dimension is dynamic; frames and size are the model's (`--frames` / `--size` for
another grid: the sinusoid table is rebuilt at export). After writing, the file is loaded again
and run on a batch of 3 random clips (a batch size other than the example's) and compared with
the eager model; the maximum difference is printed, and a difference above `--atol` is an error
(exit status 1; the file stays, for inspection). ONNX is checked with onnxruntime when it is
installed. Files are written under a temporary name and renamed.

The input / output contract travels with the file: `videomae2.json` inside the .pt2 (its
`extra_files`), a `videomae2` metadata entry in the ONNX model: input layout and dtype, the
normalisation, the output, the model config.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

import torch
from torch import nn

from videomae2.data.transforms import normalize
from videomae2.models.recognizer import MMACTION_MEAN, MMACTION_STD

FORMATS = {".pt2": "pt2", ".onnx": "onnx"}
OUTPUTS = ("logits", "features")
INPUTS = ("normalized", "uint8")
META_FILE = "videomae2.json"


class ExportWrapper(nn.Module):
    """`(B, 3, T, H, W)` -> logits or features; uint8 input is normalised inside (0-255 scale,
    mmaction2's mean/std, bit-exact with the test job's preprocessor)."""

    def __init__(self, model: nn.Module, output: str = "logits", input_kind: str = "normalized"):
        super().__init__()
        if output not in OUTPUTS or input_kind not in INPUTS:
            raise ValueError(f"output must be one of {OUTPUTS} and input one of {INPUTS}")
        self.model, self.output, self.input_kind = model, output, input_kind

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.input_kind == "uint8":
            x = normalize(x, MMACTION_MEAN, MMACTION_STD)  # the test pipeline's, bit-exact
        if self.output == "features":
            return self.model.forward_features(x)
        return self.model(x)


def example_input(input_kind: str, batch: int, frames: int, size: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    shape = (batch, 3, frames, size, size)
    if input_kind == "uint8":
        return torch.randint(0, 256, shape, generator=g, dtype=torch.uint8)
    return torch.randn(shape, generator=g)


def contract(wrapper: ExportWrapper, frames: int, size: int) -> dict:
    cfg = wrapper.model.config
    return dict(
        input=dict(
            name="x",
            shape=["batch", 3, frames, size, size],
            dtype="uint8" if wrapper.input_kind == "uint8" else "float32",
            layout="NCTHW, RGB",
            normalization=(
                dict(mean=MMACTION_MEAN, std=MMACTION_STD, scale="0-255", applied="inside")
                if wrapper.input_kind == "uint8"
                else "done by the caller: (x - mean) / std on the 0-255 scale, mean "
                f"{list(MMACTION_MEAN)}, std {list(MMACTION_STD)}"
            ),
        ),
        output=dict(
            name=wrapper.output,
            shape=["batch", cfg.num_classes if wrapper.output == "logits" else cfg.embed_dim],
            what="class logits (no softmax)"
            if wrapper.output == "logits"
            else "forward_features: fc_norm of the mean token",
        ),
        model_config=cfg.to_dict(),
    )


def _atomic_target(out: Path):
    """A fresh temporary folder beside `out`; the caller writes `tmp/<out.name>` (plus any
    sidecar such as ONNX external data, named after it) and `_publish` renames them."""
    out.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))


def _publish(tmp: Path, out: Path) -> list[Path]:
    written = []
    for f in sorted(tmp.iterdir()):
        dst = out.parent / f.name
        f.replace(dst)
        written.append(dst)
    tmp.rmdir()
    return written


def export_pt2(wrapper: ExportWrapper, example: torch.Tensor, out: Path, meta: dict) -> list[Path]:
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        program = torch.export.export(wrapper, (example,), dynamic_shapes={"x": {0: batch}})
    tmp = _atomic_target(out)
    torch.export.save(program, tmp / out.name, extra_files={META_FILE: json.dumps(meta)})
    return _publish(tmp, out)


def export_onnx(
    wrapper: ExportWrapper,
    example: torch.Tensor,
    out: Path,
    meta: dict,
    opset: int | None = None,
    external_data: bool | None = None,
) -> list[Path]:
    """`external_data` None: weights in a side file `<out>.data` past 1.5 GiB (protobuf's limit
    is 2 GiB: ViT-H and ViT-g need it), else inside the .onnx."""
    batch = torch.export.Dim("batch", min=1, max=1024)
    with torch.no_grad():
        program = torch.onnx.export(
            wrapper,
            (example,),
            dynamo=True,
            dynamic_shapes={"x": {0: batch}},
            input_names=["x"],
            output_names=[wrapper.output],
            opset_version=opset,
            verbose=False,
        )
    program.model.metadata_props["videomae2"] = json.dumps(meta)
    tmp = _atomic_target(out)
    if external_data is None:
        n_bytes = sum(p.numel() * p.element_size() for p in wrapper.parameters())
        external_data = n_bytes > 1.5 * 2**30
    program.save(str(tmp / out.name), external_data=external_data)
    return _publish(tmp, out)


def run_exported(path: Path, fmt: str, x: torch.Tensor) -> torch.Tensor | None:
    """The written file's output on `x`; None for ONNX without onnxruntime."""
    if fmt == "pt2":
        with torch.no_grad():
            return torch.export.load(path).module()(x)
    try:
        import onnxruntime as ort
    except ImportError:
        return None
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return torch.from_numpy(session.run(None, {"x": x.numpy()})[0])


def read_contract(path: str | os.PathLike) -> dict:
    """The `videomae2.json` contract stored in an exported .pt2 or .onnx file."""
    path = Path(path)
    if path.suffix == ".pt2":
        extra = {META_FILE: ""}
        torch.export.load(path, extra_files=extra)
        return json.loads(extra[META_FILE])
    import onnx

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return json.loads(props["videomae2"])


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a classifier checkpoint in any supported layout")
    parser.add_argument("--out", required=True, help="model.pt2 (torch.export) or model.onnx")
    parser.add_argument(
        "--arch", default=None, help="e.g. vit_base_patch16_224 (default: inferred)"
    )
    parser.add_argument("--output", choices=OUTPUTS, default="logits")
    parser.add_argument("--input", choices=INPUTS, default="normalized", dest="input_kind")
    parser.add_argument("--frames", type=int, default=None, help="default: the model's")
    parser.add_argument("--size", type=int, default=None, help="default: the model's")
    parser.add_argument("--opset", type=int, default=None, help="ONNX opset (default: exporter's)")
    parser.add_argument("--atol", type=float, default=1e-4, help="largest accepted difference")
    parser.add_argument("--no-verify", action="store_true", help="skip the reload-and-compare")


def run(args: argparse.Namespace) -> int:
    from videomae2.checkpoint import load_model

    out = Path(args.out)
    fmt = FORMATS.get(out.suffix.lower())
    if fmt is None:
        raise SystemExit(f"--out {out}: the suffix picks the format, one of {sorted(FORMATS)}")
    model = load_model(args.checkpoint, model_name=args.arch)
    if not hasattr(model, "forward_features"):
        raise SystemExit(
            f"{args.checkpoint}: export takes a classifier checkpoint, got {type(model).__name__}"
        )
    frames = args.frames or model.config.num_frames
    size = args.size or model.config.img_size
    wrapper = ExportWrapper(model.eval(), args.output, args.input_kind).eval()
    meta = contract(wrapper, frames, size)
    example = example_input(args.input_kind, 2, frames, size)  # 2: batch 1 would be specialised
    if fmt == "pt2":
        written = export_pt2(wrapper, example, out, meta)
    else:
        written = export_onnx(wrapper, example, out, meta, args.opset)
    print("wrote " + ", ".join(f"{p} ({p.stat().st_size / 2**20:.1f} MiB)" for p in written))
    if args.no_verify:
        return 0
    x = example_input(args.input_kind, 3, frames, size, seed=1)
    with torch.inference_mode():
        want = wrapper(x)
    got = run_exported(out, fmt, x)
    if got is None:
        print("not verified: onnxruntime is not installed (pip install onnxruntime)")
        return 0
    diff = (got.float() - want.float()).abs().max().item()
    print(f"verified: {out} on a batch of 3 vs the eager model, max |difference| {diff:.3g}")
    if not diff <= args.atol:
        print(f"difference {diff:.3g} is above --atol {args.atol}", file=sys.stderr)
        return 1
    return 0

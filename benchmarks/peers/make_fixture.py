"""Build a small, deterministic fixture for comparing our test protocol against mmaction2's.

Why: parity checks need inputs that exercise the protocol's edge cases (short videos that wrap,
61/62-frame boundaries, portrait and odd aspect ratios, B-frames) and a checkpoint in which every
tensor is random and non-trivial, so that a mis-mapped or silently skipped key changes the output.

Writes, under --out-dir (default .peers/fixture):
  videos/*.mp4              H.264 (libx264, yuv420p) clips with moving textured content
  list.txt                  mmaction2 list file: ``name.mp4 label``
  vit-{small,base}_random_mmaction2.pth
                            flat mmaction2-layout state_dicts (no backbone.pos_embed)
  fixture.json              per-video facts (size, fps, encoded/PyAV-decoded frames, sha256)

Runs with our venv (.venv/bin/python): needs numpy, PyAV, opencv and torch only.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, dataclass
from fractions import Fraction
from pathlib import Path

import av
import cv2
import numpy as np
import torch

# (name, width, height, frames, fps). Lengths cover: 40 (< 61: every clip wraps), 61 (exactly
# one clip span), 62 (offsets 0,0,0,1,1), 150 and 300 (round-half-to-even offsets).
VIDEOS: tuple[tuple[str, int, int, int, Fraction], ...] = (
    ("v00_340x256_n300", 340, 256, 300, Fraction(30)),
    ("v01_256x340_n150", 256, 340, 150, Fraction(30)),
    ("v02_224x224_n61", 224, 224, 61, Fraction(25)),
    ("v03_320x240_n62", 320, 240, 62, Fraction(30000, 1001)),
    ("v04_640x360_n40", 640, 360, 40, Fraction(30)),
    ("v05_340x256_n40", 340, 256, 40, Fraction(30)),
    ("v06_640x360_n300", 640, 360, 300, Fraction(30000, 1001)),
    ("v07_320x240_n150", 320, 240, 150, Fraction(25)),
)

# Model sizes in mmaction2's videomaev2 configs: (embed_dims, depth). Heads do not change shapes.
SIZES: dict[str, tuple[int, int]] = {"small": (384, 12), "base": (768, 12)}


@dataclass
class VideoFacts:
    """What a consumer needs to know about one fixture video."""

    name: str
    width: int
    height: int
    fps: str
    frames_encoded: int
    frames_container: int
    frames_pyav_decoded: int
    label: int
    sha256: str


def make_texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """Coloured band-limited noise plus stripes: enough detail that resize/crop errors show.

    Each video also gets its own tint and contrast: with random weights, mean pooling over 1568
    tokens averages most content away, so videos with the same global statistics would give
    nearly the same scores and the same top-1 class.
    """
    coarse = rng.integers(0, 256, size=(height // 8 + 2, width // 8 + 2, 3), dtype=np.uint8)
    smooth = cv2.resize(coarse, (width, height), interpolation=cv2.INTER_CUBIC).astype(np.float32)
    fine = rng.normal(0.0, 18.0, size=(height, width, 3)).astype(np.float32)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    stripes = 40.0 * np.sin(xx / 5.0 + yy / 11.0)[..., None] * np.array([1.0, -0.5, 0.7])
    tint = rng.uniform(-80.0, 80.0, size=3)
    contrast = rng.uniform(0.4, 1.1)
    image = 128.0 + contrast * (0.7 * smooth + fine + stripes - 128.0) + tint
    return np.clip(image, 0, 255).astype(np.uint8)


def render_frame(texture: np.ndarray, t: int, width: int, height: int) -> np.ndarray:
    """Frame t: a moving window into the texture, a moving box, and the frame index as bit bars.

    The bit bars (10 blocks of 16 px along the top) make every frame identifiable by eye or by
    code, so an off-by-one in frame indexing cannot hide behind similar-looking frames.
    """
    pad_y = texture.shape[0] - height
    pad_x = texture.shape[1] - width
    oy = round(float((pad_y / 2) * (1 + np.sin(t / 17.0))))
    ox = (3 * t) % (pad_x + 1)
    frame = texture[oy : oy + height, ox : ox + width].copy()
    bw, bh = max(width // 6, 8), max(height // 6, 8)
    bx = int((width - bw) * (0.5 + 0.5 * np.sin(t / 9.0)))
    by = int((height - bh) * (0.5 + 0.5 * np.cos(t / 13.0)))
    frame[by : by + bh, bx : bx + bw] = ((37 * t) % 256, (91 * t + 60) % 256, (13 * t + 200) % 256)
    for bit in range(10):
        value = 255 if (t >> bit) & 1 else 0
        frame[0:16, bit * 16 : bit * 16 + 16] = value
    return frame


def encode_video(path: Path, width: int, height: int, frames: int, fps: Fraction, seed: int) -> int:
    """Encode with libx264, reproducibly (see the options); return the number of frames written."""
    rng = np.random.default_rng(seed)
    texture = make_texture(rng, height + 64, width + 3 * frames + 16)
    written = 0
    with av.open(str(path), mode="w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.thread_count = 1
        # asm=0: with x264's SIMD paths about 1 run in 5 gave a different bitstream (same input,
        # threads=1), apparently from reads of uninitialised padding; the C paths are reproducible.
        stream.codec_context.options = {
            "crf": "20",
            "preset": "medium",
            "threads": "1",
            "x264-params": "asm=0",
        }
        for t in range(frames):
            image = av.VideoFrame.from_ndarray(render_frame(texture, t, width, height), "rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
            written += 1
        for packet in stream.encode(None):
            container.mux(packet)
    return written


def pyav_counts(path: Path) -> tuple[int, int]:
    """(container-declared frame count, frames actually decoded by PyAV)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        declared = int(stream.frames)
        decoded = sum(1 for _ in container.decode(stream))
    return declared, decoded


def sha256_file(path: Path) -> str:
    """Content hash, so reruns can be checked for bit-identical output."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def spec_state_shapes(
    embed_dims: int, depth: int, num_classes: int = 400, patch: int = 16, tubelet: int = 2
) -> list[tuple[str, tuple[int, ...]]]:
    """mmaction2 VideoMAE V2 classifier keys and shapes per spec model.md §5.1, in model order."""
    d, hidden = embed_dims, 4 * embed_dims
    shapes: list[tuple[str, tuple[int, ...]]] = [
        ("backbone.patch_embed.projection.weight", (d, 3, tubelet, patch, patch)),
        ("backbone.patch_embed.projection.bias", (d,)),
    ]
    for i in range(depth):
        b = f"backbone.blocks.{i}."
        shapes += [
            (b + "norm1.weight", (d,)),
            (b + "norm1.bias", (d,)),
            (b + "attn.q_bias", (d,)),
            (b + "attn.v_bias", (d,)),
            (b + "attn.qkv.weight", (3 * d, d)),
            (b + "attn.proj.weight", (d, d)),
            (b + "attn.proj.bias", (d,)),
            (b + "norm2.weight", (d,)),
            (b + "norm2.bias", (d,)),
            (b + "mlp.layers.0.0.weight", (hidden, d)),
            (b + "mlp.layers.0.0.bias", (hidden,)),
            (b + "mlp.layers.1.weight", (d, hidden)),
            (b + "mlp.layers.1.bias", (d,)),
        ]
    shapes += [
        ("backbone.fc_norm.weight", (d,)),
        ("backbone.fc_norm.bias", (d,)),
        ("cls_head.fc_cls.weight", (num_classes, d)),
        ("cls_head.fc_cls.bias", (num_classes,)),
    ]
    return shapes


def manifest_state_shapes(path: Path, size: str) -> list[tuple[str, tuple[int, ...]]]:
    """Keys and shapes reported by mmaction2's own model (mmaction2_reference.py --check-keys)."""
    entries = json.loads(path.read_text())[size]
    return [(k, tuple(s)) for k, s in entries if k != "backbone.pos_embed"]


def random_tensor(key: str, shape: tuple[int, ...], gen: torch.Generator) -> torch.Tensor:
    """Non-trivial values by role, so that no tensor can be skipped or swapped unnoticed."""
    noise = torch.randn(shape, generator=gen, dtype=torch.float32)
    if key.endswith(("norm1.weight", "norm2.weight", "fc_norm.weight")):
        return 1.0 + 0.1 * noise
    if key.endswith(("q_bias", "v_bias")):
        return 0.1 * noise
    if key == "cls_head.fc_cls.weight":
        return 0.05 * noise  # wider than the body so the 400-way softmax is not near-uniform
    return 0.02 * noise  # linear/conv weights and all other biases


def make_checkpoint(
    path: Path, size: str, seed: int, key_manifest: Path | None
) -> list[tuple[str, tuple[int, ...]]]:
    """Write a flat mmaction2-layout state_dict with every tensor random (no backbone.pos_embed)."""
    embed_dims, depth = SIZES[size]
    shapes = spec_state_shapes(embed_dims, depth)
    if key_manifest is not None:
        from_model = manifest_state_shapes(key_manifest, size)
        if from_model != shapes:
            missing = sorted(set(shapes) - set(from_model))
            extra = sorted(set(from_model) - set(shapes))
            raise ValueError(
                f"{key_manifest}: mmaction2's {size} keys differ from the spec table: "
                f"spec-only {missing[:5]}, model-only {extra[:5]}"
            )
        shapes = from_model
    gen = torch.Generator().manual_seed(seed)
    state = {key: random_tensor(key, shape, gen) for key, shape in shapes}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return shapes


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=Path(".peers/fixture"))
    parser.add_argument("--seed", type=int, default=0, help="base seed for videos and weights")
    parser.add_argument(
        "--sizes",
        nargs="*",
        default=["small"],
        choices=sorted(SIZES),
        help="checkpoints to write (default: small)",
    )
    parser.add_argument(
        "--key-manifest",
        type=Path,
        default=None,
        help="JSON of keys/shapes from mmaction2's own model "
        "(mmaction2_reference.py --check-keys --write-manifest); else the spec table",
    )
    parser.add_argument("--videos", type=int, default=len(VIDEOS), help="use the first N videos")
    parser.add_argument("--skip-videos", action="store_true", help="only write checkpoints")
    return parser.parse_args()


def main() -> None:
    """Write videos, list file, manifest and checkpoints."""
    args = parse_args()
    out: Path = args.out_dir
    video_dir = out / "videos"
    video_dir.mkdir(parents=True, exist_ok=True)
    if not args.skip_videos:
        label_rng = np.random.default_rng(args.seed + 1000)
        facts: list[VideoFacts] = []
        for idx, (name, w, h, n, fps) in enumerate(VIDEOS[: args.videos]):
            path = video_dir / f"{name}.mp4"
            written = encode_video(path, w, h, n, fps, seed=args.seed + idx)
            declared, decoded = pyav_counts(path)
            label = int(label_rng.integers(0, 400))
            facts.append(
                VideoFacts(
                    name, w, h, str(fps), written, declared, decoded, label, sha256_file(path)
                )
            )
            print(
                f"{path}: {w}x{h} fps {fps} encoded {written} container {declared} "
                f"pyav-decoded {decoded}"
            )
        (out / "list.txt").write_text("".join(f"{f.name}.mp4 {f.label}\n" for f in facts))
        (out / "fixture.json").write_text(json.dumps([asdict(f) for f in facts], indent=1) + "\n")
        print(f"wrote {out / 'list.txt'} ({len(facts)} videos) and {out / 'fixture.json'}")
    for size in args.sizes:
        ckpt = out / f"vit-{size}_random_mmaction2.pth"
        seed = args.seed + 10_000 + list(SIZES).index(size)  # independent of --sizes order
        shapes = make_checkpoint(ckpt, size, seed, args.key_manifest)
        n_params = sum(int(np.prod(s)) for _, s in shapes)
        print(f"wrote {ckpt}: {len(shapes)} tensors, {n_params:,} parameters")


if __name__ == "__main__":
    main()

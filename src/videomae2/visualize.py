"""MAE reconstruction picture: `videomae2 visualize-mae VIDEO --checkpoint CKPT --out recon.png`.

One PNG, one column per tubelet (its first frame), four rows:
1. the input frames;
2. what the encoder sees (hidden patches grey);
3. the decoder's output at every decoded position (grey where nothing is decoded);
4. visible patches + predictions for hidden-and-decoded patches (grey: hidden, not decoded).

With normalised targets the model predicts standardised patches, so each predicted patch is
re-scaled by the ORIGINAL patch's per-channel mean and (unbiased) std, as the original
visualisation does; the picture therefore borrows each patch's colour statistics from the input.

Shape legend: T frames, H/W pixels, C=3, p patch, u tubelet, N tokens, K = u·p·p pixels per token.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import nn

from videomae2.losses import IMAGENET_MEAN, IMAGENET_STD, patchify
from videomae2.masking import decoder_mask, encoder_mask

ROW_LABELS = ("input", "encoder sees", "decoder output", "visible + predicted")
GREY = 0.5


def _unpatchify(tokens: torch.Tensor, grid: tuple[int, int, int], p: int, u: int) -> torch.Tensor:
    """`(N, K, C)` -> `(T, H, W, C)`, the inverse of `losses.patchify` for one clip."""
    t, h, w = grid
    x = tokens.reshape(t, h, w, u, p, p, -1)  # (T', H', W', u, p, p, C)
    x = x.permute(0, 3, 1, 4, 2, 5, 6)  # (T', u, H', p, W', p, C)
    return x.reshape(t * u, h * p, w * p, -1)  # (T, H, W, C)


@torch.no_grad()
def reconstruct(
    model: nn.Module,
    video_uint8: np.ndarray | torch.Tensor,
    mask: torch.Tensor,
    decode_mask: torch.Tensor | None,
    *,
    normalize_target: bool = True,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> dict[str, np.ndarray]:
    """The four rows as `(T, H, W, 3)` uint8 arrays: input, visible, decoded, composite.

    `video_uint8 (T, H, W, 3)` at the model's clip size; `mask`/`decode_mask` `(N,)` or `(1, N)`.
    """
    cfg = model.config
    p, u = cfg.patch_size, cfg.tubelet_size
    device = next(model.parameters()).device
    frames = torch.as_tensor(np.asarray(video_uint8)).to(torch.float32) / 255  # (T, H, W, 3)
    T, H, W, _ = frames.shape
    grid = (T // u, H // p, W // p)
    m = torch.tensor(mean).view(3, 1, 1, 1)
    s = torch.tensor(std).view(3, 1, 1, 1)
    x = ((frames.permute(3, 0, 1, 2) - m) / s).unsqueeze(0)  # (1, 3, T, H, W) normalised
    mask = mask.reshape(1, -1).bool()
    dmask = None if decode_mask is None else decode_mask.reshape(1, -1).bool()
    decode_vis = mask if dmask is None else ~dmask
    was_training = model.training
    model.eval()
    pred = model(x.to(device), mask.to(device), None if dmask is None else dmask.to(device))
    model.train(was_training)
    patches = patchify(frames.permute(3, 0, 1, 2).unsqueeze(0), p, u)[0]  # (N, K, C) in [0, 1]
    k, c = patches.shape[1:]
    rec = pred[0].float().cpu().reshape(-1, k, c)  # (N_dec, K, C): channel-fastest features
    if normalize_target:
        ref = patches[decode_vis[0]]  # (N_dec, K, C) the original patches at decoded positions
        sd = ref.var(dim=-2, unbiased=True, keepdim=True).sqrt() + 1e-6
        rec = rec * sd + ref.mean(dim=-2, keepdim=True)
    grey = torch.full_like(patches, GREY)
    visible = torch.where(mask[0, :, None, None], grey, patches)
    decoded = grey.clone()
    decoded[decode_vis[0]] = rec
    composite = torch.where((mask & decode_vis)[0, :, None, None], decoded, visible)
    rows = dict(input=patches, visible=visible, decoded=decoded, composite=composite)
    return {
        name: (_unpatchify(v, grid, p, u).clamp(0, 1) * 255).round().to(torch.uint8).numpy()
        for name, v in rows.items()
    }


def reconstruction_grid(
    model: nn.Module,
    video_uint8: np.ndarray | torch.Tensor,
    mask: torch.Tensor,
    decode_mask: torch.Tensor | None,
    *,
    normalize_target: bool = True,
    frame_stride: int | None = None,
    min_size: int = 112,
    gap: int = 2,
) -> Image.Image:
    """The reconstruction figure (see the module docstring) as a PIL image.

    `frame_stride` defaults to the tubelet size (one column per token slot); frames smaller
    than `min_size` are enlarged with nearest-neighbour so patches stay crisp.
    """
    rows = reconstruct(model, video_uint8, mask, decode_mask, normalize_target=normalize_target)
    stride = frame_stride or model.config.tubelet_size
    T, H, W, _ = rows["input"].shape
    scale = max(1, -(-min_size // H))
    h, w = H * scale, W * scale
    cols = list(range(0, T, stride))
    label_w = 130
    canvas = Image.new("RGB", (label_w + len(cols) * (w + gap), len(rows) * (h + gap)), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (label, frames) in enumerate(zip(ROW_LABELS, rows.values())):
        y = r * (h + gap)
        draw.text((4, y + h // 2 - 6), label, fill="black")
        for j, t in enumerate(cols):
            img = Image.fromarray(frames[t]).resize((w, h), Image.NEAREST)
            canvas.paste(img, (label_w + j * (w + gap), y))
    return canvas


# ---------------------------------------------------------------------------------------- CLI


def load_pretrain_model(path: str, arch: str | None = None) -> tuple[nn.Module, bool]:
    """A pretraining model from a `videomae2 pretrain` checkpoint or any pretraining file the
    checkpoint loader understands (original layout, HF). Returns (model, normalize_target)."""
    from videomae2.checkpoint.io import read_checkpoint_file
    from videomae2.engine.pretrain import CHECKPOINT_FORMAT
    from videomae2.models.pretrain import PretrainConfig, PretrainVisionTransformer

    raw = read_checkpoint_file(path).obj
    if isinstance(raw, dict) and raw.get("format") == CHECKPOINT_FORMAT:
        model = PretrainVisionTransformer(PretrainConfig.from_dict(dict(raw["model_config"])))
        model.load_state_dict(raw["model"])
        return model.eval(), bool(raw["config"]["train"]["normalize_target"])
    from videomae2.checkpoint.load import load_model

    model = load_model(path, model_name=arch)
    if not isinstance(model, PretrainVisionTransformer):
        raise ValueError(f"{path} holds a classifier, not a pretraining model (no decoder)")
    return model.eval(), True


def clip_from_video(path: str, num_frames: int, size: int, sampling_rate: int) -> np.ndarray:
    """A centred clip at `sampling_rate`, short side resized to `size`, centre-cropped."""
    from videomae2.data.decode import open_video, read_frames
    from videomae2.data.transforms import center_crop, resize_short_side

    n = open_video(path).num_frames
    span = (num_frames - 1) * sampling_rate + 1
    start = max(0, (n - span) // 2)
    idx = np.minimum(start + np.arange(num_frames) * sampling_rate, n - 1)
    return center_crop(resize_short_side(read_frames(path, idx), size), size)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("video", help="a video file")
    parser.add_argument("--checkpoint", required=True, help="pretraining checkpoint")
    parser.add_argument("--out", default="recon.png", help="output PNG")
    parser.add_argument("--arch", default=None, help="registry name, if the file is ambiguous")
    parser.add_argument("--mask-ratio", type=float, default=0.9)
    parser.add_argument("--mask-type", default="tube", choices=["tube", "random"])
    parser.add_argument("--decoder-mask-ratio", type=float, default=0.5)
    parser.add_argument("--decoder-mask-type", default="run_cell", choices=["run_cell", "none"])
    parser.add_argument("--sampling-rate", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)


def run(args: argparse.Namespace) -> int:
    model, normalize_target = load_pretrain_model(args.checkpoint, args.arch)
    cfg = model.config
    clip = clip_from_video(args.video, cfg.num_frames, cfg.img_size, args.sampling_rate)
    g = torch.Generator().manual_seed(args.seed)
    mask = encoder_mask(args.mask_type, 1, model.grid, args.mask_ratio, g)
    dmask = decoder_mask(args.decoder_mask_type, mask, model.grid, args.decoder_mask_ratio, g)
    image = reconstruction_grid(model, clip, mask, dmask, normalize_target=normalize_target)
    image.save(args.out)
    print(f"wrote {args.out} ({image.width}x{image.height})")
    return 0

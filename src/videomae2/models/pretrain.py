"""The VideoMAE V2 pretraining model: masked encoder + light decoder (spec pretraining.md §3, §6).

Shape legend: B batch, C=3, T frames, H/W pixels, p patch, (T', H', W') token grid,
N = T'·H'·W' tokens, D encoder width, Dd decoder width, N_vis tokens visible to the encoder,
N_dec tokens the decoder reconstructs, P = 3·tubelet·p·p predicted values per token.

Input `videos (B, 3, T, H, W)` normalised; `mask (B, N)` bool (True = hidden from the encoder);
`decode_mask (B, N)` bool (True = NOT decoded; None = decode every hidden token, VideoMAE v1).
Output `(B, N_dec, P)`. No loss inside: `videomae2.losses.pretrain_loss`.

The state-dict layout is the original's (spec model.md §5.3), so published pretraining files load
with a strict `load_state_dict`: `encoder.*` (the classifier's sub-keys + `encoder.norm`),
`encoder_to_decoder.weight`, `mask_token`, `decoder.blocks.j.*`, `decoder.norm.*`,
`decoder.head.*`; no position tables.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from videomae2.models.layers import Block, init_linear_xavier, sinusoid_table
from videomae2.models.vit import VisionTransformer, ViTConfig

# Decoder width and heads per size (spec pretraining.md §6); the decoder MLP uses the encoder's
# mlp_ratio (ViT-g: int(512 · 48/11) = 2234).
_DECODER_DIMS: dict[str, dict] = {
    "small": dict(decoder_embed_dim=192, decoder_num_heads=3),
    "base": dict(decoder_embed_dim=384, decoder_num_heads=6),
    "large": dict(decoder_embed_dim=512, decoder_num_heads=8),
    "huge": dict(decoder_embed_dim=512, decoder_num_heads=8),
    "giant": dict(decoder_embed_dim=512, decoder_num_heads=8),
}


def decoder_dims(size: str) -> dict:
    """Decoder width/heads of a registry size ('small' ... 'giant')."""
    if size not in _DECODER_DIMS:
        raise ValueError(f"unknown size {size!r}; known: {sorted(_DECODER_DIMS)}")
    return dict(_DECODER_DIMS[size])


@dataclass
class PretrainConfig:
    """Every architectural choice of the pretraining model.

    `decoder_depth` defaults to 4: the original class default is 8, but every released script
    passes `--decoder_depth 4` and the published files have 4 decoder blocks.
    """

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    norm_eps: float = 1e-6
    init_values: float = 0.0
    num_frames: int = 16
    tubelet_size: int = 2
    decoder_embed_dim: int = 384
    decoder_depth: int = 4
    decoder_num_heads: int = 6
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} not divisible by heads {self.num_heads}")
        if self.decoder_embed_dim % self.decoder_num_heads:
            raise ValueError(
                f"decoder_embed_dim {self.decoder_embed_dim} not divisible by "
                f"decoder_num_heads {self.decoder_num_heads}"
            )

    @property
    def out_dim(self) -> int:
        """Predicted values per token: 3 · tubelet · p · p (1536 for p16, 1176 for p14)."""
        return self.in_chans * self.tubelet_size * self.patch_size**2

    def encoder_config(self) -> ViTConfig:
        """The classifier config whose blocks/patch embed/norm the encoder reuses (no head)."""
        shared = {f.name for f in dataclasses.fields(ViTConfig)} & set(dataclasses.asdict(self))
        values = {k: getattr(self, k) for k in shared}
        return ViTConfig(**values, num_classes=0, use_mean_pooling=False)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> PretrainConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown PretrainConfig keys {unknown}; known: {sorted(known)}")
        return cls(**d)


def _run_blocks(blocks: nn.ModuleList, x: torch.Tensor, use_checkpoint: bool) -> torch.Tensor:
    for blk in blocks:
        if use_checkpoint and torch.is_grad_enabled():
            x = checkpoint(blk, x, use_reentrant=False)
        else:
            x = blk(x)
    return x


class PretrainDecoder(nn.Module):
    """Decoder blocks, then norm + head on the last `n_out` tokens (the mask tokens)."""

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__()
        Dd = cfg.decoder_embed_dim
        hidden = int(Dd * cfg.mlp_ratio)
        # numpy, not torch.linspace: this must also run under `with torch.device('meta')`.
        dpr = [float(r) for r in np.linspace(0, cfg.drop_path_rate, cfg.decoder_depth)]
        self.blocks = nn.ModuleList(
            Block(
                Dd,
                cfg.decoder_num_heads,
                hidden,
                cfg.qkv_bias,
                cfg.qk_scale,
                cfg.drop_rate,
                cfg.attn_drop_rate,
                dpr[i],
                cfg.init_values,
                cfg.norm_eps,
            )
            for i in range(cfg.decoder_depth)
        )
        self.norm = nn.LayerNorm(Dd, eps=cfg.norm_eps)
        self.head = nn.Linear(Dd, cfg.out_dim)
        self.grad_checkpointing = cfg.grad_checkpointing

    def forward(self, x: torch.Tensor, n_out: int) -> torch.Tensor:
        x = _run_blocks(self.blocks, x, self.grad_checkpointing)  # (B, N_vis + N_dec, Dd)
        return self.head(self.norm(x[:, -n_out:]))  # (B, N_dec, P)


def _count_per_sample(keep: torch.Tensor, what: str) -> int:
    """The common per-sample count of True entries in `keep (B, N)`; all samples must agree."""
    counts = keep.sum(dim=1)  # (B,)
    if counts.numel() and bool((counts != counts[0]).any()):
        raise ValueError(
            f"every sample must have the same number of {what} tokens (the batch is packed "
            f"without padding), got per-sample counts {counts.tolist()}"
        )
    return int(counts[0]) if counts.numel() else 0


class PretrainVisionTransformer(nn.Module):
    """Encoder on visible tokens, decoder on [visible | mask tokens at decoded positions]."""

    def __init__(self, cfg: PretrainConfig) -> None:
        super().__init__()
        self.config = cfg
        self.encoder = VisionTransformer(cfg.encoder_config())
        self.grid = self.encoder.grid
        n = self.grid[0] * self.grid[1] * self.grid[2]
        self.encoder_to_decoder = nn.Linear(cfg.embed_dim, cfg.decoder_embed_dim, bias=False)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, cfg.decoder_embed_dim))
        self.decoder = PretrainDecoder(cfg)
        # Same sinusoid function at the decoder width; computed, never stored (like the encoder's).
        table = sinusoid_table(n, cfg.decoder_embed_dim)
        self.register_buffer("decoder_pos_table", table, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The original pretraining init (spec §6); also re-initialises after `to_empty`."""
        self.encoder.patch_embed.proj.reset_parameters()  # Conv3d: PyTorch default
        self.encoder.apply(init_linear_xavier)
        self.decoder.apply(init_linear_xavier)
        self.encoder_to_decoder.reset_parameters()  # PyTorch default Linear init
        nn.init.trunc_normal_(self.mask_token, std=0.02, a=-0.02, b=0.02)
        # Parameters the blocks create filled (not via an init function): needed after to_empty.
        for name, param in self.named_parameters():
            if name.endswith(("q_bias", "v_bias")):
                param.zero_()
            elif name.endswith(("gamma_1", "gamma_2")):
                param.fill_(self.config.init_values)
        self.reset_pos_tables()

    @torch.no_grad()
    def reset_pos_tables(self) -> None:
        """Recompute the non-persistent tables (e.g. after `to_empty` from the meta device)."""
        self.encoder.reset_pos_table()
        n = self.grid[0] * self.grid[1] * self.grid[2]
        table = sinusoid_table(n, self.config.decoder_embed_dim)
        self.decoder_pos_table = table.to(self.decoder_pos_table.device)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.encoder.set_grad_checkpointing(enable)
        self.decoder.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        """Names the original excludes from weight decay besides 1-D tensors and biases."""
        return {"pos_embed", "cls_token", "mask_token"}

    def _decoder_table(self, grid: tuple[int, int, int]) -> torch.Tensor:
        if grid == self.grid:
            return self.decoder_pos_table
        return sinusoid_table(grid[0] * grid[1] * grid[2], self.config.decoder_embed_dim)

    def forward(
        self,
        videos: torch.Tensor,
        mask: torch.Tensor,
        decode_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """`(B, 3, T, H, W)`, `(B, N)`, `(B, N)` or None -> `(B, N_dec, P)`."""
        B = videos.shape[0]
        grid = self.encoder.patch_embed.grid(*videos.shape[2:])
        n = grid[0] * grid[1] * grid[2]
        if mask.shape != (B, n):
            raise ValueError(
                f"mask must be (B, N) = ({B}, {n}) for this input, got {tuple(mask.shape)}"
            )
        mask = mask.to(device=videos.device, dtype=torch.bool)
        # v1 mode: decode exactly the hidden tokens.
        decode_vis = mask if decode_mask is None else ~decode_mask.to(videos.device, torch.bool)
        if decode_vis.shape != (B, n):
            raise ValueError(
                f"decode_mask must be (B, N) = ({B}, {n}), got {tuple(decode_vis.shape)}"
            )
        visible = ~mask
        n_vis = _count_per_sample(visible, "encoder-visible")
        n_dec = _count_per_sample(decode_vis, "decoded")

        enc = self.encoder
        x = enc.patch_embed(videos)  # (B, N, D)
        x = x + enc.position_table(grid).to(dtype=x.dtype, device=x.device).detach()
        x = enc.pos_drop(x)
        # Boolean indexing keeps ascending token order, as the original.
        x = x[visible].reshape(B, n_vis, -1)  # (B, N_vis, D)
        x = _run_blocks(enc.blocks, x, enc.grad_checkpointing)
        x = enc.norm(x)
        x = self.encoder_to_decoder(x)  # (B, N_vis, Dd)

        table = self._decoder_table(grid).to(dtype=x.dtype, device=x.device).detach()
        table = table.expand(B, -1, -1)  # (B, N, Dd)
        pos_vis = table[visible].reshape(B, n_vis, -1)  # (B, N_vis, Dd)
        pos_dec = table[decode_vis].reshape(B, n_dec, -1)  # (B, N_dec, Dd)
        # No un-shuffling: visible tokens first, then mask tokens at every decoded position.
        x = torch.cat([x + pos_vis, self.mask_token.to(x.dtype) + pos_dec], dim=1)
        return self.decoder(x, n_dec)  # (B, N_dec, P)

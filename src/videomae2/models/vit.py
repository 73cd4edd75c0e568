"""The VideoMAE V2 ViT classifier backbone (spec/model.md).

Shape legend: B batch, C=3, T frames, H/W pixels, N = T'·H'·W' tokens, D width.
Input `(B, 3, T, H, W)` normalised float; `forward_features` -> `(B, D)`;
`forward` -> `(B, classes)`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from videomae2.models.layers import (
    Block,
    PatchEmbed,
    init_linear_trunc_normal,
    resize_pos_table,
    sinusoid_table,
)

POS_INTERP_MODES = ("sinusoid", "bicubic")


@dataclass
class ViTConfig:
    """Every architectural choice of the classifier; stored in checkpoints as metadata."""

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 3
    num_classes: int = 400
    embed_dim: int = 768
    depth: int = 12
    num_heads: int = 12
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    qk_scale: float | None = None
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    head_drop_rate: float = 0.0
    norm_eps: float = 1e-6
    init_values: float = 0.0
    init_scale: float = 0.0
    use_learnable_pos_emb: bool = False
    use_mean_pooling: bool = True
    num_frames: int = 16
    tubelet_size: int = 2
    pos_interp: str = "sinusoid"  # for inputs of another size: "sinusoid" rebuild or "bicubic"
    grad_checkpointing: bool = False

    def __post_init__(self) -> None:
        if self.pos_interp not in POS_INTERP_MODES:
            raise ValueError(
                f"pos_interp must be one of {POS_INTERP_MODES}, got {self.pos_interp!r}"
            )
        if self.embed_dim % self.num_heads:
            raise ValueError(f"embed_dim {self.embed_dim} not divisible by heads {self.num_heads}")

    @property
    def mlp_hidden(self) -> int:
        return int(self.embed_dim * self.mlp_ratio)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ViTConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown ViTConfig keys {unknown}; known: {sorted(known)}")
        return cls(**d)


class VisionTransformer(nn.Module):
    """ViT over tubelet tokens with a fixed 1-D sinusoid table, mean pooling + fc_norm, a head."""

    def __init__(self, cfg: ViTConfig) -> None:
        super().__init__()
        self.config = cfg
        D = cfg.embed_dim
        self.num_features = self.embed_dim = D
        self.patch_embed = PatchEmbed(cfg.patch_size, cfg.tubelet_size, cfg.in_chans, D)
        self.grid = self.patch_embed.grid(cfg.num_frames, cfg.img_size, cfg.img_size)
        n = self.grid[0] * self.grid[1] * self.grid[2]
        if cfg.use_learnable_pos_emb:
            self.pos_embed = nn.Parameter(torch.zeros(1, n, D))
        else:
            self.register_parameter("pos_embed", None)
        # Not stored in state dicts: a loaded table must equal this one (checkpoint/ checks it).
        self.register_buffer("pos_table", sinusoid_table(n, D), persistent=False)
        self.pos_drop = nn.Dropout(cfg.drop_rate)
        dpr = [float(r) for r in np.linspace(0, cfg.drop_path_rate, cfg.depth)]
        self.blocks = nn.ModuleList(
            Block(
                D,
                cfg.num_heads,
                cfg.mlp_hidden,
                cfg.qkv_bias,
                cfg.qk_scale,
                cfg.drop_rate,
                cfg.attn_drop_rate,
                dpr[i],
                cfg.init_values,
                cfg.norm_eps,
            )
            for i in range(cfg.depth)
        )
        # Mean pooling uses fc_norm and no final norm; the first-token path uses norm only.
        pool = cfg.use_mean_pooling
        self.norm = nn.Identity() if pool else nn.LayerNorm(D, eps=cfg.norm_eps)
        self.fc_norm = nn.LayerNorm(D, eps=cfg.norm_eps) if pool else None
        self.head_dropout = nn.Dropout(cfg.head_drop_rate)
        self.head = nn.Linear(D, cfg.num_classes) if cfg.num_classes > 0 else nn.Identity()
        self.grad_checkpointing = cfg.grad_checkpointing
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """The original fine-tuning model's initialisation (head scaled by `init_scale`)."""
        if self.pos_embed is not None:
            nn.init.trunc_normal_(self.pos_embed, std=0.02, a=-2.0, b=2.0)
        self.apply(init_linear_trunc_normal)
        if isinstance(self.head, nn.Linear):
            self.head.weight.mul_(self.config.init_scale)
            self.head.bias.mul_(self.config.init_scale)
        self.reset_pos_table()

    @torch.no_grad()
    def reset_pos_table(self) -> None:
        """Recompute the non-persistent table (e.g. after `to_empty` from the meta device)."""
        n = self.grid[0] * self.grid[1] * self.grid[2]
        self.pos_table = sinusoid_table(n, self.embed_dim).to(self.pos_table.device)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        self.grad_checkpointing = enable

    def no_weight_decay(self) -> set[str]:
        return {"pos_embed"}

    def position_table(self, grid: tuple[int, int, int]) -> torch.Tensor:
        """`(1, N, D)` table for a token grid; rebuilt or interpolated for a non-build grid."""
        base = self.pos_table if self.pos_embed is None else self.pos_embed
        if grid == self.grid:
            return base
        if self.config.pos_interp == "bicubic" or self.pos_embed is not None:
            return resize_pos_table(base, self.grid, grid)
        return sinusoid_table(grid[0] * grid[1] * grid[2], self.embed_dim).to(base.device)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Patch embedding + position table + blocks: `(B, 3, T, H, W)` -> `(B, N, D)`."""
        grid = self.patch_embed.grid(*x.shape[2:])
        x = self.patch_embed(x)  # (B, N, D)
        x = x + self.position_table(grid).to(dtype=x.dtype, device=x.device).detach()
        x = self.pos_drop(x)
        for blk in self.blocks:
            if self.grad_checkpointing and torch.is_grad_enabled():
                x = checkpoint(blk, x, use_reentrant=False)
            else:
                x = blk(x)
        return x

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.tokens(x)  # (B, N, D)
        if self.fc_norm is not None:
            return self.fc_norm(x.mean(dim=1))  # (B, D)
        return self.norm(x)[:, 0]  # first PATCH token: no CLS exists (the original's quirk)

    def forward_head(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(self.head_dropout(feats))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

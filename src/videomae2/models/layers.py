"""Building blocks of the VideoMAE V2 ViT (spec/model.md §2).

Shape legend: B batch, C channels (3), T frames, H/W pixels, N tokens, D width, h heads,
hd head width (D / h), T'/H'/W' token grid (T / tubelet, H / p, W / p).

Parameter names follow the original VideoMAE V2 code exactly, so the original checkpoint layout is
this package's internal layout and its converter is the identity.
"""

from __future__ import annotations

import functools

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


@functools.lru_cache(maxsize=32)
def _sinusoid_table_np(n_position: int, dim: int) -> np.ndarray:
    # float64 like the original (numpy), interleaved sin/cos: channel j uses exponent 2*(j//2)/dim.
    pos = np.arange(n_position, dtype=np.float64)[:, None]
    j = np.arange(dim)
    angle = pos / np.power(10000.0, 2 * (j // 2) / dim)[None, :]
    table = np.where(j % 2 == 0, np.sin(angle), np.cos(angle)).astype(np.float32)
    table.setflags(write=False)
    return table


def sinusoid_table(n_position: int, dim: int) -> torch.Tensor:
    """The fixed 1-D sinusoid position table, `(1, N, D)` float32 on the CPU (never stored)."""
    return torch.from_numpy(_sinusoid_table_np(n_position, dim).copy()).unsqueeze(0)


def resize_pos_table(
    table: torch.Tensor, src_grid: tuple[int, int, int], dst_grid: tuple[int, int, int]
) -> torch.Tensor:
    """mmaction2's spatial resize of a `(1, T'*H'*W', D)` table: bicubic over (H', W') per slot.

    The temporal size cannot change (mmaction2 raises there too).
    """
    t, h, w = src_grid
    t2, h2, w2 = dst_grid
    if t != t2:
        raise ValueError(
            f"bicubic position interpolation keeps the frame count: built for {t} token slots, "
            f"got {t2}; use pos_interp='sinusoid' to rebuild the table for another frame count"
        )
    d = table.shape[-1]
    x = table.reshape(t, h, w, d).permute(0, 3, 1, 2)  # (T', D, H', W')
    x = F.interpolate(x.float(), size=(h2, w2), mode="bicubic", align_corners=False)
    return x.permute(0, 2, 3, 1).reshape(1, t2 * h2 * w2, d).to(table.dtype)


# oneDNN's fused linear, the op torch.compile's CPU backend emits (private; absent without oneDNN).
_MKLDNN_LINEAR = torch.backends.mkldnn.is_available() and hasattr(
    torch.ops.mkldnn, "_linear_pointwise"
)


def _onednn_bf16(x: torch.Tensor, weight: torch.Tensor) -> bool:
    """Whether `linear` runs oneDNN's fused bf16 kernel: CPU inference in bf16 (or bf16 autocast).

    Inference only: the op has no autograd formula. Under autocast it computes what autocast would
    (bf16 operands, fp32 accumulation). fp32 keeps ATen's MKL GEMM: measured as fast as oneDNN's
    at these shapes, and bit-identical to the training path. Not under torch.compile, which
    fuses by itself (and whose lowering of this op expects weights it packed).
    """
    if not _MKLDNN_LINEAR or x.device.type != "cpu" or torch.is_grad_enabled():
        return False
    if torch.compiler.is_compiling():
        return False
    if torch.is_autocast_enabled("cpu"):
        return torch.get_autocast_dtype("cpu") == torch.bfloat16
    return x.dtype == weight.dtype == torch.bfloat16


def linear(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gelu: bool = False
) -> torch.Tensor:
    """`F.linear`, then the exact GELU if `gelu`, with faster kernels for CPU inference.

    bf16: oneDNN adds the bias (and applies the GELU) in the GEMM epilogue, where ATen's addmm
    first copies the bias into the output (measured: 30-45% of a bf16 GEMM at ViT-S/B shapes) and
    the GELU is another pass. fp32 without autograd: the GELU runs in place, which saves
    allocating and page-faulting a second (B, N, hidden) tensor; values are unchanged.
    """
    if _onednn_bf16(x, weight):
        b = None if bias is None else bias.to(torch.bfloat16)
        attr, algorithm = ("gelu", "none") if gelu else ("none", "")
        x, weight = x.to(torch.bfloat16), weight.to(torch.bfloat16)
        return torch.ops.mkldnn._linear_pointwise(x, weight, b, attr, [], algorithm)
    y = F.linear(x, weight, bias)
    if not gelu:
        return y
    return F.gelu(y) if torch.is_grad_enabled() else torch.ops.aten.gelu_(y)


class PatchEmbed(nn.Module):
    """Tubelet embedding: Conv3d with kernel = stride = (tubelet, p, p)."""

    def __init__(self, patch_size: int, tubelet_size: int, in_chans: int, embed_dim: int) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.tubelet_size = tubelet_size
        k = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_chans, embed_dim, kernel_size=k, stride=k)

    def grid(self, t: int, h: int, w: int) -> tuple[int, int, int]:
        p, tt = self.patch_size, self.tubelet_size
        if t % tt or h % p or w % p:
            raise ValueError(
                f"input (T, H, W) = ({t}, {h}, {w}) must be divisible by the tubelet/patch "
                f"({tt}, {p}, {p})"
            )
        return t // tt, h // p, w // p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if _onednn_bf16(x, self.proj.weight):
            return self._forward_as_linear(x)
        x = self.proj(x)  # (B, D, T', H', W')
        # Contiguous (B, N, D): a transposed view would make every later elementwise op keep that
        # layout and every LayerNorm copy it (24 copies per ViT-S forward).
        return x.flatten(2).transpose(1, 2).contiguous()  # (B, N, D), token order (t, h, w)

    def _forward_as_linear(self, x: torch.Tensor) -> torch.Tensor:
        """The same conv as a GEMM over gathered patches: kernel = stride and no padding make
        them equal. Taken for bf16 CPU inference, where oneDNN's bf16 conv with 3 input channels
        runs at a fraction of the bf16 GEMM speed (measured 2.3x slower for ViT-S)."""
        B, C, T, H, W = x.shape
        t, p = self.tubelet_size, self.patch_size
        x = x.to(torch.bfloat16)  # before the gather: half the bytes to move
        x = x.reshape(B, C, T // t, t, H // p, p, W // p, p).permute(0, 2, 4, 6, 1, 3, 5, 7)
        x = x.reshape(B, -1, C * t * p * p)  # (B, N, C*t*p*p), token order (t, h, w)
        return linear(x, self.proj.weight.flatten(1), self.proj.bias)  # (B, N, D)


class Attention(nn.Module):
    """Multi-head self-attention with q/v bias and a zero, parameter-free k bias."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = head_dim or dim // num_heads
        inner = self.head_dim * num_heads
        self.scale = qk_scale or self.head_dim**-0.5
        self.qkv = nn.Linear(dim, inner * 3, bias=False)
        if qkv_bias:
            self.q_bias = nn.Parameter(torch.zeros(inner))
            self.v_bias = nn.Parameter(torch.zeros(inner))
        else:
            self.register_parameter("q_bias", None)
            self.register_parameter("v_bias", None)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(inner, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def qkv_bias(self) -> torch.Tensor | None:
        if self.q_bias is None:
            return None
        return torch.cat((self.q_bias, torch.zeros_like(self.v_bias), self.v_bias))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, N, _ = x.shape
        qkv = linear(x, self.qkv.weight, self.qkv_bias())  # (B, N, 3*h*hd)
        qkv = qkv.reshape(B, N, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        if qkv.device.type == "cpu" and qkv.dtype == torch.float32:
            # The fp32 CPU flash kernel is ~10% faster on dense (B, h, N, hd) blocks than on views
            # with a 3*h*hd row stride; the copy costs less than that (values are unchanged).
            # Not in bf16, where the kernel is bound by its exponentials and the copy would not
            # pay for itself.
            qkv = qkv.contiguous()
        q, k, v = qkv.unbind(0)  # each (B, h, N, hd)
        x = F.scaled_dot_product_attention(
            q, k, v, dropout_p=self.attn_drop if self.training else 0.0, scale=self.scale
        )  # (B, h, N, hd)
        x = x.transpose(1, 2).reshape(B, N, -1)
        return self.proj_drop(linear(x, self.proj.weight, self.proj.bias))


class Mlp(nn.Module):
    """fc1 -> exact GELU -> fc2 -> dropout; the Linear modules hold the parameters, `forward`
    applies them through `linear` (fused inference kernels)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if type(self.act) is nn.GELU and self.act.approximate == "none":
            h = linear(x, self.fc1.weight, self.fc1.bias, gelu=True)
        else:  # a replaced activation cannot be fused
            h = self.act(linear(x, self.fc1.weight, self.fc1.bias))
        return self.drop(linear(h, self.fc2.weight, self.fc2.bias))


class DropPath(nn.Module):
    """Per-sample stochastic depth; kept samples are divided by the keep probability."""

    def __init__(self, drop_prob: float) -> None:
        super().__init__()
        self.drop_prob = drop_prob

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.drop_prob == 0.0:
            return x
        keep = 1.0 - self.drop_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep

    def extra_repr(self) -> str:
        return f"drop_prob={self.drop_prob}"


class Block(nn.Module):
    """Pre-norm transformer block with optional layer scale (`gamma_1`, `gamma_2`)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_hidden: int,
        qkv_bias: bool = True,
        qk_scale: float | None = None,
        drop: float = 0.0,
        attn_drop: float = 0.0,
        drop_path: float = 0.0,
        init_values: float = 0.0,
        norm_eps: float = 1e-6,
        head_dim: int | None = None,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=norm_eps)
        self.attn = Attention(dim, num_heads, qkv_bias, qk_scale, attn_drop, drop, head_dim)
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()
        self.norm2 = nn.LayerNorm(dim, eps=norm_eps)
        self.mlp = Mlp(dim, mlp_hidden, drop)
        if init_values > 0:
            self.gamma_1 = nn.Parameter(init_values * torch.ones(dim))
            self.gamma_2 = nn.Parameter(init_values * torch.ones(dim))
        else:
            self.gamma_1 = self.gamma_2 = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gamma_1 is None:
            x = x + self.drop_path(self.attn(self.norm1(x)))
            return x + self.drop_path(self.mlp(self.norm2(x)))
        x = x + self.drop_path(self.gamma_1 * self.attn(self.norm1(x)))
        return x + self.drop_path(self.gamma_2 * self.mlp(self.norm2(x)))


def init_linear_trunc_normal(module: nn.Module) -> None:
    """The fine-tuning model's init: Linear trunc_normal(0.02, bounds ±2), zero bias, LN 1/0."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def init_linear_xavier(module: nn.Module) -> None:
    """The pretraining model's init: Linear xavier_uniform, zero bias, LN 1/0."""
    if isinstance(module, nn.Linear):
        nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)

"""Shared builders for the checkpoint tests: tiny models with every tensor random.

A uniquely named module rather than a conftest, so test files can import it without clashing
with other test folders.

Random biases and LayerNorm affines matter: with the default init (zero biases, unit LN) a
converter that drops or swaps a bias would still pass a logit comparison.
"""

from __future__ import annotations

import torch

import videomae2

TINY = dict(embed_dim=64, depth=2, num_heads=2, num_frames=4, img_size=32, patch_size=16)


@torch.no_grad()
def randomize(model: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Every parameter random and non-trivial (biases, LN affines, q/v biases, gammas)."""
    g = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        r = torch.randn(p.shape, generator=g)
        if "gamma" in name:
            p.copy_(0.5 + r.abs() * 0.5)
        elif p.ndim == 1 and "norm" in name and name.endswith("weight"):
            p.copy_(1.0 + 0.1 * r)
        elif p.ndim == 1:
            p.copy_(0.1 * r)
        else:
            p.copy_(0.05 * r)
    return model


def tiny(seed: int = 0, **overrides) -> videomae2.VisionTransformer:
    cfg = {**TINY, "num_classes": 10, **overrides}
    return randomize(videomae2.create_model("vit_small_patch16_224", **cfg), seed).eval()


def uninitialised(name: str, **overrides) -> videomae2.VisionTransformer:
    """A model with garbage weights, fast (no 2 s trunc_normal init); for tests that load all."""
    with torch.device("meta"):
        model = videomae2.create_model(name, **overrides)
    model = model.to_empty(device="cpu")
    model.reset_pos_table()  # the computed table is not a parameter: rebuild it
    return model.eval()


def clip(model, batch: int = 1, seed: int = 1) -> torch.Tensor:
    """A random normalised clip `(B, 3, T, H, W)` of the model's build size."""
    c = model.config
    g = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, c.num_frames, c.img_size, c.img_size, generator=g)


def pretrain_state_dict(
    dim: int = 64, depth: int = 2, dec_dim: int = 32, dec_depth: int = 1, seed: int = 3
) -> dict[str, torch.Tensor]:
    """An original-layout pretraining state dict written by hand from spec/model.md §5.3."""
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s: torch.randn(*s, generator=g) * 0.1  # noqa: E731
    sd = {"encoder.patch_embed.proj.weight": rnd(dim, 3, 2, 16, 16)}
    sd["encoder.patch_embed.proj.bias"] = rnd(dim)

    def block(prefix: str, d: int) -> None:
        for ln in ("norm1", "norm2"):
            sd[f"{prefix}{ln}.weight"] = 1 + rnd(d)
            sd[f"{prefix}{ln}.bias"] = rnd(d)
        sd[f"{prefix}attn.q_bias"] = rnd(d)
        sd[f"{prefix}attn.v_bias"] = rnd(d)
        sd[f"{prefix}attn.qkv.weight"] = rnd(3 * d, d)
        sd[f"{prefix}attn.proj.weight"] = rnd(d, d)
        sd[f"{prefix}attn.proj.bias"] = rnd(d)
        sd[f"{prefix}mlp.fc1.weight"] = rnd(4 * d, d)
        sd[f"{prefix}mlp.fc1.bias"] = rnd(4 * d)
        sd[f"{prefix}mlp.fc2.weight"] = rnd(d, 4 * d)
        sd[f"{prefix}mlp.fc2.bias"] = rnd(d)

    for i in range(depth):
        block(f"encoder.blocks.{i}.", dim)
    sd["encoder.norm.weight"] = 1 + rnd(dim)
    sd["encoder.norm.bias"] = rnd(dim)
    sd["encoder_to_decoder.weight"] = rnd(dec_dim, dim)
    sd["mask_token"] = rnd(1, 1, dec_dim)
    for j in range(dec_depth):
        block(f"decoder.blocks.{j}.", dec_dim)
    sd["decoder.norm.weight"] = 1 + rnd(dec_dim)
    sd["decoder.norm.bias"] = rnd(dec_dim)
    sd["decoder.head.weight"] = rnd(3 * 2 * 16 * 16, dec_dim)
    sd["decoder.head.bias"] = rnd(3 * 2 * 16 * 16)
    return sd


def assert_same_tensors(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k in a:
        assert a[k].dtype == b[k].dtype, k
        assert torch.equal(a[k], b[k]), k

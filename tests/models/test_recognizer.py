"""Recognizer: normalisation on the 0-255 scale, view batching, aggregation."""

import pytest
import torch

from videomae2.models.recognizer import Recognizer, aggregate_views
from videomae2.models.vit import VisionTransformer, ViTConfig


def make(**kw) -> Recognizer:
    torch.manual_seed(0)
    cfg = ViTConfig(img_size=32, embed_dim=32, depth=1, num_heads=2, num_frames=4, num_classes=6)
    model = VisionTransformer(cfg).eval()
    with torch.no_grad():
        model.head.weight.normal_()
    return Recognizer(model, **kw).eval()


def test_aggregation_modes():
    logits = torch.randn(2, 15, 6)
    prob = aggregate_views(logits, "prob")
    assert torch.allclose(prob, torch.softmax(logits, -1).mean(1))
    assert torch.allclose(prob.sum(-1), torch.ones(2))
    assert torch.allclose(aggregate_views(logits, "score"), logits.mean(1))
    assert aggregate_views(logits, None) is logits
    with pytest.raises(ValueError, match="average_clips"):
        aggregate_views(logits, "avg")


def test_normalize_is_mmaction2_formula():
    rec = make()
    x = torch.randint(0, 256, (1, 2, 3, 4, 32, 32), dtype=torch.uint8)
    mean = torch.tensor([123.675, 116.28, 103.53]).view(3, 1, 1, 1)
    std = torch.tensor([58.395, 57.12, 57.375]).view(3, 1, 1, 1)
    assert torch.equal(rec.normalize(x), (x.float() - mean) / std)


def test_views_are_aggregated_per_video_and_chunking_is_invisible():
    x = torch.randint(0, 256, (2, 3, 3, 4, 32, 32), dtype=torch.uint8)
    rec = make()
    with torch.no_grad():
        scores = rec(x)
        per_view = torch.stack(
            [rec.model(rec.normalize(x[b, v : v + 1]))[0] for b in range(2) for v in range(3)]
        ).view(2, 3, 6)
        chunked = make(max_views_per_forward=2)(x)
    assert scores.shape == (2, 6)
    assert torch.allclose(scores, per_view.softmax(-1).mean(1), atol=1e-6)
    assert torch.allclose(scores, chunked, atol=1e-6)
    assert make(average_clips=None)(x).shape == (2, 3, 6)


def test_callers_autocast_reaches_the_backbone():
    """Without its own autocast dtype the recognizer must not switch off the caller's autocast
    (an `autocast(enabled=False)` inside would silently make `--bf16` an fp32 run)."""
    x = torch.randint(0, 256, (1, 2, 3, 4, 32, 32), dtype=torch.uint8)
    rec = make(average_clips=None)
    with torch.inference_mode():
        fp32 = rec(x)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            outer = rec(x)
        rec.autocast_dtype = torch.bfloat16
        inner = rec(x)
    assert not torch.equal(fp32, outer)  # bf16 rounding shows
    assert torch.allclose(fp32, outer, atol=0.1, rtol=0.05)
    assert torch.equal(outer, inner)  # the same autocast, from outside or inside

"""pretrain_loss: an independent loop implementation, token selection, batch pooling."""

import statistics

import pytest
import torch

from videomae2.losses import IMAGENET_MEAN, IMAGENET_STD, pretrain_loss, pretrain_targets
from videomae2.masking import running_cell_mask, tube_mask


def loop_targets(videos, p, u, normalize):
    """Token targets written out pixel by pixel: feature ((dt·p + dy)·p + dx)·3 + c."""
    B, C, T, H, W = videos.shape
    out = torch.zeros(B, (T // u) * (H // p) * (W // p), u * p * p * C, dtype=torch.float64)
    for b in range(B):
        token = 0
        for t in range(T // u):
            for h in range(H // p):
                for w in range(W // p):
                    for c in range(C):
                        vals = []
                        for dt in range(u):
                            for dy in range(p):
                                for dx in range(p):
                                    v = float(videos[b, c, t * u + dt, h * p + dy, w * p + dx])
                                    vals.append(v * IMAGENET_STD[c] + IMAGENET_MEAN[c])
                        if normalize:
                            mu = statistics.fmean(vals)
                            sd = statistics.stdev(vals)  # unbiased
                            vals = [(v - mu) / (sd + 1e-6) for v in vals]
                        for k, v in enumerate(vals):
                            out[b, token, k * C + c] = v
                    token += 1
    return out


def loop_loss(videos, pred, mask, decode_mask, p, u, normalize):
    target = loop_targets(videos, p, u, normalize)
    num = den = 0.0
    for b in range(pred.shape[0]):
        decoded = [i for i in range(mask.shape[1]) if not decode_mask[b, i]]
        for j, i in enumerate(decoded):
            if mask[b, i]:
                err = sum(
                    (float(pred[b, j, f]) - float(target[b, i, f])) ** 2
                    for f in range(pred.shape[2])
                )
                num += err / pred.shape[2]
                den += 1
    return num / den


@pytest.mark.parametrize("normalize", [True, False])
def test_loss_equals_loop_computation(normalize):
    torch.manual_seed(0)
    p, u, grid = 4, 2, (2, 2, 2)
    videos = torch.randn(2, 3, 4, 8, 8)
    g = torch.Generator().manual_seed(3)
    mask = tube_mask(2, grid, 0.5, g)
    dmask = running_cell_mask(2, grid, 0.5, g)
    n_dec = int((~dmask[0]).sum())
    pred = torch.randn(2, n_dec, 3 * u * p * p)
    got = pretrain_loss(
        videos, pred, mask, dmask, patch_size=p, tubelet_size=u, normalize_target=normalize
    )
    want = loop_loss(videos, pred, mask, dmask, p, u, normalize)
    assert got.dtype == torch.float32
    assert got.item() == pytest.approx(want, rel=1e-5)
    targets = pretrain_targets(
        videos, patch_size=p, tubelet_size=u, normalize_target=normalize
    ).double()
    torch.testing.assert_close(targets, loop_targets(videos, p, u, normalize), atol=1e-5, rtol=1e-5)


def test_loss_tokens_vit_b_and_g():
    """Only tokens hidden from the encoder AND decoded count: 704 of 784 (p16), 920 of 1024."""
    for grid, p, n_dec, n_loss in [((8, 14, 14), 16, 784, 704), ((8, 16, 16), 14, 1024, 920)]:
        g = torch.Generator().manual_seed(0)
        mask = tube_mask(2, grid, 0.9, g)
        dmask = running_cell_mask(2, grid, 0.5, g)
        videos = torch.randn(2, 3, 16, 224, 224)
        target = pretrain_targets(videos, patch_size=p)  # (B, N, P)
        labels = target[~dmask].reshape(2, n_dec, -1)
        in_loss = mask[~dmask].reshape(2, n_dec)
        assert in_loss.sum(1).tolist() == [n_loss, n_loss]
        # error 1 on loss tokens, a huge error on decoded-but-visible ones: the latter are ignored
        pred = labels + torch.where(in_loss, 1.0, 1e6)[..., None]
        assert pretrain_loss(videos, pred, mask, dmask, patch_size=p).item() == pytest.approx(1.0)
        assert labels.shape[-1] == 3 * 2 * p * p


def test_v1_mode_is_plain_mse_over_hidden_tokens():
    grid = (2, 2, 2)
    g = torch.Generator().manual_seed(0)
    mask = tube_mask(3, grid, 0.5, g)
    videos = torch.randn(3, 3, 4, 32, 32)
    pred = torch.randn(3, 4, 1536)
    target = pretrain_targets(videos)[mask].reshape(3, 4, -1)
    loss = pretrain_loss(videos, pred, mask)
    torch.testing.assert_close(loss, torch.nn.functional.mse_loss(pred, target))
    torch.testing.assert_close(loss, pretrain_loss(videos, pred, mask, ~mask))


def test_loss_is_pooled_over_the_batch():
    """Σ(l·lm)/Σ(lm) over all samples, not the mean of per-sample means."""
    videos = torch.randn(2, 3, 2, 32, 32)  # grid (1, 2, 2), 4 tokens
    dmask = torch.zeros(2, 4, dtype=torch.bool)  # decode everything
    mask = torch.tensor([[True, False, False, False], [True, True, True, False]])
    target = pretrain_targets(videos)
    pred = target.clone()
    pred[0] += 3.0  # per-token error 9 on sample 0 (1 loss token), 0 on sample 1 (3 tokens)
    loss = pretrain_loss(videos, pred, mask, dmask)
    assert loss.item() == pytest.approx(9.0 / 4)


def test_bf16_prediction_and_gradient():
    videos = torch.randn(1, 3, 2, 32, 32)
    mask = torch.tensor([[True, False, True, False]])
    pred = torch.randn(1, 2, 1536, dtype=torch.bfloat16, requires_grad=True)
    loss = pretrain_loss(videos, pred, mask)
    assert loss.dtype == torch.float32
    loss.backward()
    assert pred.grad is not None and pred.grad.dtype == torch.bfloat16
    with pytest.raises(ValueError, match="prediction width"):
        pretrain_loss(videos, torch.randn(1, 2, 100), mask)

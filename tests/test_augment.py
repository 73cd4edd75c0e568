"""Video augmentation: every random decision is per clip, applied identically to every frame."""

import math

import numpy as np
import pytest
import torch

from videomae2.augment import (
    CLASSIC_OPS,
    INCREASING_OPS,
    ErasingParams,
    MixParams,
    MixSettings,
    RandAugmentParams,
    apply_mix,
    apply_rand_augment,
    erase_cube,
    mix_batch,
    mixup_targets,
    parse_rand_augment,
    resized_crop,
    sample_erasing_box,
    sample_mix,
    sample_rand_augment,
)
from videomae2.data.finetune_datasets import FinetuneDataset, LabeledVideo, tsn_train_indices


def moving_clip(t: int = 6, h: int = 40, w: int = 48, seed: int = 0) -> np.ndarray:
    """(T, H, W, 3) uint8 whose frames all differ (a drifting pattern)."""
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, (h, w + t, 3), dtype=np.uint8)
    return np.stack([base[:, i : i + w] for i in range(t)])


def test_parse_rand_augment_spec():
    p = parse_rand_augment("rand-m7-n4-mstd0.5-inc1", translate_const=100)
    assert (p.magnitude, p.num_ops, p.magnitude_std, p.increasing) == (7.0, 4, 0.5, True)
    assert p.prob == 0.5 and p.translate_const == 100 and p.fill == (128, 128, 128)
    q = parse_rand_augment("rand-m9-n2-inc0-p1.0-mmax8")
    assert (q.magnitude, q.num_ops, q.increasing, q.prob, q.magnitude_max) == (9, 2, False, 1, 8)
    for bad in ("auto-m7", "rand-x3", "rand-m"):
        with pytest.raises(ValueError):
            parse_rand_augment(bad)


def test_rand_augment_plan_is_drawn_once_and_reproducible():
    params = RandAugmentParams(num_ops=4, prob=1.0)
    a = sample_rand_augment(params, np.random.default_rng(3))
    b = sample_rand_augment(params, np.random.default_rng(3))
    assert a == b and len(a) == 4
    assert all(name in INCREASING_OPS for name, _ in a)
    # prob 0.5: over many clips about half the drawn ops apply
    counts = [
        len(sample_rand_augment(RandAugmentParams(), np.random.default_rng(i))) for i in range(400)
    ]
    assert 1.8 < np.mean(counts) < 2.2


def test_magnitude_mapping_at_fixed_level():
    # mstd 0: every argument is the level-7 value (signs random where the op has a direction)
    params = RandAugmentParams(num_ops=50, prob=1.0, magnitude_std=0.0, translate_const=100)
    plan = sample_rand_augment(params, np.random.default_rng(0))
    expected = {
        "Rotate": 21.0,
        "ShearX": 0.21,
        "ShearY": 0.21,
        "TranslateX": 70.0,
        "TranslateY": 70.0,
        "PosterizeIncreasing": 2.0,  # 4 - int(2.8)
        "SolarizeIncreasing": 77.0,  # 256 - int(179.2)
        "SolarizeAdd": 77.0,  # int(77.0)
    }
    seen_signs = set()
    for name, arg in plan:
        if name in expected:
            assert abs(arg) == pytest.approx(expected[name]), name
            seen_signs.add(np.sign(arg))
        elif name.endswith("Increasing"):  # enhancement factor 1 ± 0.63
            assert abs(arg - 1) == pytest.approx(0.63)
        else:
            assert arg is None
    assert seen_signs == {1.0, -1.0}


@pytest.mark.parametrize("ops", [INCREASING_OPS, CLASSIC_OPS], ids=["inc1", "inc0"])
def test_every_op_is_identical_across_frames(ops):
    """Each op at a random magnitude: frame t of the augmented clip == the op on frame t alone,
    and a clip of identical frames stays a clip of identical frames."""
    frames = moving_clip()
    still = np.repeat(frames[:1], 4, axis=0)
    rng = np.random.default_rng(1)
    params = RandAugmentParams(num_ops=1, prob=1.0, increasing=ops is INCREASING_OPS)
    for name in ops:
        plan = None
        while plan is None or plan[0][0] != name:
            plan = sample_rand_augment(params, rng)
        out = apply_rand_augment(frames, plan)
        for t in range(len(frames)):
            np.testing.assert_array_equal(out[t], apply_rand_augment(frames[t : t + 1], plan)[0])
        out_still = apply_rand_augment(still, plan)
        assert all(np.array_equal(out_still[0], f) for f in out_still), name


def test_full_recipe_plan_shared_by_all_frames():
    frames = moving_clip(t=8)
    still = np.repeat(frames[:1], 8, axis=0)
    params = parse_rand_augment("rand-m7-n4-mstd0.5-inc1", translate_const=int(0.45 * 40))
    changed = 0
    for seed in range(20):
        plan = sample_rand_augment(params, np.random.default_rng(seed))
        out = apply_rand_augment(still, plan)
        assert all(np.array_equal(out[0], f) for f in out)
        changed += not np.array_equal(out[0], still[0])
    assert changed >= 15  # the ops really do something


def test_geometric_ops_fill_grey():
    img = np.full((1, 20, 20, 3), 10, np.uint8)
    out = apply_rand_augment(img, [("TranslateX", 10.0)])
    assert (out[0, :, -5:] == 128).all() and (out[0, :, :5] == 10).all()


def test_resized_crop_same_box_every_frame():
    clip = torch.from_numpy(moving_clip(t=5)).permute(3, 0, 1, 2).float()  # (3, T, H, W)
    out = resized_crop(clip, (4, 6, 20, 30), 16, flip=True)
    assert out.shape == (3, 5, 16, 16)
    for t in range(5):
        one = resized_crop(clip[:, t : t + 1], (4, 6, 20, 30), 16, flip=True)
        torch.testing.assert_close(out[:, t : t + 1], one, rtol=0, atol=0)
    same = resized_crop(clip[:, :1].expand(3, 5, 40, 48), (0, 0, 40, 48), 40)
    assert torch.equal(same[:, 0], same[:, 4])


def test_random_erasing_cube_same_box_fresh_noise():
    clip = torch.zeros(3, 6, 32, 40)
    p = ErasingParams(prob=1.0)
    out = erase_cube(clip, p, np.random.default_rng(0))
    erased = out != 0  # (3, T, H, W)
    boxes = erased.any(dim=0)  # (T, H, W)
    assert boxes.any()
    for t in range(1, 6):
        assert torch.equal(boxes[t], boxes[0])  # the same rectangle on every frame
        assert not torch.equal(out[:, t][erased[:, t]], out[:, 0][erased[:, 0]])  # fresh noise
    ys, xs = torch.nonzero(boxes[0], as_tuple=True)
    area = (ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1)
    assert int(boxes[0].sum()) == int(area)  # a rectangle
    # determinism and probability
    assert torch.equal(out, erase_cube(clip, p, np.random.default_rng(0)))
    hits = sum(
        bool((erase_cube(clip, ErasingParams(), np.random.default_rng(i)) != 0).any())
        for i in range(400)
    )
    assert 70 < hits < 130  # p = 0.25


def test_erasing_box_area_and_aspect():
    p = ErasingParams()
    for i in range(200):
        box = sample_erasing_box(100, 120, p, np.random.default_rng(i))
        assert box is not None
        y, x, eh, ew = box
        assert 0 <= y <= 100 - eh and 0 <= x <= 120 - ew
        assert 0.015 < eh * ew / (100 * 120) < 0.36
        assert 0.25 < eh / ew < 3.5


def test_cutmix_box_is_shared_across_frames():
    g = torch.Generator().manual_seed(0)
    clips = torch.randn(4, 3, 5, 16, 20, generator=g)
    labels = torch.tensor([0, 1, 2, 3])
    params = MixParams(lam=0.7, box=(3, 11, 5, 15))
    mixed, targets = apply_mix(clips, labels, params, num_classes=4, smoothing=0.0)
    inside = torch.zeros(16, 20, dtype=torch.bool)
    inside[3:11, 5:15] = True
    for i in range(4):
        for t in range(5):  # every frame: the partner's pixels inside the box, own outside
            frame, own, other = mixed[i, :, t], clips[i, :, t], clips[3 - i, :, t]
            assert torch.equal(frame[:, inside], other[:, inside])
            assert torch.equal(frame[:, ~inside], own[:, ~inside])
    assert torch.allclose(targets[0], torch.tensor([0.7, 0, 0, 0.3]))


def test_sample_mix_batch_mode():
    s = MixSettings()
    n_cut = 0
    for i in range(300):
        p = sample_mix(s, 16, 20, np.random.default_rng(i))
        assert 0 <= p.lam <= 1
        if p.box is not None:
            n_cut += 1
            y0, y1, x0, x1 = p.box
            assert 0 <= y0 <= y1 <= 16 and 0 <= x0 <= x1 <= 20
            # lam corrected to the area actually kept
            assert p.lam == pytest.approx(1 - (y1 - y0) * (x1 - x0) / (16 * 20))
    assert 110 < n_cut < 190  # switch prob 0.5
    assert sample_mix(MixSettings(prob=0.0), 8, 8, np.random.default_rng(0)).lam == 1.0
    only_mixup = MixSettings(cutmix_alpha=0.0)
    assert all(
        sample_mix(only_mixup, 8, 8, np.random.default_rng(i)).box is None for i in range(50)
    )


def test_mixup_targets_and_label_smoothing():
    labels = torch.tensor([1, 0, 2, 2])
    t = mixup_targets(labels, 3, lam=1.0, smoothing=0.1)
    assert torch.allclose(t[0], torch.tensor([0.1 / 3, 1 - 0.1 + 0.1 / 3, 0.1 / 3]))
    t = mixup_targets(labels, 3, lam=0.6, smoothing=0.0)
    assert torch.allclose(t[0], torch.tensor([0.0, 0.6, 0.4]))  # partner of 0 is 3 (label 2)
    assert torch.allclose(t.sum(1), torch.ones(4))
    clips = torch.randn(4, 3, 2, 8, 8)
    mixed, targets, _ = mix_batch(clips, labels, MixSettings(), 3, np.random.default_rng(0))
    assert mixed.shape == clips.shape and torch.allclose(targets.sum(1), torch.ones(4))
    with pytest.raises(ValueError, match="even"):
        mix_batch(clips[:3], labels[:3], MixSettings(), 3, np.random.default_rng(0))
    mixup = MixParams(lam=0.25)
    m, _ = apply_mix(clips, labels, mixup, 3, 0.1)
    torch.testing.assert_close(m, 0.25 * clips + 0.75 * clips.flip(0))


# ------------------------------------------------------------------ the training dataset


class StillVideo:
    """An injected decoder: every frame of video i is the same random image (a still clip)."""

    def __init__(self, n_frames: int = 50) -> None:
        self.n = n_frames
        self.reads: list[np.ndarray] = []

    def info(self, path: str):
        return type("Info", (), {"num_frames": self.n})()

    def read(self, path: str, idx: np.ndarray) -> np.ndarray:
        self.reads.append(np.asarray(idx))
        seed = int(path.split("_")[-1])
        img = np.random.default_rng(seed).integers(0, 256, (36, 44, 3), dtype=np.uint8)
        return np.repeat(img[None], len(idx), axis=0)


def make_ds(video: StillVideo, **kw) -> FinetuneDataset:
    items = [LabeledVideo(f"v_{i}", i % 3) for i in range(6)]
    base = dict(
        clip_len=4,
        frame_interval=2,
        input_size=24,
        num_sample=2,
        rand_augment=parse_rand_augment("rand-m7-n4-mstd0.5-inc1", translate_const=10),
        erasing=None,
        seed=5,
        info_fn=video.info,
        reader=video.read,
    )
    base.update(kw)
    return FinetuneDataset(items, **base)


@pytest.mark.parametrize("sampling", ["dense", "mmaction", "tsn"])
def test_dataset_clip_is_one_sample(sampling):
    """A still video stays still after the whole pipeline (RandAugment, crop, flip shared)."""
    video = StillVideo()
    ds = make_ds(video, sampling=sampling)
    item = ds[(3, 2)]
    clips = item["clips"]
    assert clips.shape == (2, 3, 4, 24, 24) and item["label"] == 2
    for s in range(2):
        for t in range(1, 4):
            assert torch.equal(clips[s, :, t], clips[s, :, 0])
    assert not torch.equal(clips[0], clips[1])  # the two repeats are augmented independently
    again = ds[(3, 2)]
    assert torch.equal(again["clips"], clips)  # a pure function of (seed, epoch, index)
    assert not torch.equal(ds[(4, 2)]["clips"], clips)


def test_dataset_erasing_cube_and_aug_pool():
    video = StillVideo()
    ds = make_ds(video, erasing=ErasingParams(prob=1.0), rand_augment=None, aug_pool=2)
    clips = ds[(0, 1)]["clips"]
    for s in range(2):
        changed = clips[s] != clips[s, :, :1]  # vs frame 0: only the erased box differs
        box = changed.any(0).any(0)
        assert box.any()
    # aug_pool 2: epochs 0 and 2 see the same clips, epoch 1 other ones
    assert ds[(2, 1)]["variant"] == 0 and torch.equal(ds[(2, 1)]["clips"], clips)
    assert not torch.equal(ds[(1, 1)]["clips"], clips)


def test_tsn_indices():
    rng = np.random.default_rng(0)
    idx = tsn_train_indices(64, rng, 16)
    assert len(idx) == 16 and all(4 * k <= i < 4 * k + 4 for k, i in enumerate(idx))
    short = tsn_train_indices(10, rng, 16)
    assert len(short) == 16 and short.max() < 10 and (np.diff(short) >= 0).all()


def test_normalisation_matches_imagenet():
    video = StillVideo()
    ds = make_ds(video, rand_augment=None, flip=False, rrc_scale=(1.0, 1.0), rrc_ratio=(1.0, 1.0))
    items = [LabeledVideo("v_0", 0)]
    ds.items = items
    ds.input_size = 36  # crop the full height, no resize when the box is 36x36
    clip = ds[(0, 0)]["clips"][0]
    img = StillVideo().read("v_0", np.zeros(1))[0].astype(np.float32) / 255
    mean = np.array([0.485, 0.456, 0.406], np.float32)
    std = np.array([0.229, 0.224, 0.225], np.float32)
    ref = (img - mean) / std  # (H, W, 3)
    x0 = [x for x in range(0, 9) if np.allclose(clip[:, 0, :, 0].T, ref[:, x], atol=1e-5)]
    assert x0, "the crop should be a square window of the normalised frame"
    assert math.isfinite(float(clip.sum()))

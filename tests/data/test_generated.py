"""The generated temporal dataset: file formats, determinism, variety, and the temporal pairs."""

import argparse
import dataclasses
import inspect

import numpy as np
import pytest

from videomae2.data import generated as gen
from videomae2.data.annotations import parse_pretrain_list, parse_video_list, read_label_map
from videomae2.data.decode import open_video, read_frames, resolve_video_path

SEED = 3
SMALL = dict(short_side=(32, 48), frame_range=(20, 90))


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("generated") / "ds"
    info = gen.make_dataset(
        out, classes=4, videos_per_class=3, seed=SEED, val_fraction=0.34, workers=2, **SMALL
    )
    return info


def _files(root):
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


# ----------------------------------------------------------------------------- the dataset


def test_lists_and_label_map_formats(dataset):
    info = dataset
    assert read_label_map(info.label_map) == list(gen.CLASS_NAMES[:4])
    train, val = parse_video_list(info.train_list), parse_video_list(info.val_list)
    assert len(train) + len(val) == len(info.videos) == 12
    assert (info.num_train, info.num_val) == (len(train), len(val)) == (8, 4)
    for records in (train, val):
        labels = sorted({r.label for r in records})
        assert labels == [0, 1, 2, 3]  # every class in both splits (one val video per class)
    assert not {r.filename for r in train} & {r.filename for r in val}
    for r in train + val:
        assert r.filename.endswith(".mp4") and r.filename.startswith(gen.CLASS_NAMES[r.label][:6])
        assert (info.video_dir / r.filename).is_file()
        assert resolve_video_path(str(info.video_dir), r.filename) == str(
            info.video_dir / r.filename
        )
    pretrain = parse_pretrain_list(info.pretrain_list)
    assert [p.path for p in pretrain] == [r.filename for r in train]  # no val leakage
    assert all((p.start_idx, p.total_frames) == (0, -1) for p in pretrain)
    meta = info.metadata.read_text().splitlines()
    assert meta[0].split("\t")[:5] == ["filename", "label", "class", "split", "num_frames"]
    assert len(meta) == 13


def test_dataset_info_reads_back_what_make_dataset_wrote(dataset):
    again = gen.DatasetInfo.read(dataset.root)
    assert again == dataclasses.replace(dataset, seconds=0.0)
    assert again.num_train == dataset.num_train and again.videos[0].label == dataset.videos[0].label


def test_decoded_files_match_metadata_and_rendering(dataset):
    """Each file decodes to the frame count and size recorded, and is the rendered video."""
    for v in dataset.videos:
        info = open_video(dataset.video_dir / v.filename)
        assert (info.num_frames, info.height, info.width) == (v.num_frames, v.height, v.width)
    v = dataset.videos[1]
    path = dataset.video_dir / v.filename
    decoded = read_frames(path, np.arange(v.num_frames))
    assert decoded.shape == (v.num_frames, v.height, v.width, 3)
    k = int(v.filename[-8:-4])
    rendered = gen.render_video(
        v.class_name,
        gen.video_generator(SEED, v.class_name, k),
        num_frames=v.num_frames,
        size=(v.height, v.width),
    )
    err = np.abs(decoded.astype(np.float32) - rendered).mean()
    other = np.abs(decoded.astype(np.float32) - rendered[::-1]).mean()
    assert err < 6 and err < other


def test_durations_and_aspect_ratios_vary(dataset):
    frames = [v.num_frames for v in dataset.videos]
    assert min(frames) < gen.CLIP_SPAN and max(frames) > 64
    for label in range(4):  # stratified per class, not only over the dataset
        mine = [v for v in dataset.videos if v.label == label]
        assert min(v.num_frames for v in mine) < gen.CLIP_SPAN <= max(v.num_frames for v in mine)
        kinds = {np.sign(v.width - v.height) for v in mine}
        assert kinds == {-1, 0, 1}  # portrait, square, landscape
    for v in dataset.videos:
        assert v.height % 2 == 0 and v.width % 2 == 0
        assert 32 <= min(v.height, v.width) <= 48
        assert 20 <= v.num_frames <= 90


def test_deterministic_and_independent_of_workers_and_class_count(dataset, tmp_path):
    again = gen.make_dataset(
        tmp_path / "again", classes=4, videos_per_class=3, seed=SEED, val_fraction=0.34,
        workers=1, **SMALL,
    )  # fmt: skip
    assert again.videos == dataset.videos
    assert _files(again.root) == _files(dataset.root)  # byte-identical videos and lists
    # the first two classes alone give the same videos (content keyed by class, not label)
    two = gen.make_dataset(
        tmp_path / "two", classes=2, videos_per_class=3, seed=SEED, val_fraction=0.34,
        workers=1, **SMALL,
    )  # fmt: skip
    assert two.videos == dataset.videos[:6]
    for v in two.videos:
        assert (two.video_dir / v.filename).read_bytes() == (
            dataset.video_dir / v.filename
        ).read_bytes()
    other = gen.render_video("moving left", gen.video_generator(SEED + 1, "moving left", 0))
    same = gen.render_video("moving left", gen.video_generator(SEED, "moving left", 0))
    assert same.shape != other.shape or not np.array_equal(same, other)


def test_unlabeled_videos_join_pretraining_only_and_leave_labeled_ones_unchanged(dataset, tmp_path):
    more = gen.make_dataset(
        tmp_path / "more", classes=4, videos_per_class=3, seed=SEED, val_fraction=0.34,
        workers=2, unlabeled_per_class=2, **SMALL,
    )  # fmt: skip
    labeled = [v for v in more.videos if v.split != "unlabeled"]
    assert labeled == list(dataset.videos) and more.num_unlabeled == 8
    for v in labeled:  # byte-identical: the unlabeled draws use their own generators
        assert (more.video_dir / v.filename).read_bytes() == (
            dataset.video_dir / v.filename
        ).read_bytes()
    unlabeled = {v.filename for v in more.videos if v.split == "unlabeled"}
    listed = [line.split()[0] for line in more.pretrain_list.read_text().splitlines()]
    assert set(listed) == unlabeled | {v.filename for v in dataset.videos if v.split == "train"}
    lists = more.train_list.read_text() + more.val_list.read_text()
    assert not any(name in lists for name in unlabeled)
    first = next(v for v in more.videos if v.split == "unlabeled")
    # the first unlabeled video of a class is content index videos_per_class (3): a new scene
    decoded = read_frames(more.video_dir / first.filename, np.arange(first.num_frames))
    size = (first.height, first.width)
    errs = [
        np.abs(decoded.astype(np.float32) - gen.render_video(
            first.class_name, gen.video_generator(SEED, first.class_name, k),
            num_frames=first.num_frames, size=size,
        )).mean()
        for k in (3, 0)
    ]  # fmt: skip
    assert errs[0] < 12 and errs[0] < errs[1]  # H.264 at these sizes is lossy


def test_shared_scenes_give_every_class_the_same_scenes_and_split(tmp_path):
    info = gen.make_dataset(
        tmp_path / "shared", classes=4, videos_per_class=3, seed=SEED, val_fraction=0.34,
        workers=2, shared_scenes=True, **SMALL,
    )  # fmt: skip
    by_class: dict[str, list] = {}
    for v in info.videos:
        by_class.setdefault(v.class_name, []).append(v)
    rows = list(by_class.values())
    for other in rows[1:]:  # same durations, sizes and split at every index k
        assert [(v.num_frames, v.height, v.width, v.split) for v in other] == [
            (v.num_frames, v.height, v.width, v.split) for v in rows[0]
        ]
    # the files hold scene k shown with each class's motion: a pair's second class is the
    # first one's frames reversed, and the re-rendering from scene_generator matches the file
    v = rows[0][1]
    left = gen.render_video(
        "moving left", gen.scene_generator(SEED, 1), num_frames=v.num_frames,
        size=(v.height, v.width),
    )  # fmt: skip
    right = gen.render_video(
        "moving right", gen.scene_generator(SEED, 1), num_frames=v.num_frames,
        size=(v.height, v.width),
    )  # fmt: skip
    assert np.array_equal(right, left[::-1])
    decoded = read_frames(str(info.video_dir / v.filename), np.arange(v.num_frames))
    err = np.abs(decoded.astype(int) - left.astype(int)).mean()  # H.264 at 46 px is lossy
    assert err < 12 and err < np.abs(decoded.astype(int) - right.astype(int)).mean()
    # without shared scenes, video 1 of two classes shows different scenes
    plain = gen.render_video(
        "moving right", gen.video_generator(SEED, "moving right", 1), num_frames=v.num_frames,
        size=(v.height, v.width),
    )  # fmt: skip
    assert not np.array_equal(plain, left[::-1])


def test_styles_rescale_the_draws():
    clear, standard = gen.STYLES["clear"], gen.STYLES["standard"]
    assert standard == gen.Style()
    for k in range(20):
        rng = np.random.default_rng(k)
        a = gen.sample_scene(rng, num_frames=30, size=(64, 96), style=clear)
        b = gen.sample_scene(np.random.default_rng(k), num_frames=30, size=(64, 96))
        assert clear.radius[0] * 64 <= a.radius <= clear.radius[1] * 64
        assert standard.radius[0] * 64 <= b.radius <= standard.radius[1] * 64
        assert a.noise_amplitude <= clear.noise[1]
        # the same pattern draws with less grain and no distractors: never rougher
        rough = [np.abs(np.diff(x.background, axis=1)).mean() for x in (a, b)]
        assert rough[0] <= rough[1] + 1e-3
    with pytest.raises(ValueError, match=r"Style\.radius"):
        gen.Style(radius=(0.3, 0.2))


def test_demo_style_moves_a_light_object_over_a_dark_flat_background_the_whole_time():
    """The demo's look: the same draws as every style (so the same classes and reversals), but
    the object is lighter than the background in every channel, nothing is noisy, and the
    motion runs from the first frame to the last (no still frames at the ends)."""
    demo = gen.STYLES["demo"]
    assert demo.light_on_dark and demo.still == 0 and demo.contrast == 0
    for k in range(10):
        scene = gen.sample_scene(np.random.default_rng(k), num_frames=40, size=(64, 96), style=demo)
        assert scene.background.max() <= 96 and np.ptp(scene.background, axis=(0, 1)).max() == 0
        assert scene.colour.min() >= 160 and scene.marker_colour.min() >= 160
        assert scene.window == (0.0, 1.0) and scene.noise_amplitude == 0
        frames = gen.render_scene(scene, "approaching").astype(np.int32)  # always in frame
        bg = scene.background[0, 0].round().astype(np.int32)
        assert (frames >= bg - 1).all()  # nothing darker than the background anywhere
        moved = np.abs(np.diff(frames, axis=0)).sum(axis=(1, 2, 3))
        assert (moved[:3] > 0).all() and (moved[-3:] > 0).all()  # moving at both ends
        # the same random stream as any style without distractors: only the look changes
        std = gen.sample_scene(
            np.random.default_rng(k),
            num_frames=40,
            size=(64, 96),
            style=gen.Style(distractors=(0, 0)),
        )
        assert (std.shape, std.position, std.profile) == (
            scene.shape,
            scene.position,
            scene.profile,
        )
    with pytest.raises(ValueError, match=r"Style\.still"):
        gen.Style(still=0.5)


def test_cli_entry(tmp_path):
    from videomae2 import cli

    assert cli.COMMANDS["make-dataset"][0] == "videomae2.data.generated"
    parser = argparse.ArgumentParser()
    gen.add_arguments(parser)
    flags = "--classes 2 --videos-per-class 2 --size 32 --frames 20 30 --workers 1 --seed 7"
    args = parser.parse_args([str(tmp_path / "d"), *flags.split(), "--val-fraction", "0.5"])
    assert gen.run(args) == 0
    assert len(parse_video_list(tmp_path / "d" / "train_list.txt")) == 2
    assert len(parse_video_list(tmp_path / "d" / "val_list.txt")) == 2
    assert read_label_map(tmp_path / "d" / "label_map.txt") == ["moving left", "moving right"]


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(classes=0),
        dict(classes=11),
        dict(classes=["moving sideways"]),
        dict(videos_per_class=0),
        dict(val_fraction=1.0),
        dict(short_side=(8, 8)),
        dict(frame_range=(40, 30)),
        dict(style="blurry"),
        dict(unlabeled_per_class=-1),
    ],
)
def test_bad_arguments(tmp_path, kwargs):
    with pytest.raises(ValueError):
        gen.make_dataset(tmp_path, **kwargs)


# ----------------------------------------------------------------------------- the classes


def test_classes_come_in_temporal_pairs():
    assert len(gen.CLASS_NAMES) == 10 and len(set(gen.CLASS_NAMES)) == 10
    assert [c for pair in gen.TEMPORAL_PAIRS for c in pair] == list(gen.CLASS_NAMES)
    # the random content is drawn without knowing the class
    assert "class_name" not in inspect.signature(gen.sample_scene).parameters


@pytest.mark.parametrize("pair", gen.TEMPORAL_PAIRS, ids=lambda p: p[0].replace(" ", "_"))
def test_second_class_is_the_time_reversal_of_the_first(pair):
    """Same generator state -> same scene; the pair's videos are exact time reversals, so they
    hold the same multiset of frames and no order-blind model can separate them."""
    first, second = pair
    for seed in range(3):
        a = gen.render_video(first, np.random.default_rng(seed), **SMALL)
        b = gen.render_video(second, np.random.default_rng(seed), **SMALL)
        assert a.dtype == np.uint8 and a.ndim == 4 and a.shape[-1] == 3
        np.testing.assert_array_equal(b, a[::-1])


def test_render_video_is_a_pure_function_of_the_generator():
    a = gen.render_video("rotating clockwise", np.random.default_rng(11), **SMALL)
    b = gen.render_video("rotating clockwise", np.random.default_rng(11), **SMALL)
    np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match="unknown class"):
        gen.render_video("jumping", np.random.default_rng(0))


def _ks(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sample Kolmogorov-Smirnov statistic."""
    grid = np.sort(np.concatenate([x, y]))
    cdf = lambda s: np.searchsorted(np.sort(s), grid, side="right") / len(s)  # noqa: E731
    return float(np.abs(cdf(x) - cdf(y)).max())


def test_first_frame_state_has_the_same_distribution_within_moving_and_rotating_pairs():
    """Start positions live on a torus and orientations are uniform, so not even the first frame
    tells 'moving left' from 'moving right' (or clockwise from anticlockwise). Two independent
    sets of 500 scenes; a KS statistic of 0.1 is far below what a real shift would give."""
    scenes = [
        gen.sample_scene(np.random.default_rng([5, i]), size=(32, 32), num_frames=24)
        for i in range(1000)
    ]

    def first(name, attr, half):
        chosen = scenes[:500] if half == 0 else scenes[500:]
        return np.array([getattr(gen.trajectory(s, name), attr)[0] for s in chosen])

    for a, b, attr in [
        ("moving left", "moving right", "cx"),
        ("moving left", "moving right", "cy"),
        ("moving up", "moving down", "cy"),
        ("moving up", "moving down", "cx"),
    ]:
        assert _ks(first(a, attr, 0), first(b, attr, 1)) < 0.1, (a, b, attr)
    cw = np.mod(first("rotating clockwise", "angle", 0), 2 * np.pi)
    acw = np.mod(first("rotating anticlockwise", "angle", 1), 2 * np.pi)
    assert _ks(cw, acw) < 0.1
    # while the state a pair differs in does move: the tracks are not constant
    left = gen.trajectory(scenes[0], "moving left").cx
    assert np.ptp(left) > 5


def _clean(scene: gen.Scene) -> gen.Scene:
    """The scene on a black background without grain: object pixels are the non-black ones."""
    return dataclasses.replace(
        scene,
        background=np.zeros_like(scene.background),
        colour=np.array([255, 0, 0], np.float32),
        marker_colour=np.array([0, 255, 0], np.float32),
        noise_amplitude=0,
    )


def _centroids(mask: np.ndarray) -> np.ndarray:
    """(T, 2) (y, x) centroid of a (T, H, W) mask; NaN where empty."""
    ys, xs = np.arange(mask.shape[1]), np.arange(mask.shape[2])
    area = mask.sum(axis=(1, 2)).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        cy = (mask.sum(axis=2) * ys).sum(axis=1) / area
        cx = (mask.sum(axis=1) * xs).sum(axis=1) / area
    return np.stack([cy, cx], axis=1)


def _median_step(track: np.ndarray, period: float) -> float:
    """Median frame-to-frame step, ignoring wrap-around jumps and frames without the object."""
    d = np.diff(track)
    d = d[np.isfinite(d) & (np.abs(d) < period / 4) & (d != 0)]
    return float(np.median(d))


@pytest.mark.parametrize("seed", range(4))
def test_pixels_show_the_named_motion(seed):
    """Measured on the rendered frames, not on the track: each class does what its name says."""
    scene = _clean(gen.sample_scene(np.random.default_rng([9, seed]), size=(48, 64), num_frames=40))
    obj = {name: gen.render_scene(scene, name).astype(np.int32) for name in gen.CLASS_NAMES}
    mask = {name: v.sum(axis=-1) > 60 for name, v in obj.items()}
    cen = {name: _centroids(m) for name, m in mask.items()}

    assert _median_step(cen["moving left"][:, 1], 64) < 0
    assert _median_step(cen["moving right"][:, 1], 64) > 0
    assert _median_step(cen["moving up"][:, 0], 48) < 0
    assert _median_step(cen["moving down"][:, 0], 48) > 0

    def marker_angle(name):
        green = (obj[name][..., 1] > 128) & (obj[name][..., 0] < 128)
        m, c = _centroids(green), cen[name]
        return np.unwrap(np.arctan2(m[:, 0] - c[:, 0], m[:, 1] - c[:, 1]))

    # y points down, so a growing atan2(dy, dx) is clockwise on screen
    assert marker_angle("rotating clockwise")[-1] - marker_angle("rotating clockwise")[0] > 1
    turn = marker_angle("rotating anticlockwise")
    assert turn[-1] - turn[0] < -1

    area = {name: m.sum(axis=(1, 2)) for name, m in mask.items()}
    assert area["approaching"][-1] > 2 * area["approaching"][0]
    assert area["receding"][0] > 2 * area["receding"][-1]
    ink = {name: v.sum(axis=(1, 2, 3)) for name, v in obj.items()}
    assert ink["appearing"][0] == 0 and ink["appearing"][-1] > 0
    assert ink["disappearing"][0] > 0 and ink["disappearing"][-1] == 0

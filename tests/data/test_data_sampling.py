"""Frame-index math against the spec's worked examples (test-protocol.md §3, §13, §14)."""

import numpy as np
import pytest

from videomae2.data.sampling import (
    original_dense_train_indices,
    original_sparse_test_indices,
    original_test_buffer_indices,
    original_test_frame_indices,
    original_test_segment_starts,
    original_val_indices,
    pretrain_indices,
    sample_frames,
)


def k400_test(n: int) -> np.ndarray:
    return sample_frames(n, 16, 4, 5, test_mode=True).reshape(5, 16)


# ------------------------------------------------------------------ §3.4 test-mode examples


@pytest.mark.parametrize(
    ("n", "starts"),
    [
        (300, [0, 60, 120, 179, 239]),
        (250, [0, 47, 94, 142, 189]),  # 94.5 -> 94 (half to even)
        (1000, [0, 235, 470, 704, 939]),  # 469.5 -> 470
        (120, [0, 15, 30, 44, 59]),  # 29.5 -> 30
        (62, [0, 0, 0, 1, 1]),  # 0.5 -> 0
        (61, [0, 0, 0, 0, 0]),
        (60, [0, 0, 0, 0, 0]),
        (30, [0, 0, 0, 0, 0]),
    ],
)
def test_test_mode_clip_starts(n, starts):
    inds = k400_test(n)
    assert inds[:, 0].tolist() == starts
    for c, s in enumerate(starts):
        assert inds[c].tolist() == [(s + 4 * k) % n for k in range(16)]


def test_output_dtype_and_layout():
    inds = sample_frames(300, 16, 4, 5, test_mode=True)
    assert inds.dtype == np.int32
    assert inds.shape == (80,)
    # clip-major: clip 3 is frames 179, 183, ..., 239 (§13)
    assert inds[48:64].tolist() == list(range(179, 240, 4))


def test_short_videos_wrap():
    assert k400_test(61)[0].tolist() == list(range(0, 61, 4))  # no wrap
    assert k400_test(60)[0, -1] == 0  # frame 60 -> 0
    assert k400_test(50)[0, -3:].tolist() == [2, 6, 10]  # 52, 56, 60 -> 2, 6, 10
    # all clips identical for n <= 61
    assert (k400_test(50) == k400_test(50)[0]).all()


def test_repeat_last_clamps_per_clip():
    inds = sample_frames(50, 16, 4, 5, test_mode=True, out_of_bound_opt="repeat_last")
    assert inds.reshape(5, 16)[0].tolist() == [*range(0, 49, 4), 48, 48, 48]
    # The clamp value is per clip. With twice_sample the later clips start past the end: clip 5
    # (start 299) repeats 299; clips wholly out of range fall back to 0 (mmaction2 quirk).
    inds = sample_frames(
        300, 16, 4, 5, test_mode=True, twice_sample=True, out_of_bound_opt="repeat_last"
    ).reshape(10, 16)
    assert inds[4].tolist() == list(range(239, 300, 4))
    assert inds[5].tolist() == [299] * 16
    assert inds[6:].tolist() == [[0] * 16] * 4


def test_mmaction2_rawframe_oracles_start_index_1():
    assert sample_frames(6, 1, 1, 8, test_mode=True, start_index=1).tolist() == [
        1,
        2,
        2,
        3,
        4,
        5,
        5,
        6,
    ]
    assert sample_frames(5, 6, 1, 1, test_mode=True, start_index=1).tolist() == [1, 2, 3, 4, 5, 1]
    rng = np.random.default_rng(0)
    assert sample_frames(6, 1, 1, 8, rng=rng, start_index=1).tolist() == [1, 2, 3, 3, 4, 5, 5, 6]


def test_single_clip_test_takes_the_middle():
    assert sample_frames(300, 16, 4, 1, test_mode=True)[0] == (300 - 61) // 2
    assert sample_frames(40, 16, 4, 1, test_mode=True)[0] == 0


def test_twice_sample_keeps_undoubled_divisor():
    inds = sample_frames(300, 16, 4, 5, test_mode=True, twice_sample=True).reshape(10, 16)
    # offsets = round(arange(10) * 239 / 4): the second half runs past max_offset and wraps
    expected = np.round(np.arange(10) * 239 / 4)
    assert inds[:, 0].tolist() == [int(x) % 300 for x in expected]
    assert inds[5, 0] == 299  # 298.75 -> 299
    assert inds[6, 0] == 58  # 358.5 -> 358 (half to even) -> mod 300
    with pytest.raises(ValueError):
        sample_frames(300, 16, 4, 1, test_mode=True, twice_sample=True)


def test_clip_len_1_twice_sample():
    # avg = 10 / 2 = 5: centres 2.5, 7.5 then bases 0, 5; truncated only at the end
    assert sample_frames(10, 1, 1, 2, test_mode=True, twice_sample=True).tolist() == [2, 7, 0, 5]


def test_target_fps_test_mode():
    # fps 60 -> 30: span = 16*4*2 = 128, offsets floor(172/4)*k, frames spread by linspace
    inds = sample_frames(300, 16, 4, 5, test_mode=True, target_fps=30, fps=60).reshape(5, 16)
    assert inds[:, 0].tolist() == [0, 43, 86, 129, 172]
    assert inds[0].tolist() == np.linspace(0, 127, 16).astype(np.int32).tolist()
    # without a known fps the ratio is 1
    a = sample_frames(300, 16, 4, 5, test_mode=True, target_fps=30, fps=None)
    assert a.reshape(5, 16)[1, 0] == (300 - 64) // 4


def test_temporal_jitter_within_interval():
    rng = np.random.default_rng(1)
    base = sample_frames(1000, 16, 4, 5, test_mode=True)
    jit = sample_frames(1000, 16, 4, 5, test_mode=True, temporal_jitter=True, rng=rng)
    d = jit.astype(int) - base
    assert d.min() >= 0 and d.max() <= 3 and d.max() > 0
    with pytest.raises(ValueError, match="rng"):
        sample_frames(1000, 16, 4, 5, test_mode=True, temporal_jitter=True)


# ---------------------------------------------------------------------- §3.2 train mode


def test_train_requires_rng():
    with pytest.raises(ValueError, match="rng"):
        sample_frames(300, 16, 4, 1)


def test_train_16x4x1_ranges():
    rng = np.random.default_rng(0)
    starts = {int(sample_frames(100, 16, 4, 1, rng=rng)[0]) for _ in range(2000)}
    assert starts == set(range(0, 100 - 64 + 1))  # uniform in [0, n - 64], all reached
    for n in (64, 63, 30):
        inds = sample_frames(n, 16, 4, 1, rng=rng)
        assert inds.tolist() == [(4 * k) % n for k in range(16)]


def test_train_case1_avg_positive():
    rng = np.random.default_rng(0)
    # n=200, L=64, 3 clips: avg = 137 // 3 = 45, clip c in [45c, 45c + 44]
    for _ in range(200):
        s = sample_frames(200, 16, 4, 3, rng=rng).reshape(3, 16)[:, 0]
        for c in range(3):
            assert 45 * c <= s[c] <= 45 * c + 44


def test_train_case2_sorted_random():
    rng = np.random.default_rng(0)
    # n=66, L=64, 5 clips: avg = 3 // 5 = 0 and n > max(5, 64) -> sorted randint(3)
    seen = set()
    for _ in range(200):
        s = sample_frames(66, 16, 4, 5, rng=rng).reshape(5, 16)[:, 0]
        assert (np.diff(s) >= 0).all() and s.min() >= 0 and s.max() <= 2
        seen |= set(s.tolist())
    assert seen == {0, 1, 2}


def test_train_case3_deterministic_spread():
    rng = np.random.default_rng(0)
    # n=64, L=64, 5 clips: avg = 1 // 5 = 0, n > max(5, 64) false -> around(k * 1/5) = 0 ...
    s = sample_frames(64, 16, 4, 5, rng=rng).reshape(5, 16)[:, 0]
    assert s.tolist() == [0, 0, 0, 1, 1]  # around(0.6) = around(0.8) = 1
    # clip_len 1, n 6, 8 clips: ratio 0.75 -> around gives 0,1,2,2,3,4,4,5 (half to even)
    assert sample_frames(6, 1, 1, 8, rng=rng).tolist() == [0, 1, 2, 2, 3, 4, 4, 5]


def test_train_case4_zeros_when_shorter_than_span():
    rng = np.random.default_rng(0)
    # n=40 < L=64: avg = -23 // 2 < 0 -> zeros
    s = sample_frames(40, 16, 4, 2, rng=rng).reshape(2, 16)
    assert s[:, 0].tolist() == [0, 0]
    assert s[0].tolist() == [(4 * k) % 40 for k in range(16)]


def test_train_keep_tail_frames():
    rng = np.random.default_rng(0)
    # n=200, L=64, 2 clips: avg = 137/2 = 68.5, clip c start in [68.5c, 68.5(c+1))
    for _ in range(200):
        s = sample_frames(200, 16, 4, 2, rng=rng, keep_tail_frames=True).reshape(2, 16)[:, 0]
        assert 0 <= s[0] <= 68 and 68 <= s[1] <= 136
    s = sample_frames(60, 16, 4, 2, rng=rng, keep_tail_frames=True).reshape(2, 16)[:, 0]
    assert s.tolist() == [0, 0]


def test_rejects_bad_arguments():
    with pytest.raises(ValueError):
        sample_frames(0, 16, 4, 5, test_mode=True)
    with pytest.raises(ValueError):
        sample_frames(100, 16, 4, 5, test_mode=True, out_of_bound_opt="clamp")


# --------------------------------------------------------------- original VideoMAE V2 code


def test_original_test_examples():
    # §14.1 table
    assert len(original_test_buffer_indices(300)) == 75
    assert original_test_segment_starts(75) == [0, 14, 29, 44, 59]
    assert original_test_frame_indices(300)[:, 0].tolist() == [0, 56, 116, 176, 236]
    assert len(original_test_buffer_indices(250)) == 63
    assert original_test_frame_indices(250)[:, 0].tolist() == [0, 44, 92, 140, 188]
    buf = original_test_buffer_indices(50)
    assert buf.tolist() == [*range(0, 49, 4), 48, 48, 48]
    f = original_test_frame_indices(300)
    assert f.shape == (5, 16) and f[1].tolist() == list(range(56, 56 + 64, 4))
    with pytest.raises(ValueError):
        original_test_segment_starts(75, num_segments=1)


def test_original_val_example():
    assert original_val_indices(300).tolist() == [
        *(118, 122, 126, 130, 135, 139, 143, 147),
        *(152, 156, 160, 164, 169, 173, 177, 181),
    ]
    # n <= 64: linspace(0, n, n // 4) padded with n, clipped to n - 1
    assert original_val_indices(30).tolist() == [0, 5, 10, 15, 20, 25] + [29] * 10
    assert original_val_indices(64)[-1] == 63


def test_original_dense_train_range():
    rng = np.random.default_rng(0)
    ends = set()
    for _ in range(500):
        idx = original_dense_train_indices(70, rng)
        start = idx[0]
        assert 0 <= start <= 70 - 1 - 64
        assert idx[-1] == start + 63  # linspace end clipped to end - 1
        assert (np.diff(idx) >= 4).all() and (np.diff(idx) <= 5).all()
        ends.add(int(start) + 64)
    assert ends == set(range(64, 70))
    assert original_dense_train_indices(30, rng).tolist() == original_val_indices(30).tolist()


def test_original_sparse_test():
    v = original_sparse_test_indices(64, 16, 2)
    assert v.shape == (2, 16)
    assert v[0].tolist() == list(range(0, 64, 4))  # tick 4: s=0 -> 4x, s=1 -> 4x + 2
    assert v[1].tolist() == list(range(2, 64, 4))


def test_pretrain_indices():
    rng = np.random.default_rng(0)
    starts = set()
    for _ in range(500):
        idx = pretrain_indices(80, rng)
        assert idx.tolist() == list(range(idx[0], idx[0] + 64, 4))
        starts.add(int(idx[0]))
    assert starts == set(range(0, 17))
    # n <= 63: advance by 4 only while the next frame is <= n - 2, then repeat
    assert pretrain_indices(30, rng).tolist() == [0, 4, 8, 12, 16, 20, 24, 28] + [28] * 8
    assert pretrain_indices(31, rng).tolist() == [0, 4, 8, 12, 16, 20, 24, 28] + [28] * 8
    assert pretrain_indices(32, rng).tolist()[:9] == [0, 4, 8, 12, 16, 20, 24, 28, 28]
    assert pretrain_indices(33, rng).tolist()[:10] == [0, 4, 8, 12, 16, 20, 24, 28, 28, 28]
    assert pretrain_indices(34, rng).tolist()[:10] == [0, 4, 8, 12, 16, 20, 24, 28, 32, 32]
    for _ in range(50):
        j = pretrain_indices(80, rng, temporal_jitter=True) - 4 * np.arange(16)
        assert j.max() - j.min() <= 3  # each frame shifted by at most interval - 1

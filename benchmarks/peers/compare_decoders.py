"""Does PyAV see the same frames as decord (mmaction2's decoder)? Frame counts, RGB bit-exactness.

Why: mmaction2 samples frame indices from decord's ``len(reader)`` and decodes with
``get_batch``; a reimplementation that decodes with PyAV is only exact if both decoders agree on
the frame count and on every RGB value, including for the seek-heavy, out-of-order, duplicated
indices that the 16x4x5 test sampling produces (clips wrap around on short videos).

Per video it compares:
  * decord ``len(VideoReader)`` vs the number of frames PyAV decodes (and the container's count)
  * every frame: decord ``get_batch(range(n))`` vs PyAV ``to_ndarray(format='rgb24')``
    (PyAV with its default threading and with ``thread_type='AUTO'``)
  * decord ``get_batch`` on mmaction2's own SampleFrames test indices (fresh reader, as in
    DecordInit + DecordDecode) vs those frames taken from the sequential decode

Run with the PEER's python (it has decord, PyAV and mmaction2):
  .peers/mmaction2/bin/python benchmarks/peers/compare_decoders.py \\
      --ann-file .peers/fixture/list.txt --data-prefix .peers/fixture/videos
"""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path
from typing import Any

import av
import decord
import numpy as np


def decord_reader(path: Path) -> decord.VideoReader:
    """Open the way mmaction2's DecordInit does: from the file's bytes, one thread."""
    return decord.VideoReader(io.BytesIO(path.read_bytes()), num_threads=1)


def pyav_frames(path: Path, thread_type: str | None) -> tuple[int, np.ndarray]:
    """(container-declared frame count, all frames decoded as rgb24 uint8 (n, H, W, 3))."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        if thread_type:
            stream.thread_type = thread_type
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(stream)]
        return int(stream.frames), np.stack(frames)


def test_indices(total_frames: int) -> np.ndarray:
    """mmaction2's own SampleFrames(16, 4, 5, test_mode=True) indices for this frame count."""
    from mmaction.datasets.transforms import SampleFrames

    sampler = SampleFrames(clip_len=16, frame_interval=4, num_clips=5, test_mode=True)
    return sampler.transform({"total_frames": total_frames, "start_index": 0})["frame_inds"]


def diff_stats(a: np.ndarray, b: np.ndarray) -> dict[str, Any]:
    """How far two equally shaped uint8 frame stacks are apart."""
    delta = np.abs(a.astype(np.int16) - b.astype(np.int16))
    per_frame = delta.reshape(len(delta), -1).max(axis=1)
    bad = np.flatnonzero(per_frame)
    return {
        "identical": bool(not bad.size),
        "frames_differing": int(bad.size),
        "first_differing_frame": int(bad[0]) if bad.size else None,
        "max_abs_diff": int(delta.max()) if delta.size else 0,
    }


def compare_video(path: Path) -> dict[str, Any]:
    """All checks for one file."""
    reader = decord_reader(path)
    n_decord = len(reader)
    sequential = reader.get_batch(list(range(n_decord))).asnumpy()
    declared, pyav_default = pyav_frames(path, None)
    _, pyav_auto = pyav_frames(path, "AUTO")
    row: dict[str, Any] = {
        "video": path.name,
        "decord_len": n_decord,
        "decord_avg_fps": float(reader.get_avg_fps()),
        "pyav_decoded": len(pyav_default),
        "container_frames": declared,
        "counts_equal": n_decord == len(pyav_default),
    }
    if row["counts_equal"]:
        row["pyav_vs_decord"] = diff_stats(pyav_default, sequential)
        row["pyav_auto_vs_decord"] = diff_stats(pyav_auto, sequential)
    inds = test_indices(n_decord)
    sampled = decord_reader(path).get_batch(inds).asnumpy()
    row["decord_sampled_vs_sequential"] = diff_stats(sampled, sequential[inds])
    return row


def video_paths(args: argparse.Namespace) -> list[Path]:
    """Videos named in an mmaction2 list file, or every .mp4 in --data-prefix."""
    prefix = Path(args.data_prefix)
    if args.ann_file:
        names = [line.split(" ")[0] for line in Path(args.ann_file).read_text().splitlines()]
        return [prefix / name for name in names if name]
    return sorted(prefix.glob("*.mp4"))


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data-prefix", required=True, help="directory holding the videos")
    parser.add_argument("--ann-file", help="mmaction2 list file; default: every *.mp4")
    parser.add_argument("--json", type=Path, help="also write the per-video results here")
    return parser.parse_args()


def main() -> None:
    """Compare every video; exit non-zero if any check fails."""
    args = parse_args()
    print(f"decord {decord.__version__}, PyAV {av.__version__}")
    rows = [compare_video(path) for path in video_paths(args)]
    failures = 0
    for row in rows:
        checks = [row["counts_equal"], row["decord_sampled_vs_sequential"]["identical"]]
        if row["counts_equal"]:
            checks += [row["pyav_vs_decord"]["identical"], row["pyav_auto_vs_decord"]["identical"]]
        failures += not all(checks)
        summary = {k: v for k, v in row.items() if k != "video"}
        print(f"{row['video']}: {'OK' if all(checks) else 'MISMATCH'} {json.dumps(summary)}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"{len(rows) - failures}/{len(rows)} videos: decord and PyAV agree exactly")
    raise SystemExit(1 if failures else 0)


if __name__ == "__main__":
    main()

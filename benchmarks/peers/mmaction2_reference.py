"""Reference outputs and timings from mmaction2 1.2.0 itself, for parity checks against ours.

Why: "exactly mmaction2's protocol" is only checkable against mmaction2's own code on the same
videos and weights. This script never reimplements a step: it runs mmaction2's tools/test.py
(default mode), mmaction2's own test pipeline (--frames-only) or mmaction2's own model
(--check-keys), and records what came out plus time and memory.

Run it with the PEER's python (the venv made by ../shared/peers/install-mmaction2.sh):
  .peers/mmaction2/bin/python benchmarks/peers/mmaction2_reference.py --config small \\
      --checkpoint .peers/fixture/vit-small_random_mmaction2.pth \\
      --ann-file .peers/fixture/list.txt --data-prefix .peers/fixture/videos \\
      --dump .peers/fixture/ref/small.pkl --work-dir .peers/work/small
Modes:
  (default)      tools/test.py as a subprocess: --dump pickle + <dump>.json (timing, RSS, metrics)
  --frames-only  per video <frames-out>/<stem>.npz: decord's frame count, frame_inds and the uint8
                 (15, 3, 16, 224, 224) model input of the config's test pipeline
  --check-keys   load --checkpoint into mmaction2's recognizer non-strictly; fail unless only
                 backbone.pos_embed is missing, nothing is unexpected and every tensor was taken
  --replay-frames  run mmaction2's model on the --frames-only inputs: per-view raw logits
                 (15, 400) and pred_score per video into --logits-out; with --dump, check that
                 pred_score equals tools/test.py's dump bit for bit
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

CONFIG_NAMES = {
    "small": "vit-small-p16_videomaev2-vit-g-dist-k710-pre_16x4x1_kinetics-400.py",
    "base": "vit-base-p16_videomaev2-vit-g-dist-k710-pre_16x4x1_kinetics-400.py",
}
# The keys mmaction2 is allowed to leave untouched when loading a published-style checkpoint.
ALLOWED_MISSING = {"backbone.pos_embed"}


def mim_root() -> Path:
    """mmaction2's packaged configs and tools (the wheel ships them under mmaction/.mim)."""
    import importlib.util

    spec = importlib.util.find_spec("mmaction")
    if spec is None or spec.origin is None:
        raise SystemExit("mmaction is not importable: run this with the peer venv's python")
    return Path(spec.origin).parent / ".mim"


def resolve_config(config: str) -> Path:
    """'small' / 'base' → the packaged videomaev2 config; anything else is a path."""
    if config in CONFIG_NAMES:
        path = mim_root() / "configs/recognition/videomaev2" / CONFIG_NAMES[config]
    else:
        path = Path(config)
    if not path.is_file():
        raise SystemExit(f"config not found: {path}")
    return path.resolve()


# ----------------------------------------------------------------------------- memory sampling


def _children(pid: int) -> list[int]:
    """Direct children of pid, from /proc (no psutil in the peer venv)."""
    kids: list[int] = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # field 4 (ppid) follows the ')' that closes the command name
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            kids.append(int(entry))
    return kids


def _tree_pss_kib(root: int) -> int:
    """Proportional set size of root and all descendants (shared pages counted once overall)."""
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        match = re.search(r"^Pss:\s+(\d+) kB", rollup, re.MULTILINE)
        total += int(match.group(1)) if match else 0
        stack.extend(_children(pid))
    return total


class TreeMemorySampler(threading.Thread):
    """Samples the summed PSS of a process tree (main process + dataloader workers)."""

    def __init__(self, pid: int, period_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pid, self.period_s = pid, period_s
        self.peak_kib = 0
        self._stop_event = threading.Event()

    def run(self) -> None:
        """Poll until stopped."""
        while not self._stop_event.is_set():
            self.peak_kib = max(self.peak_kib, _tree_pss_kib(self.pid))
            self._stop_event.wait(self.period_s)

    def stop(self) -> int:
        """Stop and return the peak in KiB."""
        self._stop_event.set()
        self.join()
        return self.peak_kib


# ----------------------------------------------------------------------------- test mode


def build_test_command(args: argparse.Namespace, config: Path) -> list[str]:
    """mmaction2's own tools/test.py with dataset, workers and logging overridden."""
    workers = args.num_workers
    options = [
        f"test_dataloader.dataset.ann_file={Path(args.ann_file).resolve()}",
        f"test_dataloader.dataset.data_prefix.video={Path(args.data_prefix).resolve()}",
        f"test_dataloader.num_workers={workers}",
        # DataLoader rejects persistent workers without workers
        f"test_dataloader.persistent_workers={workers > 0}",
        # one log line per video with that video's own iteration time (no smoothing window)
        "default_hooks.logger.interval=1",
        "log_processor.window_size=1",
        *args.cfg_options,
    ]
    return [
        sys.executable,
        str(mim_root() / "tools/test.py"),
        str(config),
        str(Path(args.checkpoint).resolve()),
        "--work-dir",
        str(Path(args.work_dir).resolve()),
        "--dump",
        str(Path(args.dump).resolve()),
        "--cfg-options",
        *options,
    ]


def parse_gnu_time(text: str) -> dict[str, float]:
    """Peak RSS and times from `/usr/bin/time -v` output."""
    out: dict[str, float] = {}
    patterns = {
        "max_rss_kib": r"Maximum resident set size \(kbytes\): (\d+)",
        "user_s": r"User time \(seconds\): ([\d.]+)",
        "system_s": r"System time \(seconds\): ([\d.]+)",
    }
    for key, pattern in patterns.items():
        match = re.search(pattern, text)
        if match:
            out[key] = float(match.group(1))
    return out


def parse_iteration_times(log: str) -> list[float]:
    """Per-video iteration seconds from mmengine's 'Epoch(test) [i/N] ... time: t' lines."""
    times: dict[int, float] = {}
    # per-iteration lines carry 'eta:'; the closing metrics line repeats [N/N] with a mean time
    for match in re.finditer(r"Epoch\(test\)\s*\[\s*(\d+)/\d+\]\s+eta:.*?\btime: ([\d.]+)", log):
        times[int(match.group(1))] = float(match.group(2))
    return [times[i] for i in sorted(times)]


def parse_metrics(log: str) -> dict[str, float]:
    """The final 'acc/top1: … acc/top5: … acc/mean1: …' line."""
    return {k: float(v) for k, v in re.findall(r"(acc/\w+): ([\d.]+)", log)}


def count_lines(path: str) -> int:
    """Videos in the list file (non-empty lines, as mmaction2 would read them)."""
    return sum(1 for line in Path(path).read_text().splitlines() if line.strip())


def run_test(args: argparse.Namespace) -> None:
    """Run tools/test.py, stream its output, and write timing/RSS/metrics next to the dump."""
    if not str(args.dump).endswith((".pkl", ".pickle")):
        raise SystemExit("--dump must end in .pkl or .pickle (mmaction2 asserts this)")
    config = resolve_config(args.config)
    Path(args.dump).parent.mkdir(parents=True, exist_ok=True)
    Path(args.work_dir).mkdir(parents=True, exist_ok=True)
    cmd = build_test_command(args, config)
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    time_file = Path(args.work_dir).resolve() / "gnu_time.txt"
    if gnu_time:
        cmd = [gnu_time, "-v", "-o", str(time_file), *cmd]
    print("running:", " ".join(cmd), flush=True)

    load_before = os.getloadavg()
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    sampler = TreeMemorySampler(proc.pid)
    sampler.start()
    lines: list[str] = []
    assert proc.stdout is not None
    for line in proc.stdout:
        lines.append(line)
        if not args.quiet:
            sys.stdout.write(line)
            sys.stdout.flush()
    code = proc.wait()
    wall = time.perf_counter() - start
    peak_pss_kib = sampler.stop()
    log = "".join(lines)
    (Path(args.work_dir) / "reference_stdout.log").write_text(log)
    if code != 0:
        if args.quiet:
            sys.stdout.write(log[-5000:])
        raise SystemExit(f"tools/test.py failed with exit code {code}")

    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    stats: dict[str, Any] = {"max_rss_kib": usage.ru_maxrss}  # fallback without GNU time
    if gnu_time and time_file.exists():
        stats.update(parse_gnu_time(time_file.read_text()))
    n_videos = count_lines(args.ann_file)
    iters = parse_iteration_times(log)
    steady = iters[1:] if len(iters) > 1 else iters
    with open(args.dump, "rb") as f:
        dumped = pickle.load(f)
    summary: dict[str, Any] = {
        "config": str(config),
        "checkpoint": str(Path(args.checkpoint).resolve()),
        "ann_file": str(Path(args.ann_file).resolve()),
        "num_workers": args.num_workers,
        "torch_threads": _torch_threads(),
        "videos": n_videos,
        "dumped": len(dumped),
        "wall_s": round(wall, 3),
        "wall_s_per_video": round(wall / max(n_videos, 1), 3),
        "iteration_s": [round(t, 4) for t in iters],
        "steady_s_per_video": round(sum(steady) / len(steady), 3) if steady else None,
        "peak_rss_single_process_mib": round(stats["max_rss_kib"] / 1024, 1),
        "peak_pss_process_tree_mib": round(peak_pss_kib / 1024, 1),
        "cpu_user_s": stats.get("user_s"),
        "cpu_system_s": stats.get("system_s"),
        # other work on the machine inflates the times: record how busy it was
        "loadavg_1min_before_after": [round(load_before[0], 2), round(os.getloadavg()[0], 2)],
        "cpu_count": os.cpu_count(),
        "metrics": parse_metrics(log),
        "pred_labels": [int(d["pred_label"].item()) for d in dumped],
        "gt_labels": [int(d["gt_label"].item()) for d in dumped],
    }
    summary_path = Path(args.dump).with_suffix(".json")
    summary_path.write_text(json.dumps(summary, indent=1) + "\n")
    print(f"\nwrote {args.dump} ({len(dumped)} results) and {summary_path}")
    for key in (
        "wall_s",
        "wall_s_per_video",
        "steady_s_per_video",
        "peak_rss_single_process_mib",
        "peak_pss_process_tree_mib",
        "metrics",
    ):
        print(f"  {key}: {summary[key]}")
    if len(dumped) != n_videos:
        raise SystemExit(f"dump has {len(dumped)} results for {n_videos} videos")


def _torch_threads() -> int:
    """Intra-op threads the child will use (it inherits our environment)."""
    import torch

    return torch.get_num_threads()


# ----------------------------------------------------------------------------- shared builders


def load_config(config: str) -> Any:
    """mmengine Config with mmaction2's registries and default scope set up."""
    from mmaction.utils import register_all_modules
    from mmengine.config import Config

    register_all_modules(init_default_scope=True)
    return Config.fromfile(str(resolve_config(config)))


# ----------------------------------------------------------------------------- frames-only mode


def run_frames_only(args: argparse.Namespace) -> None:
    """Dump mmaction2's test-pipeline output per video, transform by transform, into .npz files."""
    import numpy as np
    from mmaction.registry import DATASETS
    from mmengine.dataset import Compose

    cfg = load_config(args.config)
    ds_cfg = cfg.test_dataloader.dataset.copy()
    ds_cfg.update(
        ann_file=str(Path(args.ann_file).resolve()),
        data_prefix=dict(video=str(Path(args.data_prefix).resolve())),
        pipeline=[],  # we apply the pipeline ourselves, to record intermediate facts
    )
    dataset = DATASETS.build(ds_cfg)
    pipeline = Compose(cfg.test_dataloader.dataset.pipeline)
    out_dir = Path(args.frames_out)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = 0.0
    for idx in range(len(dataset)):
        results = dataset.get_data_info(idx)
        filename = results["filename"]
        facts: dict[str, Any] = {}
        start = time.perf_counter()
        for transform in pipeline.transforms:
            results = transform(results)
            name = type(transform).__name__
            if name == "DecordInit":
                facts["total_frames"] = results["total_frames"]
                facts["avg_fps"] = results["avg_fps"]
            elif name == "SampleFrames":
                facts["frame_inds"] = np.asarray(results["frame_inds"])
            elif name == "DecordDecode":
                facts["original_shape"] = np.asarray(results["original_shape"])
            elif name == "Resize":
                facts["resized_shape"] = np.asarray(results["img_shape"])
            elif name == "ThreeCrop":
                n_per_crop = len(results["crop_bbox"]) // 3
                facts["crop_bboxes"] = np.asarray(results["crop_bbox"][::n_per_crop])
        elapsed = time.perf_counter() - start
        total += elapsed
        inputs = np.ascontiguousarray(results["inputs"].numpy())
        label = int(results["data_samples"].gt_label.item())
        stem = Path(filename).stem
        np.savez_compressed(
            out_dir / f"{stem}.npz",
            inputs=inputs,
            label=np.int64(label),
            filename=np.str_(filename),
            **facts,
        )
        print(
            f"{stem}: decord frames {facts['total_frames']}, fps {facts['avg_fps']:.3f}, "
            f"{facts['original_shape'].tolist()} -> {facts['resized_shape'].tolist()}, "
            f"inputs {inputs.shape} {inputs.dtype}, pipeline {elapsed:.2f}s",
            flush=True,
        )
    n = max(len(dataset), 1)
    print(f"wrote {len(dataset)} files to {out_dir}; pipeline {total / n:.3f} s/video (1 process)")


# ----------------------------------------------------------------------------- replay-frames mode


def formatshape_layout(inputs: Any) -> Any:
    """The same values in the strided layout FormatShape hands to the model.

    FormatShape transposes (crops, clips, T, H, W, C) frames into a non-contiguous NCTHW view;
    fp32 results depend on that layout at the 1e-8 level (a contiguous copy of the same uint8
    values gives pred_score differences of ~1e-8), so bit-exact replay needs the same strides.
    """
    import numpy as np

    views, c, t, h, w = inputs.shape
    crops = 3
    frames = np.ascontiguousarray(
        inputs.reshape(crops, views // crops, c, t, h, w).transpose(0, 1, 3, 4, 5, 2)
    )  # (crops, clips, T, H, W, C): the frame list FormatShape receives
    return frames.transpose(0, 1, 5, 2, 3, 4).reshape(views, c, t, h, w)


def run_replay_frames(args: argparse.Namespace) -> None:
    """Per-view logits of mmaction2's own model for the saved pipeline outputs."""
    import numpy as np
    import torch
    from mmaction.registry import MODELS
    from mmaction.structures import ActionDataSample

    cfg = load_config(args.config)
    model = MODELS.build(cfg.model).eval()
    state = torch.load(args.checkpoint, map_location="cpu")
    state = {re.sub(r"^module\.", "", k): v for k, v in state.get("state_dict", state).items()}
    model.load_state_dict(state, strict=False)
    dumped = None
    if args.dump:
        with open(args.dump, "rb") as f:
            dumped = pickle.load(f)
    names = [line.split(" ")[0] for line in Path(args.ann_file).read_text().splitlines() if line]
    stems, all_logits, all_scores, mismatches = [], [], [], 0
    for idx, name in enumerate(names):
        stem = Path(name).stem
        saved = np.load(Path(args.frames_out) / f"{stem}.npz")
        sample = ActionDataSample().set_gt_label(int(saved["label"]))
        batch = {"inputs": [torch.from_numpy(formatshape_layout(saved["inputs"]))]}
        batch["data_samples"] = [sample]
        with torch.no_grad():
            data = model.data_preprocessor(batch, False)
            logits = model._forward(data["inputs"], stage="head")  # (views, classes)
            score = model.cls_head.predict_by_feat(logits, data["data_samples"])[0].pred_score
        stems.append(stem)
        all_logits.append(logits.numpy())
        all_scores.append(score.numpy())
        line = f"{stem}: logits {tuple(logits.shape)}, top-1 {int(score.argmax())}"
        if dumped is not None:
            ref = dumped[idx]["pred_score"]
            same = torch.equal(score, ref)
            mismatches += not same
            line += (
                f", dump bit-identical {same} (max |diff| {float((score - ref).abs().max()):.3g})"
            )
        print(line, flush=True)
    if args.logits_out:
        Path(args.logits_out).parent.mkdir(parents=True, exist_ok=True)
        np.savez(
            args.logits_out,
            names=np.array(stems),
            logits=np.stack(all_logits),
            pred_score=np.stack(all_scores),
        )
        print(f"wrote {args.logits_out}")
    if mismatches:
        raise SystemExit(f"{mismatches} videos differ from the dump")


# ----------------------------------------------------------------------------- check-keys mode


def run_check_keys(args: argparse.Namespace) -> None:
    """Prove the checkpoint fills every tensor of mmaction2's model except pos_embed."""
    import torch
    from mmaction.registry import MODELS

    cfg = load_config(args.config)
    model = MODELS.build(cfg.model)
    if args.write_manifest:
        manifest: dict[str, list[list[Any]]] = {}
        for size in CONFIG_NAMES:
            sized = MODELS.build(load_config(size).model)
            manifest[size] = [[k, list(v.shape)] for k, v in sized.state_dict().items()]
        Path(args.write_manifest).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write_manifest).write_text(json.dumps(manifest) + "\n")
        print(f"wrote key manifest of mmaction2's models to {args.write_manifest}")
    if not args.checkpoint:
        return
    # the same unwrapping mmengine's runner applies (state_dict wrapper, leading 'module.')
    ckpt = torch.load(args.checkpoint, map_location="cpu")
    state = ckpt.get("state_dict", ckpt)
    state = {re.sub(r"^module\.", "", k): v for k, v in state.items()}
    result = model.load_state_dict(state, strict=False)
    missing, unexpected = set(result.missing_keys), set(result.unexpected_keys)
    model_state = model.state_dict()
    not_copied = [
        k for k, v in state.items() if k in model_state and not torch.equal(model_state[k], v)
    ]
    trivial = [k for k, v in state.items() if v.numel() > 1 and float(v.float().std()) == 0.0]
    print(f"checkpoint tensors {len(state)}, model tensors {len(model_state)}")
    print(f"missing: {sorted(missing)}")
    print(f"unexpected: {sorted(unexpected)}")
    print(f"not copied: {not_copied}; constant tensors: {trivial}")
    ok = missing == ALLOWED_MISSING and not unexpected and not not_copied and not trivial
    if not ok:
        raise SystemExit("key check FAILED")
    print("key check OK: only backbone.pos_embed missing, nothing unexpected, all tensors loaded")


# ----------------------------------------------------------------------------- entry point


def parse_args() -> argparse.Namespace:
    """Command line."""
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog=__doc__.split("\n\n", 1)[1],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--config", default="small", help="small | base | path to a config")
    parser.add_argument("--checkpoint", help="mmaction2-layout .pth")
    parser.add_argument("--ann-file", help="mmaction2 list file (name label per line)")
    parser.add_argument("--data-prefix", help="directory the list's names are relative to")
    parser.add_argument(
        "--dump",
        help="output .pkl of tools/test.py (+ a .json summary beside it); "
        "with --replay-frames: the dump to compare against",
    )
    parser.add_argument("--work-dir", default=".peers/work", help="tools/test.py --work-dir")
    parser.add_argument("--num-workers", type=int, default=2, help="test dataloader workers")
    parser.add_argument(
        "--cfg-options", nargs="*", default=[], help="extra key=value overrides for tools/test.py"
    )
    parser.add_argument("--quiet", action="store_true", help="do not echo tools/test.py output")
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--frames-only", action="store_true", help="dump pipeline outputs only")
    mode.add_argument("--check-keys", action="store_true", help="verify checkpoint keys only")
    mode.add_argument(
        "--replay-frames", action="store_true", help="model logits on --frames-only outputs"
    )
    parser.add_argument("--frames-out", help="--frames-only: directory for <stem>.npz files")
    parser.add_argument("--logits-out", help="--replay-frames: output .npz of logits/scores")
    parser.add_argument("--write-manifest", help="--check-keys: write mmaction2's keys/shapes JSON")
    args = parser.parse_args()
    needs: list[str] = []
    if args.check_keys:
        if not (args.checkpoint or args.write_manifest):
            needs = ["checkpoint or write_manifest"]
    elif args.frames_only:
        needs = [k for k in ("ann_file", "data_prefix", "frames_out") if not getattr(args, k)]
    elif args.replay_frames:
        needs = [k for k in ("checkpoint", "ann_file", "frames_out") if not getattr(args, k)]
    else:
        needs = [
            k for k in ("checkpoint", "ann_file", "data_prefix", "dump") if not getattr(args, k)
        ]
    if needs:
        parser.error("missing: " + ", ".join("--" + n.replace("_", "-") for n in needs))
    return args


def main() -> None:
    """Dispatch to the selected mode."""
    args = parse_args()
    if args.check_keys:
        run_check_keys(args)
    elif args.frames_only:
        run_frames_only(args)
    elif args.replay_frames:
        run_replay_frames(args)
    else:
        run_test(args)


if __name__ == "__main__":
    main()

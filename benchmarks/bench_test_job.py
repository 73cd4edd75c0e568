"""The seed command end to end, ours vs mmaction2 1.2.0, on the same videos and weights.

Why: the forward benchmark (bench_forward.py) times one view; what a user runs is the whole test
job, `tools/test.py CONFIG CKPT --dump X.pkl` (16x4x1 sampling, 5 clips x 3 crops): decoding,
sampling, resizing and cropping in DataLoader workers, the model over 15 views, aggregation and
the dump. This script runs that command for ours (fp32 and `--bf16`) and for mmaction2's own
tools/test.py (through benchmarks/peers/mmaction2_reference.py, run with the peer's python) on
the fixture of benchmarks/peers, and prints one table (written with --json):

* s/video: wall time of the whole subprocess (startup, model build, loop) / videos;
* loop s/v, model s, wait s: the test loop's own timing (ours: `timing` in the job's
  work_dir/metrics.json; mmaction2: its per-iteration `time` and `data_time` log fields);
  model/total = model s / loop s: how much of the loop the model is (1.0 = data never waits);
* decode s/v: our decode + sampling + transforms alone (no model), one process, one thread: the
  cost one DataLoader worker pays per video, so the loop is data-bound below decode / workers;
* PSS MiB: peak summed PSS of the process tree (main process + dataloader workers, shared pages
  counted once), sampled from /proc every 0.5 s by the peer harness' TreeMemorySampler (the same
  sampler measures mmaction2); RSS MiB: the peak RSS of the largest single process of the tree
  (wait4's ru_maxrss, which covers reaped workers too: what GNU time reports for mmaction2);
* mm/ours: mmaction2's s/video / ours (> 1: ours is faster); max|d| mm and top1=mm: max
  |pred_score difference| and top-1 agreement against mmaction2's dump (compare_dumps.py);
  max|d| fp32: the bf16 row against our fp32 dump.

Every setting is its own subprocess, so memory is per run; all share OMP/MKL threads (--threads).
The fixture (videos, list.txt, random mmaction2-layout weights) is made by make_fixture.py when
missing; --videos N uses the first N list lines. --tiny swaps the ViT for a 64-wide, 2-block one
(weights generated into the work dir, the protocol unchanged) for smoke tests.

    .venv/bin/python benchmarks/bench_test_job.py --models small,base --videos 8 --json bench.json
    .venv/bin/python benchmarks/bench_test_job.py --tiny --videos 1 --skip-peer    # seconds

The parent never imports torch until every run is over: a forked child's ru_maxrss starts from its
parent's RSS, so a heavy parent would inflate every RSS figure.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import re
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / "benchmarks" / "peers"
CONFIG_NAME = "vit-{}-p16_videomaev2-vit-g-dist-k710-pre_16x4x1_kinetics-400.py"
MODELS = ("small", "base")
# --tiny: the ViT-S config with a 64-wide, 2-block backbone; same pipeline, 400 classes.
TINY = dict(embed_dim=64, depth=2, num_heads=2)
# The same shrink in mmaction2's config keys (VisionTransformer + TimeSformerHead).
TINY_MMACTION2 = dict(
    embed_dims=TINY["embed_dim"], depth=TINY["depth"], num_heads=TINY["num_heads"]
)
RESULT_TAG = "BENCH_RESULT "


def _load_peer_module(name: str) -> ModuleType:
    """A script of benchmarks/peers (not a package) as a module; stdlib/numpy imports only."""
    spec = importlib.util.spec_from_file_location(f"peers_{name}", PEERS / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while it executes
    spec.loader.exec_module(module)
    return module


# ----------------------------------------------------------------------------- measuring a run
def run_measured(cmd: list[str], log: Path, env: dict[str, str]) -> dict[str, Any]:
    """Run `cmd` to completion, output to `log`; wall seconds, peak tree PSS, peak main RSS."""
    sampler_cls = _load_peer_module("mmaction2_reference").TreeMemorySampler
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "w") as out:
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT)
        sampler = sampler_cls(proc.pid)
        sampler.start()
        # wait4 rather than proc.wait(): it also hands back the child's resource usage
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
    peak_pss_kib = sampler.stop()
    return dict(
        returncode=proc.returncode,
        wall_s=wall,
        peak_pss_tree_mib=peak_pss_kib / 1024,
        peak_rss_main_mib=usage.ru_maxrss / 1024,  # kB on Linux
    )


def _check(result: dict[str, Any], log: Path) -> None:
    if result["returncode"] != 0:
        tail = log.read_text()[-2000:]
        raise RuntimeError(f"exit {result['returncode']} (log {log}):\n{tail}")


def _worker_result(log: Path) -> dict[str, Any]:
    for line in reversed(log.read_text().splitlines()):
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    raise RuntimeError(f"no result line in {log}")


# ----------------------------------------------------------------------------- worker jobs
def decode_only(config: str, overrides: list[str]) -> dict[str, Any]:
    """Our test dataset (decode, sample, resize, crop, format) iterated without a model.

    One process with one intra-op thread, as the job's DataLoader workers run (`_worker_init`).
    """
    import torch

    from videomae2.config import TestConfig, apply_overrides, load_config
    from videomae2.engine.evaluate import build_dataset

    torch.set_num_threads(1)
    try:
        import cv2

        cv2.setNumThreads(1)
    except ImportError:
        pass
    cfg = apply_overrides(load_config(config, TestConfig), overrides)
    dataset = build_dataset(cfg)
    times, failed = [], []
    for i in range(len(dataset)):
        t0 = time.perf_counter()
        item = dataset[i]
        times.append(time.perf_counter() - t0)
        if item["inputs"] is None:
            failed.append(f"{dataset.path(i)}: {item['error']}")
    return dict(
        videos=len(times),
        decode_s=times,
        per_video_s=sum(times) / max(len(times), 1),
        failed=failed,
    )


def write_tiny_checkpoint(path: str) -> dict[str, Any]:
    """Random mmaction2-layout weights of the --tiny ViT, built like the fixture's checkpoints."""
    import torch

    fixture = _load_peer_module("make_fixture")
    shapes = fixture.spec_state_shapes(TINY["embed_dim"], TINY["depth"])
    gen = torch.Generator().manual_seed(10_000)
    torch.save({k: fixture.random_tensor(k, s, gen) for k, s in shapes}, path)
    return dict(path=path, tensors=len(shapes))


WORKER_JOBS = {"decode": decode_only, "tiny_checkpoint": write_tiny_checkpoint}


def run_worker(job: str, kwargs: dict[str, Any], log: Path, env: dict[str, str]) -> dict:
    """A WORKER_JOBS entry in a fresh interpreter (our venv), measured like the test runs."""
    spec = json.dumps(dict(job=job, kwargs=kwargs))
    cmd = [sys.executable, str(Path(__file__).resolve()), "--worker", spec]
    measured = run_measured(cmd, log, env)
    _check(measured, log)
    return {**_worker_result(log), **measured}


# ----------------------------------------------------------------------------- the test jobs
def run_ours(
    size: str, precision: str, ckpt: Path, overrides: list[str], work: Path, env: dict[str, str]
) -> dict[str, Any]:
    """Our tools/test.py with --dump; timing from the job's metrics.json."""
    name = f"ours_{precision}"
    job_dir, dump = work / size / name, work / size / f"{name}.pkl"
    (job_dir / "metrics.json").unlink(missing_ok=True)  # never read a previous run's numbers
    cmd = [
        sys.executable,
        str(ROOT / "tools" / "test.py"),
        str(config_path(size)),
        str(ckpt),
        "--dump",
        str(dump),
        "--work-dir",
        str(job_dir),
        *(["--bf16"] if precision == "bf16" else []),
        "--cfg-options",
        *overrides,
    ]
    log = work / size / f"{name}.log"
    measured = run_measured(cmd, log, env)
    _check(measured, log)
    summary = json.loads((job_dir / "metrics.json").read_text())
    timing = summary["timing"]
    return dict(
        measured,
        dump=str(dump),
        videos=summary["num_videos"],
        failed=summary["num_failed"],
        loop_s=timing["total_s"],
        loop_s_per_video=timing["per_video_s"],
        model_s=timing["model_s"],
        data_wait_s=timing["data_wait_s"],
    )


def parse_mmengine_times(log: str) -> tuple[list[float], list[float]]:
    """Per-iteration (time, data_time) of mmengine's 'Epoch(test) [i/N] eta: ...' lines.

    mmengine's IterTimerHook: data_time is the wait for the batch, time the whole iteration
    including it; the closing [N/N] metrics line (no 'eta:') repeats means and is skipped.
    """
    rows: dict[int, tuple[float, float]] = {}
    pattern = r"Epoch\(test\)\s*\[\s*(\d+)/\d+\]\s+eta:.*?\btime: ([\d.]+)\s+data_time: ([\d.]+)"
    for m in re.finditer(pattern, log):
        rows[int(m.group(1))] = (float(m.group(2)), float(m.group(3)))
    ordered = [rows[i] for i in sorted(rows)]
    return [t for t, _ in ordered], [d for _, d in ordered]


def run_mmaction2(
    size: str,
    peer_python: Path,
    ckpt: Path,
    list_file: Path,
    videos: Path,
    args: argparse.Namespace,
    env: dict[str, str],
) -> dict[str, Any]:
    """mmaction2's tools/test.py through the peer harness, which measures it the same way."""
    work = args.work_dir / size
    job_dir, dump = work / "mmaction2", work / "mmaction2.pkl"
    dump.with_suffix(".json").unlink(missing_ok=True)
    cmd = [
        str(peer_python),
        str(PEERS / "mmaction2_reference.py"),
        "--config",
        "small" if size == "tiny" else size,
        "--checkpoint",
        str(ckpt),
        "--ann-file",
        str(list_file),
        "--data-prefix",
        str(videos),
        "--dump",
        str(dump),
        "--work-dir",
        str(job_dir),
        "--num-workers",
        str(args.num_workers),
        "--quiet",
    ]
    if size == "tiny":
        backbone = [f"model.backbone.{k}={v}" for k, v in TINY_MMACTION2.items()]
        cmd += ["--cfg-options", *backbone, f"model.cls_head.in_channels={TINY['embed_dim']}"]
    log = work / "mmaction2.log"
    _check(run_measured(cmd, log, env), log)  # the harness' own overhead is not reported
    ref = json.loads(dump.with_suffix(".json").read_text())
    times, data_times = parse_mmengine_times((job_dir / "reference_stdout.log").read_text())
    loop_s, wait_s = sum(times), sum(data_times)
    return dict(
        returncode=0,
        dump=str(dump),
        videos=ref["videos"],
        failed=ref["videos"] - ref["dumped"],
        wall_s=ref["wall_s"],
        peak_pss_tree_mib=ref["peak_pss_process_tree_mib"],
        peak_rss_main_mib=ref["peak_rss_single_process_mib"],
        loop_s=loop_s if times else None,
        loop_s_per_video=loop_s / len(times) if times else None,
        # iteration time minus batch wait: the model plus mmengine's per-iteration hooks
        model_s=loop_s - wait_s if times else None,
        data_wait_s=wait_s if times else None,
    )


# ----------------------------------------------------------------------------- inputs
def config_path(size: str) -> Path:
    """Our model-zoo config of `size` (--tiny starts from ViT-S's)."""
    return (
        ROOT
        / "configs/recognition/videomaev2"
        / CONFIG_NAME.format("small" if size == "tiny" else size)
    )


def prepare_fixture(fixture: Path, sizes: list[str], env: dict[str, str]) -> None:
    """Make what the fixture lacks with make_fixture.py (videos once, weights per size)."""
    have_videos = (fixture / "list.txt").is_file()
    missing = [s for s in sizes if not (fixture / f"vit-{s}_random_mmaction2.pth").is_file()]
    if have_videos and not missing:
        return
    cmd = [sys.executable, str(PEERS / "make_fixture.py"), "--out-dir", str(fixture)]
    cmd += ["--sizes", *missing] + ([] if not have_videos else ["--skip-videos"])
    print("making the fixture:", " ".join(cmd), file=sys.stderr, flush=True)
    subprocess.run(cmd, check=True, env=env, cwd=ROOT)


def trimmed_list(list_file: Path, n: int | None, work: Path) -> tuple[Path, int]:
    """The first `n` entries of the list (all with None), written into the work dir."""
    lines = [line for line in list_file.read_text().splitlines() if line.strip()]
    lines = lines[:n] if n else lines
    if not lines:
        raise ValueError(f"{list_file}: no videos")
    out = work / f"list_{len(lines)}.txt"
    out.write_text("".join(line + "\n" for line in lines))
    return out, len(lines)


def child_env(threads: int) -> dict[str, str]:
    """Our environment with every library's thread pool pinned to `threads`."""
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    src = str(ROOT / "src")  # the worker imports videomae2 even without an editable install
    env["PYTHONPATH"] = os.pathsep.join(p for p in (src, env.get("PYTHONPATH")) if p)
    return env


# ----------------------------------------------------------------------------- report
def add_comparisons(rows: list[dict[str, Any]]) -> None:
    """Speed ratio and dump differences against mmaction2 (and bf16 against fp32), in place."""
    compare_dumps = _load_peer_module("compare_dumps")  # unpickling the dumps imports torch
    by_key = {(r["model"], r["run"]): r for r in rows if "error" not in r}
    for r in rows:
        if "error" in r:
            continue
        r["s_per_video"] = r["wall_s"] / r["videos"]
        r["model_over_total"] = r["model_s"] / r["loop_s"] if r.get("loop_s") else None
        mm, fp32 = by_key.get((r["model"], "mmaction2")), by_key.get((r["model"], "ours-fp32"))
        r["ratio_vs_mmaction2"] = r["max_abs_diff_vs_mmaction2"] = r["top1_agree_mmaction2"] = None
        r["max_abs_diff_vs_ours_fp32"] = None
        if mm is not None and r is not mm:
            r["ratio_vs_mmaction2"] = (mm["wall_s"] / mm["videos"]) / r["s_per_video"]
            c = compare_dumps.compare(compare_dumps.load(r["dump"]), compare_dumps.load(mm["dump"]))
            r["max_abs_diff_vs_mmaction2"] = c["max_abs_diff"]
            r["top1_agree_mmaction2"] = c["same_pred_label"] / c["videos"]
        if fp32 is not None and r["run"] == "ours-bf16":
            c = compare_dumps.compare(
                compare_dumps.load(r["dump"]), compare_dumps.load(fp32["dump"])
            )
            r["max_abs_diff_vs_ours_fp32"] = c["max_abs_diff"]


def _fmt(v: float | None, spec: str) -> str:
    """`format(v, spec)`, or a '-' as wide as the spec's width for a missing value."""
    width = int(re.match(r"\d*", spec).group() or 0)
    return "-".rjust(width) if v is None else format(v, spec)


def format_table(rows: list[dict[str, Any]], decode: dict[str, Any], notes: list[str]) -> str:
    """One line per (model, run); the columns of the module docstring."""
    head = (
        f"{'model':6} {'run':10} {'videos':>6} {'s/video':>8} {'loop s/v':>8} {'model s':>8} "
        f"{'wait s':>7} {'mdl/tot':>7} {'decode s/v':>10} {'PSS MiB':>8} {'RSS MiB':>8} "
        f"{'mm/ours':>7} {'max|d| mm':>9} {'top1=mm':>7} {'max|d| fp32':>11}"
    )
    lines = [head]
    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:6} {r['run']:10} ERROR {r['error']}")
            continue
        dec = decode["per_video_s"] if r["run"].startswith("ours") else None
        lines.append(
            f"{r['model']:6} {r['run']:10} {r['videos']:>6} {r['s_per_video']:8.3f} "
            f"{_fmt(r['loop_s_per_video'], '8.3f')} {_fmt(r['model_s'], '8.2f')} "
            f"{_fmt(r['data_wait_s'], '7.2f')} {_fmt(r['model_over_total'], '7.2f')} "
            f"{_fmt(dec, '10.3f')} {r['peak_pss_tree_mib']:8.0f} {r['peak_rss_main_mib']:8.0f} "
            f"{_fmt(r['ratio_vs_mmaction2'], '7.2f')} "
            f"{_fmt(r['max_abs_diff_vs_mmaction2'], '9.2e')} "
            f"{_fmt(r['top1_agree_mmaction2'], '7.2f')} "
            f"{_fmt(r['max_abs_diff_vs_ours_fp32'], '11.2e')}"
        )
    lines.append(
        f"decode only (ours, 1 process, 1 thread): {decode['per_video_s']:.3f} s/video over "
        f"{decode['videos']} videos, peak PSS {decode['peak_pss_tree_mib']:.0f} MiB"
    )
    lines += [f"note: {n}" for n in notes]
    return "\n".join(lines)


# ----------------------------------------------------------------------------- entry point
def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def build_parser() -> argparse.ArgumentParser:
    """Command line."""
    p = argparse.ArgumentParser(
        prog="bench_test_job",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--models", type=_csv, default=list(MODELS), help="small,base")
    p.add_argument("--videos", type=int, default=None, help="first N entries of the list (all)")
    p.add_argument(
        "--threads",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="intra-op threads of every run (OMP/MKL_NUM_THREADS, test_cfg.threads)",
    )
    p.add_argument("--num-workers", type=int, default=2, help="test DataLoader workers")
    p.add_argument("--skip-peer", action="store_true", help="no mmaction2 rows")
    p.add_argument(
        "--peer-python",
        type=Path,
        default=ROOT / ".peers/mmaction2/bin/python",
        help="python of the mmaction2 1.2.0 venv (`make peers`); rows skipped when missing",
    )
    p.add_argument(
        "--fixture",
        type=Path,
        default=ROOT / ".peers/fixture",
        help="videos/, list.txt, vit-{size}_random_mmaction2.pth (made when missing)",
    )
    p.add_argument("--work-dir", type=Path, default=ROOT / ".peers/work/bench_test_job")
    p.add_argument(
        "--tiny",
        action="store_true",
        help="64-wide 2-block ViT with generated weights instead of --models (smoke)",
    )
    p.add_argument("--json", type=Path, default=None, help="write everything to this JSON file")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return p


def main(argv: list[str] | None = None) -> int:
    """Run every setting, print the table, optionally write JSON; 1 when a run failed."""
    args = build_parser().parse_args(argv)
    if args.worker is not None:  # a subprocess of run_worker
        spec = json.loads(args.worker)
        print(RESULT_TAG + json.dumps(WORKER_JOBS[spec["job"]](**spec["kwargs"])), flush=True)
        return 0
    unknown = sorted(set(args.models) - set(MODELS))
    if unknown:
        raise SystemExit(f"--models: unknown {unknown}; choose from {','.join(MODELS)}")
    sizes = ["tiny"] if args.tiny else args.models
    work = args.work_dir = args.work_dir.resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = child_env(args.threads)
    fixture = args.fixture.resolve()
    prepare_fixture(fixture, [] if args.tiny else sizes, env)
    list_file, n_videos = trimmed_list(fixture / "list.txt", args.videos, work)
    videos = fixture / "videos"
    overrides = [
        f"test_dataloader.dataset.ann_file={list_file}",
        f"test_dataloader.dataset.data_prefix.video={videos}",
        f"test_dataloader.num_workers={args.num_workers}",
        f"test_cfg.threads={args.threads}",
    ]
    if args.tiny:
        overrides += [f"model.backbone.{k}={v}" for k, v in TINY.items()]

    notes: list[str] = []
    peer = not args.skip_peer and args.peer_python.exists()
    if not args.skip_peer and not peer:
        notes.append(f"mmaction2 rows skipped: no peer python at {args.peer_python}")
    elif args.skip_peer:
        notes.append("mmaction2 rows skipped (--skip-peer)")
    load_before = os.getloadavg()[0]

    checkpoints = {s: fixture / f"vit-{s}_random_mmaction2.pth" for s in sizes}
    if args.tiny:
        checkpoints["tiny"] = work / "vit-tiny_random_mmaction2.pth"
        run_worker("tiny_checkpoint", dict(path=str(checkpoints["tiny"])), work / "tiny.log", env)
    print(f"decode only: {n_videos} videos", file=sys.stderr, flush=True)
    decode = run_worker(
        "decode",
        dict(config=str(config_path(sizes[0])), overrides=overrides),
        work / "decode.log",
        env,
    )
    rows: list[dict[str, Any]] = []
    for size in sizes:
        runs = ["ours-fp32", "ours-bf16"] + (["mmaction2"] if peer else [])
        for run in runs:
            print(f"{size} {run}: {n_videos} videos", file=sys.stderr, flush=True)
            try:
                if run == "mmaction2":
                    result = run_mmaction2(
                        size, args.peer_python, checkpoints[size], list_file, videos, args, env
                    )
                else:
                    precision = run.removeprefix("ours-")
                    result = run_ours(size, precision, checkpoints[size], overrides, work, env)
            except (RuntimeError, OSError, KeyError, ValueError) as e:
                result = dict(error=str(e).splitlines()[0][:200])
            rows.append(dict(model=size, run=run, **result))
    add_comparisons(rows)
    print(format_table(rows, decode, notes))
    if args.json is not None:
        report = dict(
            command=["bench_test_job.py", *(sys.argv[1:] if argv is None else argv)],
            machine=dict(
                processor=platform.processor() or platform.machine(),
                cpu_count=os.cpu_count(),
                threads=args.threads,
                num_workers=args.num_workers,
                # other work on the machine inflates the times: record how busy it was
                loadavg_1min_before_after=[load_before, os.getloadavg()[0]],
            ),
            videos=n_videos,
            list_file=str(list_file),
            checkpoints={k: str(v) for k, v in checkpoints.items()},
            decode=decode,
            rows=rows,
            notes=notes,
        )
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(report, indent=1) + "\n")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())

"""One pretraining step (forward + backward + AdamW), dual masking vs the v1 decoder, side by side.

    python benchmarks/bench_pretrain_step.py                       # ViT-B, 16x224, fp32 + bf16
    python benchmarks/bench_pretrain_step.py --steps 3 --warmup 1 --json out.json
    python benchmarks/bench_pretrain_step.py --tiny                # a seconds-long smoke run

Settings: encoder tube masking 0.9 in both; the decoder either reconstructs half of all tokens
(running cell 0.5: dual masking, 784 decoded tokens for p16) or every hidden token (v1: 1408).
Each (precision, decoder) setting runs in a fresh subprocess, so its peak resident memory
(`ru_maxrss`) is its own; the RSS after building model + optimizer is reported as well, so the
step's own memory is the difference. Times are medians over `--steps` timed steps after
`--warmup` untimed ones, on the CPU (this benchmark's target) unless `--device cuda`.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time

SETTINGS = {"dual": ("run_cell", 0.5), "v1": ("none", 0.0)}
TINY = dict(
    embed_dim=64, depth=2, num_heads=2, decoder_embed_dim=32, decoder_num_heads=2, decoder_depth=1
)


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def saved_activation_mb(model, videos, mask, dmask, device, precision) -> float:
    """Bytes autograd keeps for backward during one forward + loss (distinct storages).

    Exact and immune to other processes' load, unlike RSS: the memory dual masking saves.
    """
    import torch

    from videomae2.engine.train_utils import autocast
    from videomae2.losses import pretrain_loss

    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    cfg = model.config
    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        with autocast(device, precision):
            pred = model(videos, mask, dmask)
            loss = pretrain_loss(
                videos, pred, mask, dmask, patch_size=cfg.patch_size, tubelet_size=cfg.tubelet_size
            )
    params = {p.untyped_storage().data_ptr() for p in model.parameters()}
    del loss, pred
    return sum(n for ptr, n in seen.items() if ptr not in params) / 2**20


def child(spec: dict) -> dict:
    """Build, warm up and time one setting; returns the measurements (runs in a subprocess)."""
    import torch

    from videomae2.engine.train_utils import autocast, select_precision
    from videomae2.losses import pretrain_loss
    from videomae2.masking import decoder_mask, tube_mask
    from videomae2.models.registry import create_model
    from videomae2.optim import build_adamw, param_groups

    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    device = torch.device(spec["device"])
    torch.manual_seed(0)
    overrides = dict(num_frames=spec["frames"], img_size=spec["size"])
    if spec["tiny"]:
        overrides.update(TINY)
    model = create_model(spec["model"], **overrides).to(device).train()
    if spec["grad_checkpointing"]:
        model.set_grad_checkpointing(True)
    opt = build_adamw(param_groups(model, 0.05), lr=1e-4)
    precision = select_precision(spec["precision"], device)
    cfg = model.config
    B = spec["batch"]
    videos = torch.randn(B, 3, spec["frames"], spec["size"], spec["size"], device=device)
    g = torch.Generator().manual_seed(0)
    mask = tube_mask(B, model.grid, 0.9, g)
    kind, ratio = SETTINGS[spec["setting"]]
    dmask = decoder_mask(kind, mask, model.grid, ratio, g)
    mask, dmask = mask.to(device), dmask.to(device)
    rss_built = _rss_mb()

    def sync() -> None:
        if device.type == "cuda":
            torch.cuda.synchronize()

    times: dict[str, list[float]] = {"step": [], "forward": [], "backward": [], "optimizer": []}
    for i in range(spec["warmup"] + spec["steps"]):
        sync()
        t0 = time.perf_counter()
        with autocast(device, precision):
            pred = model(videos, mask, dmask)
            loss = pretrain_loss(
                videos, pred, mask, dmask, patch_size=cfg.patch_size, tubelet_size=cfg.tubelet_size
            )
        sync()
        t1 = time.perf_counter()
        loss.backward()
        sync()
        t2 = time.perf_counter()
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync()
        t3 = time.perf_counter()
        if i >= spec["warmup"]:
            for k, v in zip(times, (t3 - t0, t1 - t0, t2 - t1, t3 - t2)):
                times[k].append(v)
    out = {k: statistics.median(v) for k, v in times.items()}
    out["step_min"] = min(times["step"])  # least disturbed by other processes on a shared host
    out["saved_activations_mb"] = saved_activation_mb(model, videos, mask, dmask, device, precision)
    out.update(
        decoded_tokens=int(pred.shape[1]),
        visible_tokens=int((~mask[0]).sum()),
        loss_tokens=int((mask & ~dmask)[0].sum()),
        rss_built_mb=rss_built,
        peak_rss_mb=_rss_mb(),
        loss=float(loss),
        all_step_times=times["step"],
    )
    if device.type == "cuda":
        out["peak_cuda_mb"] = torch.cuda.max_memory_allocated() / 2**20
    return out


def run_setting(spec: dict) -> dict:
    proc = subprocess.run(
        [sys.executable, __file__, "--_child", json.dumps(spec)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"setting {spec} failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="pretrain_videomae_base_patch16_224")
    parser.add_argument("--steps", type=int, default=3, help="timed steps per setting")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--frames", type=int, default=16)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--precisions", default="fp32,bf16", help="comma list: fp32,bf16,fp16")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--grad-checkpointing", action="store_true")
    parser.add_argument("--tiny", action="store_true", help="a tiny model at 8x64 (smoke run)")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._child:
        print(json.dumps(child(json.loads(args._child))))
        return 0
    if args.tiny:
        args.frames, args.size = 8, 64

    load0 = os.getloadavg()[0]
    rows = []
    for precision in args.precisions.split(","):
        for setting in SETTINGS:
            spec = dict(
                model=args.model,
                setting=setting,
                precision=precision,
                steps=args.steps,
                warmup=args.warmup,
                batch=args.batch,
                frames=args.frames,
                size=args.size,
                device=args.device,
                threads=args.threads,
                tiny=args.tiny,
                grad_checkpointing=args.grad_checkpointing,
            )
            result = run_setting(spec)
            rows.append({**spec, **result})
            print(f"  done {precision} {setting}: {result['step']:.3f} s/step", file=sys.stderr)

    import torch

    head = (
        f"{args.model}{' (tiny)' if args.tiny else ''}, batch {args.batch}, "
        f"{args.frames}x{args.size}, {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads() if not args.threads else args.threads} threads, "
        f"median of {args.steps} steps after {args.warmup} warmup, "
        f"load average before/after {load0:.1f}/{os.getloadavg()[0]:.1f}"
    )
    print(head)
    cols = (
        "precision decoder  vis  dec loss  step_s    fwd_s    bwd_s    opt_s  rss_built  peak_rss"
    )
    print(cols)
    for r in rows:
        print(
            f"{r['precision']:<9} {r['setting']:<7} {r['visible_tokens']:>4} "
            f"{r['decoded_tokens']:>4} {r['loss_tokens']:>4} {r['step']:>7.3f} "
            f"{r['forward']:>8.3f} {r['backward']:>8.3f} "
            f"{r['optimizer']:>8.3f} {r['rss_built_mb']:>8.0f}MB {r['peak_rss_mb']:>7.0f}MB"
            f" {r['saved_activations_mb']:>8.0f}MB {r['step_min']:>8.3f}"
        )
    ratios = {}
    for precision in args.precisions.split(","):
        d = next(r for r in rows if r["precision"] == precision and r["setting"] == "dual")
        v = next(r for r in rows if r["precision"] == precision and r["setting"] == "v1")
        act_d = d["peak_rss_mb"] - d["rss_built_mb"]
        act_v = v["peak_rss_mb"] - v["rss_built_mb"]
        ratios[precision] = dict(
            time_v1_over_dual=v["step"] / d["step"],
            min_time_v1_over_dual=v["step_min"] / d["step_min"],
            saved_activations_v1_over_dual=v["saved_activations_mb"] / d["saved_activations_mb"],
            peak_rss_v1_over_dual=v["peak_rss_mb"] / d["peak_rss_mb"],
            step_memory_v1_over_dual=act_v / act_d if act_d > 0 else None,
        )
        mem = f"{act_v / act_d:.2f}x" if act_d > 0 else "n/a"
        print(
            f"{precision}: v1 / dual = {v['step'] / d['step']:.2f}x median step time "
            f"({v['step_min'] / d['step_min']:.2f}x fastest step), "
            f"{v['saved_activations_mb'] / d['saved_activations_mb']:.2f}x saved activations, "
            f"{v['peak_rss_mb'] / d['peak_rss_mb']:.2f}x peak RSS, {mem} step memory "
            "(peak - built, includes grads + AdamW state)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                dict(header=head, platform=platform.platform(), rows=rows, ratios=ratios),
                f,
                indent=2,
            )
        print(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

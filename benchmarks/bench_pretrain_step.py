"""One pretraining step (forward + backward + AdamW), dual masking vs the v1 decoder, side by side.

    python benchmarks/bench_pretrain_step.py                       # ViT-B, 16x224, fp32 + bf16
    python benchmarks/bench_pretrain_step.py --steps 3 --warmup 1 --rounds 3 --json out.json
    python benchmarks/bench_pretrain_step.py --tiny                # a seconds-long smoke run

Settings: encoder tube masking 0.9 in both; the decoder either reconstructs half of all tokens
(running cell 0.5: dual masking, 784 decoded tokens for p16) or every hidden token (v1: 1408).
`dual-ckpt` is dual masking with activation checkpointing on every encoder and decoder block: its
time over `dual`'s is checkpointing's cost. GFLOP/s counts a step as 3x the forward's matmul
FLOPs (patch embedding, blocks, encoder-to-decoder projection, head; backward = 2x forward) and
`%peak` divides it by a plain F.linear at ViT-B's fc1 shape (benchlib.linear_peak_gflops),
measured in the same subprocess and precision just before the steps.
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

# name: (decoder mask, decoder mask ratio, activation checkpointing)
SETTINGS = {
    "dual": ("run_cell", 0.5, False),
    "v1": ("none", 0.0, False),
    "dual-ckpt": ("run_cell", 0.5, True),
}
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


def block_flops(n: int, d: int, hidden: int) -> int:
    """Matmul FLOPs of one transformer block over n tokens of width d (qkv, QK^T, AV, proj, MLP)."""
    return 2 * (n * d * 3 * d + 2 * n * n * d + n * d * d + 2 * n * d * hidden)


def pretrain_forward_flops(cfg, n_all: int, n_vis: int, n_dec: int) -> int:
    """Matmul FLOPs of the pretraining model's forward for one clip: the patch embedding runs on
    all tokens, the encoder on the visible ones, the decoder on visible + decoded, the head on
    the decoded ones."""
    patch = cfg.in_chans * cfg.tubelet_size * cfg.patch_size**2
    d, dd = cfg.embed_dim, cfg.decoder_embed_dim
    enc = cfg.depth * block_flops(n_vis, d, int(d * cfg.mlp_ratio))
    dec = cfg.decoder_depth * block_flops(n_vis + n_dec, dd, int(dd * cfg.mlp_ratio))
    return 2 * n_all * d * patch + enc + 2 * n_vis * d * dd + dec + 2 * n_dec * dd * patch


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
    from benchlib import linear_peak_gflops

    peak = linear_peak_gflops(spec["precision"], device)
    model = create_model(spec["model"], **overrides).to(device).train()
    kind, ratio, checkpointing = SETTINGS[spec["setting"]]
    if checkpointing:
        model.set_grad_checkpointing(True)
    opt = build_adamw(param_groups(model, 0.05), lr=1e-4)
    precision = select_precision(spec["precision"], device)
    cfg = model.config
    B = spec["batch"]
    videos = torch.randn(B, 3, spec["frames"], spec["size"], spec["size"], device=device)
    g = torch.Generator().manual_seed(0)
    mask = tube_mask(B, model.grid, 0.9, g)
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
    n_vis, n_dec = int((~mask[0]).sum()), int(pred.shape[1])
    flops = 3 * B * pretrain_forward_flops(cfg, mask.shape[1], n_vis, n_dec)
    out.update(
        step_gflop=flops / 1e9,
        peak_gflops=peak,
        decoded_tokens=n_dec,
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


def merge_rounds(results: list[dict]) -> dict:
    """One row from a setting's rounds: median times, fastest step, rates from the median step;
    `round_steps` keeps each round's median for within-round ratios."""
    out = dict(results[0])
    for key in ("step", "forward", "backward", "optimizer", "peak_gflops"):
        out[key] = statistics.median(r[key] for r in results)
    out["step_min"] = min(r["step_min"] for r in results)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in results)
    out["gflops"] = out["step_gflop"] / out["step"]
    out["pct_of_peak"] = 100 * out["gflops"] / out["peak_gflops"]
    out["round_steps"] = [r["step"] for r in results]
    out["all_step_times"] = [t for r in results for t in r["all_step_times"]]
    return out


def within_round_ratio(a: dict, b: dict) -> float:
    """Median over rounds of a's step time / b's step time in the same round."""
    return statistics.median(x / y for x, y in zip(a["round_steps"], b["round_steps"]))


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
    parser.add_argument(
        "--settings", default=",".join(SETTINGS), help=f"comma list of {','.join(SETTINGS)}"
    )
    parser.add_argument("--rounds", type=int, default=1, help="runs of every setting, alternated")
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
    settings = args.settings.split(",")
    runs: dict[tuple[str, str], list[dict]] = {}
    for r in range(args.rounds):
        # every round runs every setting once, in alternating order, so that a machine whose
        # speed drifts affects all settings alike; ratios are taken within a round
        for precision in args.precisions.split(","):
            for setting in settings if r % 2 == 0 else settings[::-1]:
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
                )
                result = run_setting(spec)
                runs.setdefault((precision, setting), []).append({**spec, **result})
                print(
                    f"  round {r + 1}/{args.rounds} {precision} {setting}: "
                    f"{result['step']:.3f} s/step",
                    file=sys.stderr,
                )
    rows = [merge_rounds(v) for v in runs.values()]

    import torch

    head = (
        f"{args.model}{' (tiny)' if args.tiny else ''}, batch {args.batch}, "
        f"{args.frames}x{args.size}, {args.device}, torch {torch.__version__}, "
        f"{torch.get_num_threads() if not args.threads else args.threads} threads, "
        f"median of {args.steps} steps after {args.warmup} warmup x {args.rounds} rounds, "
        f"load average before/after {load0:.1f}/{os.getloadavg()[0]:.1f}"
    )
    print(head)
    cols = (
        "precision decoder    vis  dec loss  step_s    fwd_s    bwd_s    opt_s  rss_built  peak_rss"
        "  saved_act  min_step  GFLOP/s  %peak"
    )
    print(cols)
    for r in rows:
        print(
            f"{r['precision']:<9} {r['setting']:<9} {r['visible_tokens']:>4} "
            f"{r['decoded_tokens']:>4} {r['loss_tokens']:>4} {r['step']:>7.3f} "
            f"{r['forward']:>8.3f} {r['backward']:>8.3f} "
            f"{r['optimizer']:>8.3f} {r['rss_built_mb']:>8.0f}MB {r['peak_rss_mb']:>7.0f}MB"
            f" {r['saved_activations_mb']:>8.0f}MB {r['step_min']:>8.3f}"
            f" {r['gflops']:>8.1f} {r['pct_of_peak']:>5.1f}"
        )
    ratios = {}
    for precision in args.precisions.split(","):
        by = {r["setting"]: r for r in rows if r["precision"] == precision}
        if "dual" in by and "dual-ckpt" in by:
            cost = within_round_ratio(by["dual-ckpt"], by["dual"])
            saved = by["dual-ckpt"]["saved_activations_mb"] / by["dual"]["saved_activations_mb"]
            print(
                f"{precision}: activation checkpointing costs {cost:.2f}x step time and keeps "
                f"{saved:.2f}x the saved activations"
            )
            ratios.setdefault(precision, {}).update(
                checkpointing_time_cost=cost, checkpointing_saved_activations=saved
            )
        if "dual" not in by or "v1" not in by:
            continue
        d, v = by["dual"], by["v1"]
        act_d = d["peak_rss_mb"] - d["rss_built_mb"]
        act_v = v["peak_rss_mb"] - v["rss_built_mb"]
        ratios.setdefault(precision, {}).update(
            time_v1_over_dual=within_round_ratio(v, d),
            min_time_v1_over_dual=v["step_min"] / d["step_min"],
            saved_activations_v1_over_dual=v["saved_activations_mb"] / d["saved_activations_mb"],
            peak_rss_v1_over_dual=v["peak_rss_mb"] / d["peak_rss_mb"],
            step_memory_v1_over_dual=act_v / act_d if act_d > 0 else None,
        )
        mem = f"{act_v / act_d:.2f}x" if act_d > 0 else "n/a"
        print(
            f"{precision}: v1 / dual = {within_round_ratio(v, d):.2f}x median step time "
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

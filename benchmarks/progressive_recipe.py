"""The progressive recipe on the built-in generated data: scratch vs pretrained vs pretrained +
post-pretrained vs distilled, top-1 under the multi-view test protocol.

VideoMAE V2's model zoo is built in stages (finetune-distill.md §7-8): self-supervised
pretraining, supervised post-pretraining on a union label space (Kinetics-710), fine-tuning on a
target set whose head rows come from the union head, and distillation of the big post-pretrained
model into small students on the union data. This script runs the same stages at demo scale, on
the output folder of `videomae2 demo`, reusing its dataset, its pretraining checkpoint and its two
fine-tuned models (rows 1-2), and prints one table:

1. scratch: the demo's from-scratch model (target train set, 600 steps);
2. pretrained: the demo's model fine-tuned from the dual-masking checkpoint (600 steps);
3. post-pretrained, head rows mapped: the pretraining checkpoint trained on a *union* label space
   (the Kinetics-710 analogue) built with `make-index-map --build-union` from the target label map
   and a second labelled set (the demo's unlabeled pool with its labels, a label map in another
   order and spelling); the target model is that network with the target's head rows selected
   (`W_target = W_union[index]`) and no more training;
4. post-pretrained + target fine-tuning: row 3 fine-tuned briefly on the target train set from
   the mapped head (the recipe's short, low-lr `vit_g_k710_it_k400_ft` stage);
5. distilled student: a smaller ViT (width 64 instead of 96), from a random init, trained on the
   union data to match the post-pretrained union model (KL at T=1, `videomae2 distill`), then
   mapped to the target's head rows as in row 3;
6. the same student trained on the union labels for the same steps (the baseline row 5 must beat).

Every number is the `tools/test.py` multi-view protocol (5 clips x 3 crops) on the demo's 80
validation videos.

    videomae2 demo --out demo_out                             # rows 1-2 (and the inputs)
    .venv/bin/python benchmarks/progressive_recipe.py demo_out  # rows 3-6, the table, JSON
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

from videomae2 import demo
from videomae2.config import to_dict

STUDENT = dict(embed_dim=64, depth=4, num_heads=2)


def write_source_set(info) -> tuple[Path, Path]:
    """The second labelled dataset of the union: the demo's unlabeled pool, labelled, under a
    label map in reversed order with other spellings (as K600 / K700 word some classes apart)."""
    order = info.class_names[::-1]
    spelled = [n.replace(" ", "_").capitalize() for n in order]  # "Moving_left"
    label_map = info.root / "source_label_map.txt"
    label_map.write_text("".join(f"{n}\n" for n in spelled))
    ann = info.root / "source_list.txt"
    pool = [v for v in info.videos if v.split == "unlabeled"]
    ann.write_text("".join(f"{v.filename} {order.index(v.class_name)}\n" for v in pool))
    return ann, label_map


def select_head_rows(src: Path, index: list[int], dst: Path) -> Path:
    """A copy of a classifier checkpoint with only the head rows `index` (W[index], b[index])."""
    from videomae2.engine import train_utils as U

    ck = U.load_checkpoint(src)
    state = dict(ck["model"])
    state["head.weight"] = state["head.weight"][index].clone()
    state["head.bias"] = state["head.bias"][index].clone()
    cfg = dict(ck.get("model_config") or {})
    if cfg:
        cfg["num_classes"] = len(index)
    U.save_checkpoint({**ck, "model": state, "model_config": cfg}, dst)
    return dst


def run_test(out: Path, name: str, weights: Path, info, arch: dict) -> dict:
    """The seed's test command on the demo's val split; returns top-1 / top-5."""
    from videomae2.cli import main as cli_main

    cfg = demo.test_config(info, demo.FULL)
    backbone = dataclasses.replace(cfg.model.backbone, **arch)
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, backbone=backbone))
    cfg_path = out / f"test_config_{name}.py"
    demo.write_config_file(cfg, cfg_path)
    work = out / f"test_{name}"
    command = [str(cfg_path), str(weights), "--dump", str(out / f"result_{name}.pkl")]
    command += ["--work-dir", str(work)]
    print("  python tools/test.py " + " ".join(command), flush=True)
    cli_main(["test", *command])
    m = json.loads((work / "metrics.json").read_text())
    return {"top1": m["acc/top1"], "top5": m["acc/top5"], "weights": str(weights)}


def union_finetune_cfg(info, work: Path, init: str, lists: dict, epochs: int, arch: dict):
    """Fine-tuning on the union label space: both training lists, labels mapped by index list."""
    cfg = demo.finetune_config(info, demo.FULL, work, init)
    cfg.model = dataclasses.replace(cfg.model, **arch)
    cfg.data = dataclasses.replace(
        cfg.data,
        ann_files=(str(info.train_list), str(lists["source_list"])),
        data_prefixes=(str(info.video_dir), str(info.video_dir)),
        label_indices=(str(lists["to_target"]), str(lists["to_source"])),
        val_label_index=str(lists["to_target"]),
    )
    cfg.train = dataclasses.replace(cfg.train, epochs=epochs, save_ckpt_freq=epochs)
    return cfg


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("demo_out", type=Path, help="the output folder of `videomae2 demo` (full plan)")
    p.add_argument("--out", type=Path, help="where to write (default: DEMO_OUT/progressive)")
    p.add_argument("--union-epochs", type=int, default=7, help="90 steps each (default 7 = 630)")
    p.add_argument("--target-epochs", type=int, default=5, help="40 steps each (default 5)")
    p.add_argument("--json", type=Path, help="also write the table here")
    a = p.parse_args(argv)

    from videomae2.data.generated import DatasetInfo
    from videomae2.engine.distill import DistillJobConfig, TeacherConfig, run_distill
    from videomae2.engine.finetune import run_finetune
    from videomae2.label_space import build_union

    summary_path = a.demo_out / "results.json"
    if not summary_path.is_file():
        sys.exit(f"{summary_path} not found: run `videomae2 demo --out {a.demo_out}` first")
    summary = json.loads(summary_path.read_text())
    if summary["plan"] != dataclasses.asdict(demo.FULL):
        sys.exit(f"{a.demo_out} was written by another demo plan (--quick?); rerun the full demo")
    out = a.out or a.demo_out / "progressive"
    out.mkdir(parents=True, exist_ok=True)
    info = DatasetInfo.read(a.demo_out / "dataset")
    pretrain_ckpt = sorted((a.demo_out / "pretrain").glob("checkpoint-*.pth"))[-1]
    t0 = time.perf_counter()
    rows: dict[str, dict] = {}
    for name in ("scratch", "pretrained"):
        r = summary["results"][name]
        rows[name] = {"top1": r["top1"], "top5": r["top5"], "weights": r["weights"]}

    # the union label space: source map first, so the target's index list is a permutation
    source_list, source_map = write_source_set(info)
    union, (to_source, to_target) = build_union([source_map, info.label_map])
    (out / "label_map_union.txt").write_text("".join(f"{n}\n" for n in union))
    lists = {"source_list": source_list}
    for key, idx in (("to_source", to_source), ("to_target", to_target)):
        (out / f"label_union_{key}.json").write_text(json.dumps(idx) + "\n")
        lists[key] = out / f"label_union_{key}.json"
    print(f"union: {len(union)} classes; target -> union rows {to_target}", flush=True)
    print(
        f"  (= videomae2 make-index-map --build-union {source_map} {info.label_map} "
        f"--out-dir {out})"
    )

    print("\n=== post-pretraining on the union label space", flush=True)
    post = run_finetune(
        union_finetune_cfg(
            info, out / "post_pretrain", str(pretrain_ckpt), lists, a.union_epochs, {}
        )
    )
    mapped = select_head_rows(Path(post["final_model"]), to_target, out / "post_mapped.pth")
    rows["post-pretrained, head rows mapped"] = run_test(out, "post_mapped", mapped, info, {})

    print("\n=== target fine-tuning from the post-pretrained model", flush=True)
    cfg = demo.finetune_config(info, demo.FULL, out / "post_target", post["final_model"])
    cfg.model = dataclasses.replace(cfg.model, head_index=str(lists["to_target"]))
    cfg.optim = dataclasses.replace(
        cfg.optim, base_lr=cfg.optim.base_lr / 4, min_lr=cfg.optim.min_lr / 4, warmup_epochs=1
    )
    cfg.train = dataclasses.replace(cfg.train, epochs=a.target_epochs, val_every=a.target_epochs)
    target = run_finetune(cfg)
    rows["post-pretrained + target fine-tune"] = run_test(
        out, "post_target", Path(target["final_model"]), info, {}
    )

    print("\n=== distilling the post-pretrained union model into a smaller student", flush=True)
    for name, kd in (("distilled student", True), ("student, labels only", False)):
        work = out / ("student_kd" if kd else "student_ce")
        ft = union_finetune_cfg(info, work, "", lists, a.union_epochs, STUDENT)
        if kd:
            fields = {f.name: getattr(ft, f.name) for f in dataclasses.fields(ft)}
            job = DistillJobConfig(
                **fields, teacher=TeacherConfig(checkpoint=post["final_model"], input="mixed")
            )
            final = Path(run_distill(job)["final_model"])
        else:
            final = Path(run_finetune(ft)["final_model"])
        mapped = select_head_rows(final, to_target, work / "mapped.pth")
        rows[name] = run_test(out, work.name, mapped, info, STUDENT)

    seconds = time.perf_counter() - t0
    result = {
        "demo_out": str(a.demo_out),
        "union_epochs": a.union_epochs,
        "target_epochs": a.target_epochs,
        "student": STUDENT,
        "rows": rows,
        "seconds_rows_3_to_6": seconds,
        "target_finetune_config": to_dict(cfg),
    }
    (out / "table.json").write_text(json.dumps(result, indent=2) + "\n")
    if a.json:
        a.json.write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nrows 3-6 took {seconds / 60:.1f} min; everything is under {out}")
    print("multi-view test (5 clips x 3 crops) on the demo's 80 validation videos, chance 10%:")
    print(f"{'model':<38} {'top-1':>7} {'top-5':>7}")
    for name, r in rows.items():
        print(f"{name:<38} {r['top1']:>7.1%} {r['top5']:>7.1%}")
    return 0


if __name__ == "__main__":
    torch.set_num_threads(max(1, torch.get_num_threads()))
    raise SystemExit(main())

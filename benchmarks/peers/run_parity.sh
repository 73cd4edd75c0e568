#!/usr/bin/env bash
# Seed-job parity against mmaction2 1.2.0 on the generated fixture: same videos, same random
# mmaction2-layout weights; every pred_score must agree to 1e-4.
#   usage: benchmarks/peers/run_parity.sh [small|base]     (from the repo root; `make peers` first)
set -euo pipefail
size=${1:-small}
fx=.peers/fixture
peer=.peers/mmaction2/bin/python
[ -x "$peer" ] || { echo "mmaction2 peer missing: run 'make peers' first" >&2; exit 2; }
[ -f "$fx/vit-${size}_random_mmaction2.pth" ] || .venv/bin/python benchmarks/peers/make_fixture.py --sizes "$size"
if [ ! -f "$fx/ref/${size}.pkl" ]; then
  "$peer" benchmarks/peers/mmaction2_reference.py --config "$size" \
    --checkpoint "$fx/vit-${size}_random_mmaction2.pth" --ann-file "$fx/list.txt" \
    --data-prefix "$fx/videos" --dump "$fx/ref/${size}.pkl" --work-dir ".peers/work/$size" --num-workers 2
fi
.venv/bin/python tools/test.py \
  "configs/recognition/videomaev2/vit-${size}-p16_videomaev2-vit-g-dist-k710-pre_16x4x1_kinetics-400.py" \
  "$fx/vit-${size}_random_mmaction2.pth" --dump ".peers/work/ours_${size}.pkl" \
  --work-dir ".peers/work/ours_${size}" \
  --cfg-options "test_dataloader.dataset.ann_file=$fx/list.txt" \
  "test_dataloader.dataset.data_prefix.video=$fx/videos" test_dataloader.num_workers=2
.venv/bin/python benchmarks/peers/compare_dumps.py ".peers/work/ours_${size}.pkl" "$fx/ref/${size}.pkl"

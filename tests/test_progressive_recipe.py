"""benchmarks/progressive_recipe.py's own pieces: the second labelled set of the union label space
and the head-row selection that maps a union model to the target's classes. (The whole script
needs a full `videomae2 demo` output, minutes of training: it is run by hand, see its docstring.)"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest
import torch

from videomae2.data.annotations import parse_video_list, read_label_map
from videomae2.data.generated import make_dataset
from videomae2.label_space import build_union, normalize_name

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "progressive_recipe.py"


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("progressive_recipe", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_source_set_and_union_map_labels_to_the_same_class_names(recipe, tmp_path):
    info = make_dataset(
        tmp_path / "d", classes=4, videos_per_class=2, unlabeled_per_class=2,
        short_side=(32, 32), frame_range=(8, 12), workers=1, style="demo", shared_scenes=True,
    )  # fmt: skip
    ann, label_map = recipe.write_source_set(info)
    source_names = read_label_map(label_map)
    target_names = read_label_map(info.label_map)
    assert source_names != target_names  # another order and spelling: the map is not identity
    union, (to_source, to_target) = build_union([label_map, info.label_map])
    assert len(union) == 4 and to_target != list(range(4))
    records = parse_video_list(ann)
    unlabeled = {v.filename: v.class_name for v in info.videos if v.split == "unlabeled"}
    assert {r.filename for r in records} == set(unlabeled)  # exactly the unlabeled pool
    for r in records:  # the source label, through the union, is the video's own class
        assert normalize_name(union[to_source[r.label]]) == unlabeled[r.filename]
    for i, name in enumerate(target_names):
        assert normalize_name(union[to_target[i]]) == name


def test_select_head_rows_keeps_the_named_rows_and_the_rest(recipe, tmp_path):
    from videomae2.engine import train_utils as U

    state = {"w": torch.randn(3, 2), "head.weight": torch.randn(5, 4), "head.bias": torch.randn(5)}
    U.save_checkpoint(
        {"model": state, "model_config": {"num_classes": 5}, "step": 7}, tmp_path / "a"
    )
    index = [4, 0, 2]
    recipe.select_head_rows(tmp_path / "a", index, tmp_path / "b")
    out = U.load_checkpoint(tmp_path / "b")
    assert torch.equal(out["model"]["head.weight"], state["head.weight"][index])
    assert torch.equal(out["model"]["head.bias"], state["head.bias"][index])
    assert torch.equal(out["model"]["w"], state["w"]) and out["step"] == 7
    assert out["model_config"] == {"num_classes": 3}

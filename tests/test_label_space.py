"""Label spaces: index lists by class name with the known renamings, unions, head-row init."""

import json

import pytest
import torch

from videomae2.cli import main
from videomae2.label_space import (
    KNOWN_RENAMES,
    build_union,
    canonical_name,
    index_list,
    load_renames,
    normalize_name,
    remap_labels,
)

UNION = [
    "abseiling",
    "dyeing hair",
    "sipping cup",
    "inflating balloons",
    "air drumming",
    "skiing mono",
]


def test_normalize_name():
    assert normalize_name("  Air_Drumming ") == "air drumming"
    assert normalize_name('"passing  American football (in game)"') == (
        "passing american football (in game)"
    )


def test_spec_renames_are_built_in():
    r = load_renames()
    assert canonical_name("dying hair", r) == "dyeing hair"
    assert canonical_name("drinking", r) == "sipping cup"
    assert canonical_name("balloon blowing", r) == "inflating balloons"
    assert canonical_name("skiing (not slalom or crosscountry)", r) == "skiing mono"
    assert len(KNOWN_RENAMES) >= 4


def test_index_list_matches_by_name_through_renames():
    target = ["air drumming", "dying hair", "drinking", "Abseiling", "balloon blowing"]
    assert index_list(UNION, target) == [4, 1, 2, 0, 3]
    # entry i = union row of target class i, so W_target = W_union[idx] keeps class meaning
    w = torch.arange(len(UNION)).float()[:, None]
    idx = index_list(UNION, target)
    assert [int(w[i]) for i in idx] == [
        UNION.index(n)
        for n in ("air drumming", "dyeing hair", "sipping cup", "abseiling", "inflating balloons")
    ]


def test_unknown_names_are_all_listed():
    with pytest.raises(ValueError) as e:
        index_list(UNION, ["abseiling", "juggling", "dying hair", "yodelling"])
    msg = str(e.value)
    assert "2 class(es)" in msg and "1 'juggling'" in msg and "3 'yodelling'" in msg


def test_extra_renames_file_and_chains(tmp_path):
    path = tmp_path / "renames.json"
    path.write_text(json.dumps({"jugglng": "juggling balls", "juggling balls": "juggling"}))
    r = load_renames(path)
    assert canonical_name("Jugglng", r) == "juggling"  # chain followed
    assert index_list(["juggling", "x"], ["jugglng"], r) == [0]
    only = load_renames({"a": "b"}, builtin=False)
    assert "dying hair" not in only
    with pytest.raises(ValueError, match="cycle"):
        canonical_name("a", load_renames({"a": "b", "b": "a"}, builtin=False))
    bad = tmp_path / "bad.json"
    bad.write_text("[1, 2]")
    with pytest.raises(ValueError, match="alias"):
        load_renames(bad)


def test_clash_inside_one_map_is_an_error():
    with pytest.raises(ValueError, match="same after normalisation"):
        index_list(UNION, ["drinking", "sipping cup"])


def test_build_union_merges_renamed_classes():
    k400 = ["abseiling", "dying hair", "drinking"]
    k600 = ["dyeing hair", "abseiling", "juggling"]
    k700 = ["sipping cup", "yodelling"]
    names, lists = build_union([k400, k600, k700])
    assert names == ["abseiling", "dyeing hair", "sipping cup", "juggling", "yodelling"]
    assert lists == [[0, 1, 2], [1, 0, 3], [2, 4]]
    for src, idx in zip([k400, k600, k700], lists):
        assert index_list(names, src) == idx


def test_remap_labels():
    assert remap_labels([0, 2, 1], [5, 7, 9]) == [5, 9, 7]
    with pytest.raises(ValueError, match="entry 1 has label 3"):
        remap_labels([0, 3], [5, 7, 9])


def test_cli_index_and_union(tmp_path):
    (tmp_path / "union.txt").write_text("\n".join(UNION) + "\n")
    (tmp_path / "k400.txt").write_text("drinking\nabseiling\n")
    out = tmp_path / "map.json"
    args = ["make-index-map", "--union", str(tmp_path / "union.txt")]
    assert main([*args, "--target", str(tmp_path / "k400.txt"), "-o", str(out)]) == 0
    assert json.loads(out.read_text()) == [2, 0]
    (tmp_path / "k600.txt").write_text("Dyeing_Hair\njuggling\n")
    d = tmp_path / "u"
    files = [str(tmp_path / "k400.txt"), str(tmp_path / "k600.txt")]
    assert main(["make-index-map", "--build-union", *files, "--out-dir", str(d)]) == 0
    assert (d / "label_map_union.txt").read_text().split("\n")[:4] == [
        "sipping cup",
        "abseiling",
        "Dyeing_Hair",
        "juggling",
    ]
    assert json.loads((d / "label_union_to_k600.json").read_text()) == [2, 3]
    for sub in ("a", "b"):  # equal stems: the parent folder disambiguates the output names
        (tmp_path / sub).mkdir()
        (tmp_path / sub / "label_map.txt").write_text(f"{sub} class\nabseiling\n")
    files = [str(tmp_path / "a" / "label_map.txt"), str(tmp_path / "b" / "label_map.txt")]
    assert main(["make-index-map", "--build-union", *files, "--out-dir", str(d)]) == 0
    assert json.loads((d / "label_union_to_b_label_map.json").read_text()) == [2, 1]
    (tmp_path / "bad.txt").write_text("yodelling\n")
    with pytest.raises(ValueError, match="yodelling"):
        main([*args, "--target", str(tmp_path / "bad.txt"), "-o", str(out)])


def test_head_rows_from_union_head(tmp_path):
    """Fine-tuning on a target set: head rows initialised from the union head by the index."""
    from videomae2.engine.finetune import FinetuneModelConfig, build_classifier, init_weights

    tiny = dict(arch="vit_small_patch16_224", embed_dim=32, depth=1, num_heads=2)
    union = build_classifier(FinetuneModelConfig(num_classes=6, **tiny), 4, 32)
    torch.save({"model": union.state_dict()}, tmp_path / "union.pth")
    idx = [3, 0, 5]
    (tmp_path / "idx.json").write_text(json.dumps(idx))
    mc = FinetuneModelConfig(
        num_classes=3,
        pretrained=str(tmp_path / "union.pth"),
        head_index=str(tmp_path / "idx.json"),
        **tiny,
    )
    target = build_classifier(mc, 4, 32)
    init_weights(target, mc)
    assert torch.equal(target.head.weight, union.head.weight[idx])
    assert torch.equal(target.head.bias, union.head.bias[idx])
    assert torch.equal(target.fc_norm.weight, union.fc_norm.weight)
    # without the index the 6-row head does not fit: it starts fresh, with a note
    mc2 = FinetuneModelConfig(num_classes=3, pretrained=str(tmp_path / "union.pth"), **tiny)
    fresh = build_classifier(mc2, 4, 32)
    before = fresh.head.weight.clone()
    report = init_weights(fresh, mc2)
    assert "starts fresh" in report and torch.equal(fresh.head.weight, before)
    assert torch.equal(fresh.blocks[0].mlp.fc1.weight, union.blocks[0].mlp.fc1.weight)

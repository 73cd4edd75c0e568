"""Typed configs: overrides are strict and typed; round trips are lossless."""

import pytest

from videomae2.config import (
    TestConfig,
    apply_overrides,
    from_dict,
    load_config,
    to_dict,
)


def test_mmaction2_style_overrides():
    cfg = apply_overrides(
        TestConfig(),
        [
            "test_dataloader.dataset.ann_file=lists/val.txt",
            "test_dataloader.dataset.data_prefix.video=/videos",
            "test_dataloader.num_workers=2",
            "test_dataloader.batch_size=4",
            "model.cls_head.average_clips=score",
            "test_evaluator.topk=[1,3]",
            "test_cfg.strict=true",
        ],
    )
    assert cfg.test_dataloader.dataset.ann_file == "lists/val.txt"
    assert cfg.test_dataloader.dataset.data_prefix.video == "/videos"
    assert cfg.test_dataloader.num_workers == 2 and cfg.test_dataloader.batch_size == 4
    assert cfg.model.cls_head.average_clips == "score"
    assert cfg.test_evaluator.topk == (1, 3)
    assert cfg.test_cfg.strict is True
    apply_overrides(cfg, ["model.cls_head.average_clips=None"])
    assert cfg.model.cls_head.average_clips is None


@pytest.mark.parametrize(
    "item,match",
    [
        ("test_dataloader.num_worker=2", "unknown config key.*num_workers"),
        ("test_dataloader.num_workers=two", "expected an integer"),
        ("test_cfg.strict=maybe", "true/false"),
        ("model=3", "is a section"),
        ("test_dataloader.num_workers", "key=value"),
    ],
)
def test_bad_overrides_name_the_key(item, match):
    with pytest.raises(ValueError, match=match):
        apply_overrides(TestConfig(), [item])


def test_round_trip_and_strict_from_dict():
    cfg = apply_overrides(TestConfig(), ["test_dataloader.batch_size=3"])
    assert from_dict(TestConfig, to_dict(cfg)) == cfg
    bad = to_dict(cfg)
    bad["test_dataloader"]["batch"] = 1
    with pytest.raises(ValueError, match="batch"):
        from_dict(TestConfig, bad)


def test_load_config_file(tmp_path):
    path = tmp_path / "c.py"
    path.write_text("from videomae2.config import TestConfig\nconfig = TestConfig(work_dir='w')\n")
    assert load_config(path, TestConfig).work_dir == "w"
    (tmp_path / "bad.py").write_text("x = 1\n")
    with pytest.raises(ValueError, match="config"):
        load_config(tmp_path / "bad.py")
    with pytest.raises(FileNotFoundError):
        load_config(tmp_path / "missing.py")

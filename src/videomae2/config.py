"""Typed configs: dataclasses, config files, strict dotted `key=value` overrides.

A config file is a Python file that builds one dataclass instance and binds it to `config`
(no inheritance chains: each file means what it says). Overrides use the same dotted keys as
mmaction2 (`test_dataloader.dataset.ann_file=...`), are type-checked against the dataclass field
they hit, and an unknown key is an error that lists the valid ones. The resolved config is a plain
dict (`to_dict`) written next to results and into checkpoints.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import runpy
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# ----------------------------------------------------------------------------------------------
# The test job (mmaction2's config names, so users' --cfg-options keep working)


@dataclass
class BackboneConfig:
    """The classifier: a registry name plus `create_model` overrides (None = the arch's own)."""

    arch: str = "vit_base_patch16_224"
    num_frames: int = 16
    img_size: int = 224
    pos_interp: str = "sinusoid"
    embed_dim: int | None = None
    depth: int | None = None
    num_heads: int | None = None
    patch_size: int | None = None

    def create_kwargs(self) -> dict:
        """The `create_model` overrides this section asks for."""
        kw = dict(num_frames=self.num_frames, img_size=self.img_size, pos_interp=self.pos_interp)
        for name in ("embed_dim", "depth", "num_heads", "patch_size"):
            if getattr(self, name) is not None:
                kw[name] = getattr(self, name)
        return kw


@dataclass
class HeadConfig:
    num_classes: int = 400
    average_clips: str | None = "prob"


@dataclass
class PreprocessorConfig:
    mean: tuple[float, float, float] = (123.675, 116.28, 103.53)
    std: tuple[float, float, float] = (58.395, 57.12, 57.375)
    format_shape: str = "NCTHW"


@dataclass
class ModelConfig:
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    cls_head: HeadConfig = field(default_factory=HeadConfig)
    data_preprocessor: PreprocessorConfig = field(default_factory=PreprocessorConfig)


@dataclass
class SampleFramesConfig:
    clip_len: int = 16
    frame_interval: int = 4
    num_clips: int = 5
    test_mode: bool = True
    out_of_bound_opt: str = "loop"
    twice_sample: bool = False


@dataclass
class PipelineConfig:
    """mmaction2's test pipeline: SampleFrames -> Decode -> Resize(-1, short) -> crop -> NCTHW."""

    sample_frames: SampleFramesConfig = field(default_factory=SampleFramesConfig)
    resize_short: int = 224
    crop: str = "three_crop"  # or "center_crop"
    crop_size: int = 224


@dataclass
class DataPrefix:
    video: str = "data/kinetics400/videos_val"


@dataclass
class DatasetConfig:
    ann_file: str = "data/kinetics400/kinetics400_val_list_videos.txt"
    data_prefix: DataPrefix = field(default_factory=DataPrefix)
    pipeline: PipelineConfig = field(default_factory=PipelineConfig)
    decode_backend: str = "pyav"


@dataclass
class DataLoaderConfig:
    batch_size: int = 1
    num_workers: int = 8
    persistent_workers: bool = True
    prefetch_factor: int = 2
    dataset: DatasetConfig = field(default_factory=DatasetConfig)


@dataclass
class EvaluatorConfig:
    metrics: tuple[str, ...] = ("top_k_accuracy", "mean_class_accuracy")
    topk: tuple[int, ...] = (1, 5)


@dataclass
class TestRuntimeConfig:
    """How to run (not what to compute): none of these change results except `precision`."""

    device: str = "auto"  # auto | cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 (opt-in autocast)
    compile: bool = False
    # 0 = auto: 1 on the CPU (each block's activations stay in cache: 1.0-1.45x faster than 15
    # views at once and half the memory, benchmarks/bench_views_per_forward.py), every view of a
    # batch at once on a GPU
    max_views_per_forward: int = 0
    threads: int = 0  # intra-op threads for the model; 0 = all cores not used by workers
    strict: bool = False  # abort at the first unreadable video


@dataclass
class TestConfig:
    __test__ = False  # not a pytest class

    model: ModelConfig = field(default_factory=ModelConfig)
    test_dataloader: DataLoaderConfig = field(default_factory=DataLoaderConfig)
    test_evaluator: EvaluatorConfig = field(default_factory=EvaluatorConfig)
    test_cfg: TestRuntimeConfig = field(default_factory=TestRuntimeConfig)
    work_dir: str = ""


# ----------------------------------------------------------------------------------------------
# Generic machinery


def load_config(path: str | Path, expected: type | None = None) -> Any:
    """Run a config file and return its `config` object (optionally checking its type)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    namespace = runpy.run_path(str(path))
    if "config" not in namespace:
        raise ValueError(f"{path}: a config file must bind its dataclass instance to `config`")
    cfg = namespace["config"]
    if expected is not None and not isinstance(cfg, expected):
        raise ValueError(
            f"{path}: `config` is a {type(cfg).__name__}, expected a {expected.__name__}"
        )
    return cfg


def _parse_literal(text: str) -> Any:
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        pass
    if text.startswith("[") and text.endswith("]"):  # mmaction2 style: key="[a,b]" unquoted
        return [_parse_literal(t.strip()) for t in text[1:-1].split(",") if t.strip()]
    return text


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Convert a parsed override to the annotated field type, or explain why not."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ValueError as e:
                errors.append(str(e))
        raise ValueError(f"{key}: {value!r} does not fit {tp}: {'; '.join(errors)}")
    if origin in (tuple, list):
        if isinstance(value, str | int | float):
            value = [value]
        if not isinstance(value, list | tuple):
            raise ValueError(f"{key}: expected a list, got {value!r}")
        args = typing.get_args(tp)
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ValueError(f"{key}: expected {len(args)} values, got {list(value)}")
            return tuple(_coerce(v, a, key) for v, a in zip(value, args))
        item = args[0] if args else Any
        return origin(_coerce(v, item, key) for v in value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        if value in (0, 1):
            return bool(value)
        raise ValueError(f"{key}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ValueError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        return str(value)
    if tp is Any:
        return value
    raise ValueError(f"{key}: cannot set a field of type {tp}")


def _field_types(obj: Any) -> dict[str, Any]:
    hints = typing.get_type_hints(type(obj))
    return {f.name: hints[f.name] for f in dataclasses.fields(obj)}


def set_by_path(cfg: Any, key: str, raw: str) -> None:
    """Set `a.b.c` in a nested dataclass from its text form, type-checked."""
    parts = key.split(".")
    obj = cfg
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(obj):
            raise ValueError(f"{key}: {'.'.join(parts[:i])} is not a section")
        types_ = _field_types(obj)
        if part not in types_:
            where = ".".join(parts[:i]) or "the top level"
            raise ValueError(f"unknown config key {key!r}: {where} has {sorted(types_)}")
        if i == len(parts) - 1:
            tp = types_[part]
            if dataclasses.is_dataclass(getattr(obj, part)):
                raise ValueError(f"{key} is a section; set one of its fields")
            setattr(obj, part, _coerce(_parse_literal(raw), tp, key))
        else:
            obj = getattr(obj, part)


def apply_overrides(cfg: Any, overrides: list[str] | None) -> Any:
    """Apply `key=value` strings in order (the value is parsed as a Python literal if it is one)."""
    for item in overrides or []:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like key=value")
        key, raw = item.split("=", 1)
        set_by_path(cfg, key.strip(), raw.strip())
    return cfg


def to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def from_dict(cls: type, data: dict, _path: str = "") -> Any:
    """Rebuild a nested dataclass from `to_dict` output, strictly (for checkpoints, resumes)."""
    types_ = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ValueError(f"unknown config key(s) {unknown} under {_path or 'the top level'}")
    values = {}
    for name, value in data.items():
        tp = types_[name]
        key = f"{_path}.{name}" if _path else name
        if dataclasses.is_dataclass(tp):
            values[name] = from_dict(tp, value, key)
        else:
            values[name] = _coerce(value, tp, key) if value is not None else None
    return cls(**values)


def dump_json(cfg: Any, path: str | Path) -> None:
    Path(path).write_text(json.dumps(to_dict(cfg), indent=2, default=str) + "\n")

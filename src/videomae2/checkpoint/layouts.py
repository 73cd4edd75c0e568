"""Key tables of every checkpoint layout and pure ``dict -> dict`` converters (spec/model.md §5).

The model's own parameter names ARE the original VideoMAE V2 layout, so "original" is the hub:
every layout has exactly one table ``original <-> layout`` and any-to-any conversion goes through
it. Tables are written as rows of templates (``{i}`` = block index, ``{p}`` = weight/bias) that
read like the spec table; the same row serves both directions, so a rename can never be
implemented differently one way than the other.

Two things are not renames and are done as explicit, documented steps:

* HF splits the fused ``qkv`` weight into ``query``/``key``/``value``. The original side is
  expanded into pseudo keys ``…attn.qkv.weight[q|k|v]`` first, which the table then renames.
* HF has no layer scale. Converting TO HF folds ``gamma_1`` into the rows of the attention output
  projection and ``gamma_2`` into the rows of ``fc2`` (``gamma ⊙ (W x + b) = (gamma·W) x +
  gamma·b``). The result computes the same function, but converting back yields a model without
  gammas: the round trip is exact only for models without layer scale.

Keys that match no row pass through unchanged, so the loader can report them by name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

import torch

from videomae2.checkpoint.errors import CheckpointError
from videomae2.models.layers import sinusoid_table

Tensor = torch.Tensor
StateDict = dict[str, Tensor]

ORIGINAL = "original"
ORIGINAL_PRETRAIN = "original-pretrain"
MMACTION2 = "mmaction2"
HF = "hf"
HF_PRETRAIN = "hf-pretrain"
LAYOUTS = (ORIGINAL, ORIGINAL_PRETRAIN, MMACTION2, HF, HF_PRETRAIN)
PRETRAIN_LAYOUTS = frozenset({ORIGINAL_PRETRAIN, HF_PRETRAIN})

# Pseudo keys for the three row blocks of the fused qkv weight (q, k, v order, spec §5.1).
QKV = "attn.qkv.weight"
QKV_PARTS = ("q", "k", "v")

# Per-block sub-keys: (original, mmaction2, HF). None = not a plain rename in that layout.
_BLOCK_ROWS: tuple[tuple[str, str | None, str | None], ...] = (
    ("norm1.{p}", "norm1.{p}", "layernorm_before.{p}"),
    ("attn.q_bias", "attn.q_bias", "attention.attention.query.bias"),
    ("attn.v_bias", "attn.v_bias", "attention.attention.value.bias"),
    (QKV, QKV, None),
    (f"{QKV}[q]", None, "attention.attention.query.weight"),
    (f"{QKV}[k]", None, "attention.attention.key.weight"),
    (f"{QKV}[v]", None, "attention.attention.value.weight"),
    ("attn.proj.{p}", "attn.proj.{p}", "attention.output.dense.{p}"),
    ("norm2.{p}", "norm2.{p}", "layernorm_after.{p}"),
    ("mlp.fc1.{p}", "mlp.layers.0.0.{p}", "intermediate.dense.{p}"),
    ("mlp.fc2.{p}", "mlp.layers.1.{p}", "output.dense.{p}"),
    ("gamma_1", "gamma_1", None),  # HF: folded into attention.output.dense
    ("gamma_2", "gamma_2", None),  # HF: folded into output.dense
)
_MM, _HF = 1, 2  # column of _BLOCK_ROWS


def _block_rows(column: int, orig_prefix: str, other_prefix: str) -> list[tuple[str, str]]:
    return [
        (orig_prefix + row[0], other_prefix + row[column])
        for row in _BLOCK_ROWS
        if row[column] is not None
    ]


def _compile(template: str) -> re.Pattern[str]:
    parts = re.split(r"(\{i\}|\{p\})", template)
    regex = "".join(
        r"(?P<i>\d+)" if s == "{i}" else "(?P<p>weight|bias)" if s == "{p}" else re.escape(s)
        for s in parts
    )
    return re.compile(regex)


class KeyTable:
    """Bidirectional rename table ``original <-> layout`` built from template rows."""

    def __init__(self, name: str, rows: list[tuple[str, str]]) -> None:
        self.name = name
        self.rows = tuple(rows)
        self._fwd = [(_compile(a), b) for a, b in rows]
        self._bwd = [(_compile(b), a) for a, b in rows]

    @staticmethod
    def _apply(rules: list[tuple[re.Pattern[str], str]], key: str) -> str | None:
        for pattern, template in rules:
            m = pattern.fullmatch(key)
            if m:
                return template.format(**m.groupdict())
        return None

    def to_layout(self, key: str) -> str | None:
        """Original name -> this layout's name (None if no row matches)."""
        return self._apply(self._fwd, key)

    def to_original(self, key: str) -> str | None:
        """This layout's name -> original name (None if no row matches)."""
        return self._apply(self._bwd, key)


MMACTION2_TABLE = KeyTable(
    MMACTION2,
    [
        ("patch_embed.proj.{p}", "backbone.patch_embed.projection.{p}"),
        ("pos_embed", "backbone.pos_embed"),
        *_block_rows(_MM, "blocks.{i}.", "backbone.blocks.{i}."),
        ("fc_norm.{p}", "backbone.fc_norm.{p}"),
        ("norm.{p}", "backbone.norm.{p}"),
        ("head.{p}", "cls_head.fc_cls.{p}"),
    ],
)

HF_TABLE = KeyTable(
    HF,
    [
        ("patch_embed.proj.{p}", "videomae.embeddings.patch_embeddings.projection.{p}"),
        *_block_rows(_HF, "blocks.{i}.", "videomae.encoder.layer.{i}."),
        ("fc_norm.{p}", "fc_norm.{p}"),
        ("norm.{p}", "videomae.layernorm.{p}"),
        ("head.{p}", "classifier.{p}"),
    ],
)

HF_PRETRAIN_TABLE = KeyTable(
    HF_PRETRAIN,
    [
        ("encoder.patch_embed.proj.{p}", "videomae.embeddings.patch_embeddings.projection.{p}"),
        *_block_rows(_HF, "encoder.blocks.{i}.", "videomae.encoder.layer.{i}."),
        ("encoder.norm.{p}", "videomae.layernorm.{p}"),
        ("encoder_to_decoder.weight", "encoder_to_decoder.weight"),
        ("mask_token", "mask_token"),
        *_block_rows(_HF, "decoder.blocks.{i}.", "decoder.decoder_layers.{i}."),
        ("decoder.norm.{p}", "decoder.norm.{p}"),
        ("decoder.head.{p}", "decoder.head.{p}"),
    ],
)

TABLES: dict[str, KeyTable] = {
    MMACTION2: MMACTION2_TABLE,
    HF: HF_TABLE,
    HF_PRETRAIN: HF_PRETRAIN_TABLE,
}

# transformers writes the q/v biases under their 4.x names on disk (save_pretrained reverses its
# load-time renaming; checked against transformers 5.24 conversion_mapping.py) and accepts both.
HF_LEGACY_BIAS_NAMES = (
    ("attention.attention.query.bias", "attention.attention.q_bias"),
    ("attention.attention.value.bias", "attention.attention.v_bias"),
)
_HF_KEY_BIAS = "attention.attention.key.bias"
HF_BASE_PREFIX = "videomae."
HF_BASE_KEYS = ("embeddings.patch_embeddings.", "encoder.layer.", "layernorm.")


# ------------------------------------------------------------------------------------ helpers
def _rename(sd: Mapping[str, Tensor], fn: Callable[[str], str | None], what: str) -> StateDict:
    out: StateDict = {}
    for key, value in sd.items():
        new = fn(key) or key
        if new in out:
            raise CheckpointError(f"{what}: two source keys map to {new!r}")
        out[new] = value
    return out


def _suffix_rename(sd: Mapping[str, Tensor], pairs: tuple[tuple[str, str], ...]) -> StateDict:
    out: StateDict = {}
    for key, value in sd.items():
        for old, new in pairs:
            if key.endswith(old):
                key = key[: -len(old)] + new
                break
        if key in out:
            raise CheckpointError(f"duplicate key {key!r} (both q_bias and query.bias present?)")
        out[key] = value
    return out


def is_sinusoid_table(t: Tensor, atol: float = 1e-6) -> bool:
    """True if `t` is the fixed `(1, N, D)` sinusoid table of its own shape (within `atol`)."""
    if t.ndim != 3 or t.shape[0] != 1:
        return False
    ref = sinusoid_table(int(t.shape[1]), int(t.shape[2]))
    return bool(torch.allclose(t.detach().float().cpu(), ref, rtol=0.0, atol=atol))


def has_layer_scale(sd: Mapping[str, Tensor]) -> bool:
    return any(k.endswith(("gamma_1", "gamma_2")) for k in sd)


def fold_layer_scale(sd: Mapping[str, Tensor]) -> StateDict:
    """Fold ``gamma_1``/``gamma_2`` into the rows of ``attn.proj`` / ``mlp.fc2`` (spec §5.1).

    Needed because HF has no layer scale: ``gamma ⊙ (W x + b) == (gamma[:, None] W) x + gamma b``
    so the folded model computes the same function. Lossy as a representation: the gammas are
    gone, converting back gives a model without them.
    """
    out = dict(sd)
    for key in [k for k in sd if k.endswith(("gamma_1", "gamma_2"))]:
        prefix = key[: -len("gamma_1")]
        target = "attn.proj" if key.endswith("gamma_1") else "mlp.fc2"
        gamma = out.pop(key)
        w, b = f"{prefix}{target}.weight", f"{prefix}{target}.bias"
        if w not in out:
            raise CheckpointError(f"cannot fold {key}: {w} is missing")
        out[w] = out[w] * gamma.to(out[w].dtype)[:, None]
        if b in out:
            out[b] = out[b] * gamma.to(out[b].dtype)
    return out


def split_qkv(sd: Mapping[str, Tensor]) -> StateDict:
    """``…attn.qkv.weight`` (3D, D) -> pseudo keys ``…[q]``, ``…[k]``, ``…[v]`` of (D, D) each."""
    out: StateDict = {}
    for key, value in sd.items():
        if key.endswith(QKV):
            if value.shape[0] % 3:
                raise CheckpointError(f"{key} has {value.shape[0]} rows, not a multiple of 3")
            for part, rows in zip(QKV_PARTS, value.chunk(3, dim=0)):
                out[f"{key}[{part}]"] = rows.clone()  # own storage: safetensors rejects views
        else:
            out[key] = value
    return out


def merge_qkv(sd: Mapping[str, Tensor]) -> StateDict:
    """Inverse of `split_qkv`. Incomplete triples stay as pseudo keys (reported by the loader)."""
    out: StateDict = {}
    groups: dict[str, dict[str, Tensor]] = {}
    for key, value in sd.items():
        m = re.fullmatch(rf"(.*{re.escape(QKV)})\[([qkv])\]", key)
        if m:
            groups.setdefault(m.group(1), {})[m.group(2)] = value
        else:
            out[key] = value
    for base, parts in groups.items():
        if set(parts) == set(QKV_PARTS):
            out[base] = torch.cat([parts[p] for p in QKV_PARTS], dim=0)
        else:
            out.update({f"{base}[{p}]": t for p, t in parts.items()})
    return out


def _drop_sinusoid_pos_embed(sd: Mapping[str, Tensor], layout: str) -> StateDict:
    out = dict(sd)
    for key in [k for k in sd if k == "pos_embed" or k.endswith(".pos_embed")]:
        if not is_sinusoid_table(out[key]):
            raise CheckpointError(
                f"{key} is a learned position table; the {layout} layout only has the fixed "
                "sinusoid table, so it cannot be converted"
            )
        del out[key]
    return out


def _to_hf(sd: Mapping[str, Tensor], table: KeyTable, legacy_bias_names: bool) -> StateDict:
    sd = _drop_sinusoid_pos_embed(fold_layer_scale(sd), table.name)
    out = _rename(split_qkv(sd), table.to_layout, f"original -> {table.name}")
    return _suffix_rename(out, HF_LEGACY_BIAS_NAMES) if legacy_bias_names else out


def _with_base_prefix(sd: Mapping[str, Tensor]) -> Mapping[str, Tensor]:
    # A bare VideoMAEModel (no task head) saves its keys without the "videomae." prefix.
    if any(k.startswith(HF_BASE_PREFIX) for k in sd):
        return sd
    return {(HF_BASE_PREFIX + k if k.startswith(HF_BASE_KEYS) else k): v for k, v in sd.items()}


def _from_hf(sd: Mapping[str, Tensor], table: KeyTable) -> StateDict:
    sd = _with_base_prefix(sd)
    sd = _suffix_rename(sd, tuple((b, a) for a, b in HF_LEGACY_BIAS_NAMES))
    kept: StateDict = {}
    for key, value in sd.items():
        if key.endswith(_HF_KEY_BIAS):
            # VideoMAE's key projection has no bias; a zero one is harmless, any other is not.
            if torch.count_nonzero(value):
                raise CheckpointError(f"{key} is non-zero: VideoMAE has no key bias")
            continue
        kept[key] = value
    return merge_qkv(_rename(kept, table.to_original, f"{table.name} -> original"))


# --------------------------------------------------------------------------------- converters
def mmaction2_to_original(sd: Mapping[str, Tensor]) -> StateDict:
    """mmaction2 1.2.0 ``backbone.*`` / ``cls_head.fc_cls.*`` -> original names (pure rename)."""
    return _rename(sd, MMACTION2_TABLE.to_original, "mmaction2 -> original")


def original_to_mmaction2(sd: Mapping[str, Tensor]) -> StateDict:
    """Original names -> mmaction2 1.2.0 names (pure rename; a ``pos_embed`` stays as-is)."""
    return _rename(sd, MMACTION2_TABLE.to_layout, "original -> mmaction2")


def hf_to_original(sd: Mapping[str, Tensor]) -> StateDict:
    """HF ``VideoMAEForVideoClassification`` (either q/v bias naming) -> original names."""
    return _from_hf(sd, HF_TABLE)


def original_to_hf(sd: Mapping[str, Tensor], *, legacy_bias_names: bool = False) -> StateDict:
    """Original names -> HF classifier names. Folds layer scale (see module doc).

    ``legacy_bias_names=True`` writes ``q_bias``/``v_bias`` as on disk; False gives the in-memory
    ``query.bias``/``value.bias`` that ``load_state_dict`` on a transformers 5.x model expects.
    A ``pos_embed`` must be the sinusoid table (HF cannot hold a learned one) and is dropped.
    """
    return _to_hf(sd, HF_TABLE, legacy_bias_names)


def hf_pretrain_to_original(sd: Mapping[str, Tensor]) -> StateDict:
    """HF ``VideoMAEForPreTraining`` -> original pretraining names (``encoder.``/``decoder.``)."""
    return _from_hf(sd, HF_PRETRAIN_TABLE)


def original_pretrain_to_hf(
    sd: Mapping[str, Tensor], *, legacy_bias_names: bool = False
) -> StateDict:
    """Original pretraining names -> HF ``VideoMAEForPreTraining`` names (see `original_to_hf`).

    The encoder's final ``encoder.norm`` becomes ``videomae.layernorm``, which HF only builds with
    ``use_mean_pooling=False``; `hf_config` sets that for pretraining models.
    """
    return _to_hf(sd, HF_PRETRAIN_TABLE, legacy_bias_names)


def _identity(sd: Mapping[str, Tensor]) -> StateDict:
    return dict(sd)


TO_ORIGINAL: dict[str, Callable[[Mapping[str, Tensor]], StateDict]] = {
    ORIGINAL: _identity,
    ORIGINAL_PRETRAIN: _identity,
    MMACTION2: mmaction2_to_original,
    HF: hf_to_original,
    HF_PRETRAIN: hf_pretrain_to_original,
}

FROM_ORIGINAL: dict[str, Callable[[Mapping[str, Tensor]], StateDict]] = {
    ORIGINAL: _identity,
    ORIGINAL_PRETRAIN: _identity,
    MMACTION2: original_to_mmaction2,
    HF: original_to_hf,
    HF_PRETRAIN: original_pretrain_to_hf,
}


def internal_layout(layout: str) -> str:
    """The original-family layout a converted dict of `layout` is in."""
    return ORIGINAL_PRETRAIN if layout in PRETRAIN_LAYOUTS else ORIGINAL


def convert_state_dict(sd: Mapping[str, Tensor], src: str, dst: str) -> StateDict:
    """Any layout -> any layout of the same family (classifier or pretraining), via original.

    Pretraining <-> classifier is not a rename: use `pretrain_encoder` for that.
    """
    for name in (src, dst):
        if name not in LAYOUTS:
            raise CheckpointError(f"unknown layout {name!r}; known: {', '.join(LAYOUTS)}")
    if (src in PRETRAIN_LAYOUTS) != (dst in PRETRAIN_LAYOUTS):
        raise CheckpointError(
            f"{src} -> {dst} crosses pretraining/classifier; extract the encoder first "
            "(videomae2.checkpoint.pretrain_encoder)"
        )
    return FROM_ORIGINAL[dst](TO_ORIGINAL[src](sd))


def pretrain_encoder(sd: Mapping[str, Tensor], *, keep_norm: bool) -> tuple[StateDict, list[str]]:
    """Original pretraining dict -> (classifier-named encoder dict, dropped source keys).

    Fine-tuning starts from the pretrained encoder: ``encoder.`` is stripped, the decoder,
    ``encoder_to_decoder`` and ``mask_token`` are dropped. ``encoder.norm`` becomes ``norm`` only
    when the classifier has one (``keep_norm``, first-token pooling); a mean-pooling classifier
    has ``fc_norm`` instead, which starts fresh, so the encoder norm is dropped.
    """
    out: StateDict = {}
    dropped: list[str] = []
    for key, value in sd.items():
        inner = key[len("encoder.") :] if key.startswith("encoder.") else None
        if inner is None or (inner.startswith("norm.") and not keep_norm):
            dropped.append(key)
        else:
            out[inner] = value
    return out, dropped


def layout_name(key: str, layout: str) -> str | None:
    """The name an internal (original) key has in `layout`, for error messages."""
    table = TABLES.get(layout)
    if table is None:
        return None
    if key.endswith(QKV) and layout in (HF, HF_PRETRAIN):
        q = table.to_layout(f"{key}[q]")
        return q.replace("query.weight", "{query,key,value}.weight") if q else None
    return table.to_layout(key)

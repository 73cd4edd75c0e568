"""Label spaces: union label maps (Kinetics-710 style) and index lists between label maps.

Post-pretraining trains one classifier on a union of datasets (K710 = K400 ∪ K600 ∪ K700 with 15
renamed classes merged, finetune-distill.md §9). Two artefacts describe such a space:

* a union label map (one class name per line, line i = class i), and
* per dataset an index list (JSON list; entry i = the union index of that dataset's class i),
  the same format as the released ``label_710to400.json`` (model.md §7).

The index list has two uses: remapping a source dataset's labels into the union while training
(``label = index[label]``), and initialising a target head from the union head by row selection
(``W_target = W_union[index]``, done by ``videomae2.load_weights(..., head_index=...)``).

Names are matched after normalisation (case, surrounding quotes, underscores, repeated spaces)
and through a rename table that maps every known alias to one canonical name. The built-in table
holds the renamings the spec names; add more with a JSON file ``{"alias": "canonical"}``
(``--renames``). An unmatched name is an error that lists every unmatched name, never a guess.

CLI (``videomae2 make-index-map``)::

    # entry i = index in UNION of TARGET's class i
    videomae2 make-index-map --union k710.txt --target k400.txt -o label_710to400.json
    # build a union of several label maps + one index list per input
    # (label_map_union.txt, label_union_to_<stem>.json; <parent>_<stem> when stems repeat)
    videomae2 make-index-map --build-union k400.txt k600.txt k700.txt --out-dir k710/
"""

from __future__ import annotations

import argparse
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from videomae2.data.annotations import read_label_map

__all__ = [
    "KNOWN_RENAMES",
    "add_arguments",
    "build_union",
    "canonical_name",
    "index_list",
    "load_renames",
    "normalize_name",
    "remap_labels",
    "run",
]

# alias -> canonical name. Canonical = the wording of the newer Kinetics releases, which the
# original K400 label map (and so the K710 map) uses. Sources: finetune-distill.md §9 (K710
# merge examples) and model.md §7 (original vs mmaction2 K400 wording). The spec counts 15
# merged classes and 13 K400 wording differences but names only these; extend the table with a
# JSON file rather than guessing the others.
KNOWN_RENAMES: dict[str, str] = {
    "dying hair": "dyeing hair",
    "drinking": "sipping cup",
    "balloon blowing": "inflating balloons",
    "skiing (not slalom or crosscountry)": "skiing mono",
}


def normalize_name(name: str) -> str:
    """Matching key of a class name: no surrounding quotes/space, casefolded, ``_`` -> space,
    runs of spaces collapsed (``'Air_Drumming'`` and ``'air drumming'`` match)."""
    name = name.strip().strip("\"'").replace("_", " ")
    return re.sub(r"\s+", " ", name).strip().casefold()


def load_renames(
    extra: str | os.PathLike | Mapping[str, str] | None = None,
    *,
    builtin: bool = True,
) -> dict[str, str]:
    """The rename table (normalised alias -> normalised canonical), built-ins first.

    `extra` is a mapping or a JSON file holding one (``{"alias": "canonical", ...}``); its
    entries override built-ins. Chains (a -> b -> c) are followed when names are resolved.
    """
    table: dict[str, str] = {}
    items: list[tuple[str, str]] = list(KNOWN_RENAMES.items()) if builtin else []
    if extra is not None:
        if not isinstance(extra, Mapping):
            path = Path(extra)
            try:
                data = json.loads(path.read_text())
            except FileNotFoundError:
                raise FileNotFoundError(f"rename table not found: {path}") from None
            except json.JSONDecodeError as e:
                raise ValueError(f"{path}: not JSON ({e})") from e
            if not isinstance(data, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in data.items()
            ):
                raise ValueError(f"{path}: expected a JSON object of alias -> canonical strings")
            extra = data
        items += list(extra.items())
    for alias, canon in items:
        table[normalize_name(alias)] = normalize_name(canon)
    return table


def canonical_name(name: str, renames: Mapping[str, str]) -> str:
    """Normalised name with renames followed to the end (a cycle is an error)."""
    key = normalize_name(name)
    seen = {key}
    while key in renames:
        key = renames[key]
        if key in seen:
            raise ValueError(f"rename table has a cycle through {name!r}")
        seen.add(key)
    return key


def _keys(names: Sequence[str], renames: Mapping[str, str], where: str) -> list[str]:
    """Canonical key per name; two names of ONE map landing on the same key is an error."""
    keys = [canonical_name(n, renames) for n in names]
    first: dict[str, int] = {}
    clashes = []
    for i, k in enumerate(keys):
        if k in first:
            clashes.append(f"{first[k]} {names[first[k]]!r} and {i} {names[i]!r}")
        else:
            first[k] = i
    if clashes:
        raise ValueError(
            f"{where}: classes that are the same after normalisation/renaming: "
            + "; ".join(clashes)
        )
    return keys


def _names(label_map: str | os.PathLike | Sequence[str]) -> tuple[list[str], str]:
    if isinstance(label_map, str | os.PathLike):
        return read_label_map(label_map), os.fspath(label_map)
    return list(label_map), "label map"


def index_list(
    union: str | os.PathLike | Sequence[str],
    target: str | os.PathLike | Sequence[str],
    renames: Mapping[str, str] | None = None,
) -> list[int]:
    """Entry i = the index in `union` of `target`'s class i (matched by canonical name).

    Raises ValueError listing EVERY target class that has no match (with its index), so one
    run shows the whole rename table that is missing.
    """
    renames = load_renames() if renames is None else renames
    union_names, union_where = _names(union)
    target_names, target_where = _names(target)
    position = {k: i for i, k in enumerate(_keys(union_names, renames, union_where))}
    keys = _keys(target_names, renames, target_where)
    missing = [f"{i} {target_names[i]!r}" for i, k in enumerate(keys) if k not in position]
    if missing:
        raise ValueError(
            f"{len(missing)} class(es) of {target_where} are not in {union_where} (after "
            f"normalisation and the rename table): {', '.join(missing)}. Add renames with a JSON "
            '{"alias": "canonical"} file (--renames).'
        )
    return [position[k] for k in keys]


def build_union(
    label_maps: Sequence[str | os.PathLike | Sequence[str]],
    renames: Mapping[str, str] | None = None,
) -> tuple[list[str], list[list[int]]]:
    """Union of several label maps in first-seen order + one index list per input map.

    A class's union name is the canonical name's first spelling as written in the inputs when
    it is not renamed, else the canonical form from the table.
    """
    renames = load_renames() if renames is None else renames
    union_keys: dict[str, int] = {}
    union_names: list[str] = []
    lists: list[list[int]] = []
    for label_map in label_maps:
        names, where = _names(label_map)
        keys = _keys(names, renames, where)
        out = []
        for name, key in zip(names, keys):
            if key not in union_keys:
                union_keys[key] = len(union_names)
                union_names.append(name.strip() if normalize_name(name) == key else key)
            out.append(union_keys[key])
        lists.append(out)
    return union_names, lists


def remap_labels(labels: Iterable[int], index: Sequence[int], where: str = "labels") -> list[int]:
    """``[index[l] for l in labels]`` with a clear error for a label outside the index list."""
    out = []
    for i, label in enumerate(labels):
        if not 0 <= label < len(index):
            raise ValueError(
                f"{where}: entry {i} has label {label}, outside the {len(index)}-entry index list"
            )
        out.append(int(index[label]))
    return out


# ------------------------------------------------------------------------------------- CLI


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--union", help="union label map (e.g. label_map_k710.txt)")
    parser.add_argument("--target", help="target label map (e.g. label_map_k400.txt)")
    parser.add_argument("-o", "--output", help="index list JSON to write (--union/--target)")
    parser.add_argument(
        "--build-union",
        nargs="+",
        metavar="LABEL_MAP",
        help="build a union of these label maps (with --out-dir)",
    )
    parser.add_argument("--out-dir", help="where --build-union writes its files")
    parser.add_argument("--renames", help='extra renames: JSON {"alias": "canonical", ...}')
    parser.add_argument(
        "--no-builtin-renames", action="store_true", help="use only the --renames table"
    )


def run(args: argparse.Namespace) -> int:
    renames = load_renames(args.renames, builtin=not args.no_builtin_renames)
    if args.build_union:
        if not args.out_dir:
            raise SystemExit("--build-union needs --out-dir")
        names, lists = build_union(args.build_union, renames)
        out = Path(args.out_dir)
        out.mkdir(parents=True, exist_ok=True)
        (out / "label_map_union.txt").write_text("\n".join(names) + "\n")
        print(f"{out / 'label_map_union.txt'}: {len(names)} classes")
        stems = [Path(p).stem for p in args.build_union]
        if len(set(stems)) < len(stems):  # e.g. a/label_map.txt and b/label_map.txt
            stems = [f"{Path(p).parent.name}_{Path(p).stem}" for p in args.build_union]
        for stem, idx in zip(stems, lists):
            dst = out / f"label_union_to_{stem}.json"
            dst.write_text(json.dumps(idx) + "\n")
            print(f"{dst}: {len(idx)} entries")
        return 0
    if not (args.union and args.target and args.output):
        raise SystemExit("give --union, --target and -o (or --build-union ... --out-dir)")
    idx = index_list(args.union, args.target, renames)
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps(idx) + "\n")
    print(f"{args.output}: {len(idx)} entries (target class i -> union row)")
    return 0

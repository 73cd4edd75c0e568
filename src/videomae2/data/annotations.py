"""Annotation list files and label maps, with errors that name ``file:line``.

Formats handled (``test-protocol.md`` §2, §14.1; ``pretraining.md`` §7):

* mmaction2 video lists, ``path label`` per line (:func:`parse_video_list`): the format of the
  exact-reproduction target, parsed with mmaction2's own rules.
* The original code's ``val.csv``/``train.csv``, ``path label`` (:func:`parse_original_list`).
* The original pretraining lists, ``path start_idx total_frames`` (``path 0 -1`` for videos)
  (:func:`parse_pretrain_list`).
* The model-zoo list ``video_id, num_frames, label_index`` whose exact format is unverified
  (:func:`parse_model_zoo_list`), plus a converter to an mmaction2 list
  (:func:`convert_model_zoo_list`).
* Label maps, one class name per line (:func:`read_label_map`).

Paths are kept as written; joining with a data prefix is
:func:`videomae2.data.decode.resolve_video_path`'s job.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

__all__ = [
    "PretrainRecord",
    "VideoRecord",
    "convert_model_zoo_list",
    "parse_model_zoo_list",
    "parse_original_list",
    "parse_pretrain_list",
    "parse_video_list",
    "read_label_map",
    "write_video_list",
]


@dataclass(frozen=True)
class VideoRecord:
    """One annotated video: the filename as written in the list and its 0-based label.

    ``label == -1`` marks an unlabeled line (mmaction2's inference lists).
    """

    filename: str
    label: int


@dataclass(frozen=True)
class PretrainRecord:
    """One line of an original pretraining list; ``total_frames < 0`` means "a video file"."""

    path: str
    start_idx: int
    total_frames: int


def _lines(path: str | os.PathLike) -> Iterator[tuple[int, str]]:
    """``(line_number, line)`` with the newline removed; numbers are 1-based for messages."""
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            yield number, line.rstrip("\r\n")


def _int(text: str, where: str, what: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"{where}: {what} must be an integer, got {text!r}") from None


def parse_video_list(path: str | os.PathLike) -> list[VideoRecord]:
    """Parse an mmaction2 ``VideoDataset`` list with mmaction2's rules.

    Each line is stripped and split on a single space: ``path label`` -> a record; ``path``
    alone -> label -1 (mmaction2's unlabeled form); three or more fields (e.g. the
    ``path num_frames label`` form) are an error, and so is an empty field, which two
    consecutive spaces create. Tabs are not separators (mmaction2 splits on ``' '`` only).

    One deliberate difference: lines that are empty after stripping are skipped. mmaction2 would
    turn one into a record with filename ``''`` (i.e. the data prefix directory itself), which can
    only fail later and far from the cause.
    """
    records = []
    for number, raw in _lines(path):
        line = raw.strip()
        if not line:
            continue
        where = f"{os.fspath(path)}:{number}"
        fields = line.split(" ")
        if "" in fields:
            raise ValueError(
                f"{where}: empty field (two consecutive spaces?) in {line!r}; expected "
                "'path label' separated by a single space"
            )
        if len(fields) == 1:
            records.append(VideoRecord(fields[0], -1))
        elif len(fields) == 2:
            records.append(VideoRecord(fields[0], _int(fields[1], where, "label")))
        else:
            raise ValueError(
                f"{where}: expected 'path label' (2 fields separated by one space), got "
                f"{len(fields)} fields in {line!r}; a 'path num_frames label' list must be "
                "converted first (drop num_frames)"
            )
    return records


def parse_original_list(path: str | os.PathLike) -> list[VideoRecord]:
    """Parse the original code's ``train.csv``/``val.csv``: ``path label``, space-delimited.

    No header; exactly two fields per line (blank lines skipped). Video id, as the original
    merges test views by it, is the path's basename up to its first ``.``.
    """
    records = []
    for number, raw in _lines(path):
        line = raw.strip()
        if not line:
            continue
        where = f"{os.fspath(path)}:{number}"
        fields = line.split(" ")
        if len(fields) != 2 or "" in fields:
            raise ValueError(f"{where}: expected 'path label' separated by one space, got {line!r}")
        records.append(VideoRecord(fields[0], _int(fields[1], where, "label")))
    return records


def parse_pretrain_list(path: str | os.PathLike) -> list[PretrainRecord]:
    """Parse an original pretraining list: ``path start_idx total_frames [label]``.

    Videos are listed as ``path 0 -1`` (a negative total means "decode the file and count");
    raw-frame folders carry their real start index and frame count. A fourth (label) field is
    accepted and ignored, as the original ignores it.
    """
    records = []
    for number, raw in _lines(path):
        line = raw.strip()
        if not line:
            continue
        where = f"{os.fspath(path)}:{number}"
        fields = line.split(" ")
        if len(fields) not in (3, 4) or "" in fields:
            raise ValueError(
                f"{where}: expected 'path start_idx total_frames' separated by single spaces, "
                f"got {line!r}"
            )
        records.append(
            PretrainRecord(
                fields[0],
                _int(fields[1], where, "start_idx"),
                _int(fields[2], where, "total_frames"),
            )
        )
    return records


def read_label_map(path: str | os.PathLike) -> list[str]:
    """Class names, one per line; the 0-based line number is the label.

    Surrounding whitespace is stripped and trailing blank lines are ignored; a blank line before
    the last name is an error because it would shift every later label.
    """
    names: list[str] = []
    blank_at: int | None = None
    for number, raw in _lines(path):
        name = raw.strip()
        if not name:
            blank_at = blank_at or number
            continue
        if blank_at is not None:
            raise ValueError(
                f"{os.fspath(path)}:{blank_at}: blank line inside the label map (labels are "
                "line numbers, a gap would shift them)"
            )
        names.append(name)
    if not names:
        raise ValueError(f"{os.fspath(path)}: label map is empty")
    return names


_MODEL_ZOO_SPLIT = re.compile(r"\s*,\s*|\s+")


def parse_model_zoo_list(
    path: str | os.PathLike, label_map: list[str] | None = None
) -> list[VideoRecord]:
    """Parse the model-zoo ``video_id, num_frames, label_index`` list (format unverified).

    Fields may be separated by commas, whitespace or both; ``num_frames`` is dropped (sampling
    uses the decoder's own count). ``.mp4`` is appended to ids without an extension, the
    filename mmaction2's ``DecordInit`` would open. If the label field is not an integer it is
    looked up as a class name in ``label_map`` (spaces and underscores are treated alike).
    """
    by_name: dict[str, int] = {}
    if label_map is not None:
        by_name = {name.replace(" ", "_"): i for i, name in enumerate(label_map)}
    records = []
    for number, raw in _lines(path):
        line = raw.strip()
        if not line:
            continue
        where = f"{os.fspath(path)}:{number}"
        fields = _MODEL_ZOO_SPLIT.split(line)
        if len(fields) != 3 or "" in fields:
            raise ValueError(
                f"{where}: expected 'video_id, num_frames, label_index' (3 fields), got {line!r}"
            )
        video_id, num_frames, label_text = fields
        _int(num_frames, where, "num_frames")
        try:
            label = int(label_text)
        except ValueError:
            key = label_text.replace(" ", "_")
            if key not in by_name:
                raise ValueError(
                    f"{where}: label {label_text!r} is neither an integer nor a class of the "
                    "label map"
                ) from None
            label = by_name[key]
        if label_map is not None and not 0 <= label < len(label_map):
            raise ValueError(
                f"{where}: label {label} outside the label map's {len(label_map)} classes"
            )
        if os.path.splitext(video_id)[0] == video_id:
            video_id += ".mp4"
        records.append(VideoRecord(video_id, label))
    return records


def write_video_list(records: Iterable[VideoRecord], path: str | os.PathLike) -> int:
    """Write records as an mmaction2 list (``filename label`` per line); returns the count.

    Filenames containing spaces or newlines are rejected: mmaction2 could not read them back.
    """
    lines = []
    for r in records:
        if not r.filename or any(c in r.filename for c in " \r\n"):
            raise ValueError(f"filename {r.filename!r} cannot be written to a space-separated list")
        lines.append(f"{r.filename} {int(r.label)}\n")
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(lines)
    return len(lines)


def convert_model_zoo_list(
    src: str | os.PathLike,
    dst: str | os.PathLike,
    label_map_path: str | os.PathLike | None = None,
) -> int:
    """Model-zoo list -> mmaction2 list (``video_id.mp4 label``); returns the line count."""
    label_map = read_label_map(label_map_path) if label_map_path is not None else None
    return write_video_list(parse_model_zoo_list(src, label_map), dst)

"""List-file and label-map parsing (test-protocol.md §2, §14.1; pretraining.md §7)."""

import pytest

from videomae2.data.annotations import (
    PretrainRecord,
    VideoRecord,
    convert_model_zoo_list,
    parse_model_zoo_list,
    parse_original_list,
    parse_pretrain_list,
    parse_video_list,
    read_label_map,
    write_video_list,
)


def write(tmp_path, name, text):
    p = tmp_path / name
    p.write_text(text)
    return p


def test_video_list_basic(tmp_path):
    p = write(
        tmp_path,
        "val.txt",
        "abseiling/a_000001_000011.mp4 0\n  air_drumming/b.mp4 1  \nunlabeled.mp4\n\n",
    )
    assert parse_video_list(p) == [
        VideoRecord("abseiling/a_000001_000011.mp4", 0),
        VideoRecord("air_drumming/b.mp4", 1),  # stripped
        VideoRecord("unlabeled.mp4", -1),  # one field -> label -1
    ]  # the blank trailing line is skipped


def test_video_list_crlf_and_blank_lines(tmp_path):
    p = tmp_path / "crlf.txt"
    p.write_bytes(b"a.mp4 3\r\n\r\nb.mp4 4\r\n")
    assert parse_video_list(p) == [VideoRecord("a.mp4", 3), VideoRecord("b.mp4", 4)]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ("a.mp4 300 5", "got 3 fields"),  # path num_frames label
        ("a.mp4  5", "empty field"),  # two spaces
        ("a.mp4 five", "label must be an integer"),
    ],
)
def test_video_list_errors_name_file_and_line(tmp_path, line, match):
    p = write(tmp_path, "bad.txt", f"ok.mp4 1\nok2.mp4 2\n{line}\n")
    with pytest.raises(ValueError, match=match) as info:
        parse_video_list(p)
    assert f"{p}:3" in str(info.value)


def test_tab_is_not_a_separator(tmp_path):
    # mmaction2 splits on ' ' only: a tab-separated line is one field (label -1)
    p = write(tmp_path, "tab.txt", "a.mp4\t5\n")
    assert parse_video_list(p) == [VideoRecord("a.mp4\t5", -1)]


def test_original_list(tmp_path):
    p = write(tmp_path, "val.csv", "k400/val/a.mp4 3\nk400/val/b.mp4 399\n")
    assert parse_original_list(p) == [
        VideoRecord("k400/val/a.mp4", 3),
        VideoRecord("k400/val/b.mp4", 399),
    ]
    bad = write(tmp_path, "bad.csv", "a.mp4 3\nb.mp4\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2"):
        parse_original_list(bad)


def test_pretrain_list(tmp_path):
    p = write(tmp_path, "train.csv", "videos/a.mp4 0 -1\nframes/b 1 120\nssv2/c 1 40 7\n")
    assert parse_pretrain_list(p) == [
        PretrainRecord("videos/a.mp4", 0, -1),
        PretrainRecord("frames/b", 1, 120),
        PretrainRecord("ssv2/c", 1, 40),
    ]
    bad = write(tmp_path, "bad.csv", "videos/a.mp4 0 -1\nvideos/b.mp4 0\n")
    with pytest.raises(ValueError, match=r"bad\.csv:2: expected 'path start_idx total_frames'"):
        parse_pretrain_list(bad)
    bad = write(tmp_path, "bad2.csv", "videos/a.mp4 zero -1\n")
    with pytest.raises(ValueError, match=r"bad2\.csv:1: start_idx must be an integer"):
        parse_pretrain_list(bad)


def test_label_map(tmp_path):
    p = write(tmp_path, "label_map_k400.txt", "abseiling\nair drumming\nanswering questions\n\n")
    assert read_label_map(p) == ["abseiling", "air drumming", "answering questions"]
    gap = write(tmp_path, "gap.txt", "a\n\nb\n")
    with pytest.raises(ValueError, match=r"gap\.txt:2: blank line"):
        read_label_map(gap)
    with pytest.raises(ValueError, match="empty"):
        read_label_map(write(tmp_path, "empty.txt", "\n"))


def test_model_zoo_list(tmp_path):
    p = write(
        tmp_path,
        "kinetics_val_list.txt",
        "abc123_000010_000020, 300, 5\ndef456_000001_000011 250 7\nghi.webm,120,0\n",
    )
    assert parse_model_zoo_list(p) == [
        VideoRecord("abc123_000010_000020.mp4", 5),
        VideoRecord("def456_000001_000011.mp4", 7),
        VideoRecord("ghi.webm", 0),
    ]
    labels = ["abseiling", "air drumming"]
    named = write(tmp_path, "named.txt", "x, 10, air_drumming\n")
    assert parse_model_zoo_list(named, labels) == [VideoRecord("x.mp4", 1)]
    with pytest.raises(ValueError, match=r"named\.txt:1: label 'air_drumming' is neither"):
        parse_model_zoo_list(named)
    bad = write(tmp_path, "bad.txt", "x, 10, 1\ny, 5\n")
    with pytest.raises(ValueError, match=r"bad\.txt:2: expected 'video_id, num_frames"):
        parse_model_zoo_list(bad)
    out_of_map = write(tmp_path, "oom.txt", "x, 10, 2\n")
    with pytest.raises(ValueError, match="outside the label map"):
        parse_model_zoo_list(out_of_map, labels)


def test_convert_model_zoo_list_round_trips(tmp_path):
    src = write(tmp_path, "zoo.txt", "abc, 300, 5\ndef, 250, 7\n")
    dst = tmp_path / "mm.txt"
    assert convert_model_zoo_list(src, dst) == 2
    assert dst.read_text() == "abc.mp4 5\ndef.mp4 7\n"
    assert parse_video_list(dst) == [VideoRecord("abc.mp4", 5), VideoRecord("def.mp4", 7)]
    with pytest.raises(ValueError, match="cannot be written"):
        write_video_list([VideoRecord("a b.mp4", 1)], tmp_path / "x.txt")

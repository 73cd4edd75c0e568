"""`videomae2 bench`: the scripts of `benchmarks/` behind one command, and a comparison of two of
their JSON reports.

    videomae2 bench                         # list the benchmarks and what each measures
    videomae2 bench forward --quick         # = python benchmarks/bench_forward.py --quick
    videomae2 bench compare old.json new.json [--metrics median_s,peak_rss_mb] [--min-change 0.05]

The benchmarks stay runnable scripts in the source checkout (each runs its peers in the same run
and writes its own JSON); this command finds them, runs one in a child process with this
Python, and passes its exit status through. `compare` needs no checkout: it reads any two
reports of the same script and prints, for every row present in both, each measured number
old / new / new-over-old.
"""

from __future__ import annotations

import argparse
import ast
import json
import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ENV_DIR = "VIDEOMAE2_BENCHMARKS"
# Integer fields that count repetitions rather than name a setting: rows of a 2-round and a
# 3-round run are the same rows.
COUNT_FIELDS = frozenset({"rounds", "repeats", "pairs", "steps", "warmup", "timed", "n"})

Row = dict[str, Any]
RowKey = tuple[tuple[str, Any], ...]


def benchmarks_dir(explicit: str | None = None) -> Path:
    """The `benchmarks/` folder: `explicit`, else $VIDEOMAE2_BENCHMARKS, else the checkout's."""
    raw = explicit or os.environ.get(ENV_DIR)
    path = Path(raw) if raw else Path(__file__).resolve().parents[2] / "benchmarks"
    if not path.is_dir():
        source = "--dir" if explicit else (f"${ENV_DIR}" if raw else "the source checkout")
        raise FileNotFoundError(
            f"no benchmarks folder at {path} (from {source}): the benchmarks ship with the "
            f"source checkout, not the installed package; run from a clone or set {ENV_DIR}"
        )
    return path


def discover(folder: Path) -> dict[str, tuple[Path, str]]:
    """`bench_<name>.py` scripts -> (path, first line of the module docstring); `_` -> `-`."""
    found = {}
    for script in sorted(folder.glob("bench_*.py")):
        name = script.stem.removeprefix("bench_").replace("_", "-")
        try:
            doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8"))) or ""
        except SyntaxError as e:
            doc = f"(unreadable: {e})"
        found[name] = (script, doc.strip().splitlines()[0] if doc.strip() else "")
    return found


def format_listing(found: dict[str, tuple[Path, str]]) -> str:
    width = max((len(n) for n in found), default=0)
    lines = [f"benchmarks in {next(iter(found.values()))[0].parent}:" if found else ""]
    lines += [f"  {name:<{width}}  {doc}" for name, (_, doc) in found.items()]
    lines += [
        "",
        "run one:   videomae2 bench NAME [ARGS...]   (NAME --help for its options)",
        "compare:   videomae2 bench compare OLD.json NEW.json",
    ]
    return "\n".join(lines)


# ---- comparing two reports ----------------------------------------------------------------


def row_key(row: Row) -> RowKey:
    """What names a row: its text, flag and integer fields (size, impl, precision, threads, M...),
    not its measurements (floats) and not repetition counts."""
    return tuple(
        (k, v)
        for k, v in sorted(row.items())
        if isinstance(v, (str, bool)) or v is None or (isinstance(v, int) and k not in COUNT_FIELDS)
    )


def measurements(row: Row) -> dict[str, float]:
    return {k: float(v) for k, v in row.items() if isinstance(v, float) and math.isfinite(v)}


def iter_rows(report: Any, section: str = "") -> Iterator[tuple[str, RowKey, Row]]:
    """Every dict holding float measurements, as (section path, key, row).

    Rows of a list are keyed by `row_key` (repeats of one key get `#2`, `#3`...); a dict outside
    a list is one row of its own section. Works for every script's JSON layout: bench_forward's
    `results` / `matmul_peak` / `paired`, bench_test_job's `rows`, bench_gpu's sections, a bare
    list of rows.
    """
    if isinstance(report, dict):
        rows = [(section, (), report)]
    elif isinstance(report, list):
        rows = [(f"{section}[{_label(k, ',', 'row')}]", k, r) for k, r in _keyed(report)]
    else:
        return
    for base, key, row in rows:
        if measurements(row):
            yield section or ".", key, row
        for k, v in row.items():
            if isinstance(v, (dict, list)):
                yield from iter_rows(v, f"{base}.{k}" if base else str(k))


def _keyed(rows: list) -> Iterator[tuple[RowKey, Row]]:
    """The dicts of a list with their `row_key`; a repeated key gets ``("#", n)`` appended."""
    seen: dict[RowKey, int] = {}
    for item in rows:
        if isinstance(item, dict):
            key = row_key(item)
            seen[key] = seen.get(key, 0) + 1
            yield (key if seen[key] == 1 else (*key, ("#", seen[key]))), item


def compare_reports(
    old: Any, new: Any, metrics: list[str] | None = None, min_change: float = 0.0
) -> tuple[list[dict[str, Any]], list[str]]:
    """Rows present in both reports: one entry per shared measurement, with `ratio` = new / old.

    `metrics` keeps only those names; `min_change` drops entries whose ratio is within that
    fraction of 1. Returns (entries, notes on rows present in only one report).
    """
    a = {(s, k): r for s, k, r in iter_rows(old)}
    b = {(s, k): r for s, k, r in iter_rows(new)}
    entries, notes = [], []
    for sk in a.keys() & b.keys():
        ma, mb = measurements(a[sk]), measurements(b[sk])
        for m in sorted(ma.keys() & mb.keys()):
            if metrics and m not in metrics:
                continue
            ratio = mb[m] / ma[m] if ma[m] else (1.0 if mb[m] == 0 else math.inf)
            if abs(ratio - 1.0) < min_change:
                continue
            entries.append(
                dict(section=sk[0], row=sk[1], metric=m, old=ma[m], new=mb[m], ratio=ratio)
            )
    order: dict[tuple[str, RowKey], int] = {}
    for sk in [*a, *b]:  # the old report's order first
        order.setdefault(sk, len(order))
    entries.sort(key=lambda e: (order[(e["section"], e["row"])], e["metric"]))
    for name, only in (("old", a.keys() - b.keys()), ("new", b.keys() - a.keys())):
        for s, k in sorted(only, key=order.__getitem__):
            notes.append(f"only in {name}: {s} {_label(k)}")
    return entries, notes


def _label(key: RowKey, sep: str = " ", empty: str = "-") -> str:
    return sep.join(f"{k}={v}" for k, v in key) or empty


def _num(v: float) -> str:
    return f"{v:.4g}" if math.isfinite(v) else str(v)


def format_comparison(entries: list[dict[str, Any]], notes: list[str]) -> str:
    header = ("section", "row", "metric", "old", "new", "new/old")
    body = [
        (
            e["section"],
            _label(e["row"]),
            e["metric"],
            _num(e["old"]),
            _num(e["new"]),
            f"{e['ratio']:.3f}",
        )
        for e in entries
    ]
    widths = [max(len(r[i]) for r in [header, *body]) for i in range(len(header))]
    lines = [
        "  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
        for r in [header, *body]
    ]
    if not body:
        lines.append("(no shared measurements)")
    return "\n".join(lines + notes)


def _load_report(path: str) -> Any:
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise SystemExit(f"videomae2 bench compare: no such report: {path}") from None
    except json.JSONDecodeError as e:
        raise SystemExit(
            f"videomae2 bench compare: {path}:{e.lineno}: not JSON ({e.msg})"
        ) from None


def run_compare(argv: list[str]) -> int:
    p = argparse.ArgumentParser(
        prog="videomae2 bench compare",
        description="Every measurement present in both reports: old, new, new/old.",
    )
    p.add_argument("old", help="a benchmark's --json report")
    p.add_argument("new", help="a later report of the same benchmark")
    p.add_argument("--metrics", default="", help="comma list of measurement names (default: all)")
    p.add_argument("--min-change", type=float, default=0.0, help="hide |new/old - 1| below this")
    p.add_argument("--json", type=Path, default=None, help="also write the entries here")
    a = p.parse_args(argv)
    metrics = [m for m in a.metrics.split(",") if m] or None
    entries, notes = compare_reports(
        _load_report(a.old), _load_report(a.new), metrics, a.min_change
    )
    print(format_comparison(entries, notes))
    if a.json is not None:
        rows = [{**e, "row": dict(e["row"])} for e in entries]
        a.json.write_text(json.dumps(dict(entries=rows, notes=notes), indent=1) + "\n")
    return 0


# ---- the subcommand -----------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--dir", default=None, help=f"benchmarks folder (default: ${ENV_DIR}, then the checkout's)"
    )
    parser.add_argument("name", nargs="?", help="a benchmark (none: list them), or 'compare'")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="passed to the benchmark")


def run(args: argparse.Namespace) -> int:
    if args.name == "compare":
        return run_compare(args.args)
    try:
        found = discover(benchmarks_dir(args.dir))
    except FileNotFoundError as e:
        print(f"videomae2 bench: {e}", file=sys.stderr)
        return 2
    if args.name is None:
        print(format_listing(found))
        return 0
    if args.name not in found:
        print(
            f"videomae2 bench: no benchmark {args.name!r}; known: {', '.join(found)}",
            file=sys.stderr,
        )
        return 2
    script = found[args.name][0]
    return subprocess.run([sys.executable, str(script), *args.args], check=False).returncode

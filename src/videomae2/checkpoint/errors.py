"""Errors raised while reading, converting or loading checkpoints.

Both are ``ValueError`` subclasses so callers that treat bad user input uniformly
(``except ValueError``) keep working; the subclasses carry the structured detail (which keys,
which layout, which file) that a user needs to fix the input rather than guess.
"""

from __future__ import annotations

from collections.abc import Sequence

_SHOW = 20  # keys listed per category before "... and N more"


class CheckpointError(ValueError):
    """A checkpoint could not be read, detected or converted (bad container, unknown layout)."""


def _listing(title: str, items: Sequence[str]) -> list[str]:
    if not items:
        return []
    lines = [f"  {title} ({len(items)}):"]
    lines += [f"    {item}" for item in items[:_SHOW]]
    if len(items) > _SHOW:
        lines.append(f"    ... and {len(items) - _SHOW} more")
    return lines


class CheckpointMismatchError(CheckpointError):
    """The checkpoint's tensors do not fit the model: missing, unexpected or wrong-shape keys.

    Attributes keep the raw lists (internal key names) so tests and tools can inspect them;
    the message also gives each key's name in the source layout where it differs.
    """

    def __init__(
        self,
        *,
        source: str,
        layout: str,
        missing: Sequence[str] = (),
        unexpected: Sequence[str] = (),
        mismatched: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]] = (),
        describe=None,
    ) -> None:
        self.source = source
        self.layout = layout
        self.missing = list(missing)
        self.unexpected = list(unexpected)
        self.mismatched = list(mismatched)
        name = describe or (lambda k: k)
        lines = [f"checkpoint {source} (detected layout: {layout}) does not fit the model:"]
        lines += _listing(
            "missing keys (in the model, not in the checkpoint)", [name(k) for k in self.missing]
        )
        lines += _listing(
            "unexpected keys (in the checkpoint, not in the model)",
            [name(k) for k in self.unexpected],
        )
        lines += _listing(
            "wrong shape (expected by the model vs found)",
            [
                f"{name(k)}: expected {tuple(exp)}, found {tuple(got)}"
                for k, exp, got in self.mismatched
            ],
        )
        lines.append("  (strict=False loads the matching tensors and returns these lists)")
        super().__init__("\n".join(lines))

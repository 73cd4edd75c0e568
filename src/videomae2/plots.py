"""Small PNG charts drawn with Pillow (no plotting dependency): loss curves, confusion matrices."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PALETTE = [(31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189)]


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1.0
    step = (hi - lo) / n
    mag = 10 ** np.floor(np.log10(step))
    step = min((m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= step), default=step)
    start = np.ceil(lo / step) * step
    return [float(t) for t in np.arange(start, hi + step * 1e-9, step)]


def moving_average(
    xs: Sequence[float], ys: Sequence[float], window: int
) -> tuple[list[float], list[float]]:
    """Trailing mean of ``ys`` over ``window`` points (fewer at the start), at the same ``xs``:
    a per-step loss is too noisy to read a trend from."""
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    out, total = [], 0.0
    for i, y in enumerate(ys):
        total += y
        if i >= window:
            total -= ys[i - window]
        out.append(total / min(i + 1, window))
    return list(xs), out


def line_chart(
    series: dict[str, tuple[Sequence[float], Sequence[float]]],
    title: str,
    xlabel: str = "step",
    ylabel: str = "loss",
    size: tuple[int, int] = (640, 400),
) -> Image.Image:
    """One line per named `(x, y)` series, with axes, ticks, a title and a legend."""
    W, H = size
    left, right, top, bottom = 64, 16, 32, 48
    img = Image.new("RGB", size, "white")
    d = ImageDraw.Draw(img)
    font = _font()
    xs = [float(v) for x, _ in series.values() for v in x]
    ys = [float(v) for _, y in series.values() for v in y if np.isfinite(v)]
    if not xs or not ys:
        d.text((left, H // 2), f"{title}: no data", fill="black", font=font)
        return img
    x0, x1 = min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1
    y0, y1 = min(ys), max(ys) if max(ys) > min(ys) else min(ys) + 1
    pad = 0.05 * (y1 - y0)
    y0, y1 = y0 - pad, y1 + pad

    def px(x: float, y: float) -> tuple[float, float]:
        return (
            left + (x - x0) / (x1 - x0) * (W - left - right),
            top + (1 - (y - y0) / (y1 - y0)) * (H - top - bottom),
        )

    d.rectangle([left, top, W - right, H - bottom], outline="black")
    for t in _nice_ticks(y0, y1):
        _, yy = px(x0, t)
        d.line([left - 4, yy, W - right, yy], fill=(225, 225, 225))
        d.text((4, yy - 6), f"{t:.3g}", fill="black", font=font)
    for t in _nice_ticks(x0, x1):
        xx, _ = px(t, y0)
        d.line([xx, H - bottom, xx, H - bottom + 4], fill="black")
        d.text((xx - 10, H - bottom + 6), f"{t:.4g}", fill="black", font=font)
    for i, (name, (x, y)) in enumerate(series.items()):
        color = PALETTE[i % len(PALETTE)]
        pts = [px(float(a), float(b)) for a, b in zip(x, y) if np.isfinite(b)]
        if len(pts) > 1:
            d.line(pts, fill=color, width=2)
        elif pts:
            d.ellipse([pts[0][0] - 2, pts[0][1] - 2, pts[0][0] + 2, pts[0][1] + 2], fill=color)
        d.rectangle(
            [W - right - 150, top + 8 + 14 * i, W - right - 140, top + 16 + 14 * i], fill=color
        )
        d.text((W - right - 134, top + 6 + 14 * i), name, fill="black", font=font)
    d.text((left, 10), title, fill="black", font=font)
    d.text(((W - len(xlabel) * 6) // 2, H - 18), xlabel, fill="black", font=font)
    d.text((4, 14), ylabel, fill="black", font=font)
    return img


def confusion_matrix(labels: Sequence[int], preds: Sequence[int], num_classes: int) -> np.ndarray:
    """`(K, K)` counts, rows = true class, columns = predicted class."""
    m = np.zeros((num_classes, num_classes), dtype=np.int64)
    np.add.at(m, (np.asarray(labels, dtype=int), np.asarray(preds, dtype=int)), 1)
    return m


def confusion_image(
    matrix: np.ndarray, names: Sequence[str], title: str, cell: int = 36
) -> Image.Image:
    """A row-normalised confusion matrix with counts in the cells and class names on the axes."""
    k = matrix.shape[0]
    font = _font()
    acc = np.trace(matrix) / max(matrix.sum(), 1)
    heading = f"{title}: accuracy {acc:.1%}"
    legend = "rows: true class, columns: predicted class"
    label_w = max(6 * max((len(n) for n in names), default=1) + 12, 60)
    top = 40
    W = max(label_w + k * cell + 16, 6 * max(len(heading), len(legend)) + 12)
    H = top + k * cell + label_w
    img = Image.new("RGB", (W, H), "white")
    d = ImageDraw.Draw(img)
    d.text((4, 4), heading, fill="black", font=font)
    d.text((4, 18), legend, fill="black", font=font)
    frac = matrix / matrix.sum(axis=1, keepdims=True).clip(min=1)
    for i in range(k):
        for j in range(k):
            shade = int(255 * (1 - frac[i, j]))
            x, y = label_w + j * cell, top + i * cell
            d.rectangle([x, y, x + cell - 1, y + cell - 1], fill=(shade, shade, 255))
            text_color = "white" if frac[i, j] > 0.5 else "black"
            d.text((x + 4, y + cell // 2 - 6), str(matrix[i, j]), fill=text_color, font=font)
        d.text((4, top + i * cell + cell // 2 - 6), names[i], fill="black", font=font)
    # column names, written vertically (rotated text images) below the grid
    for j in range(k):
        txt = Image.new("RGB", (label_w, 12), "white")
        ImageDraw.Draw(txt).text((0, 0), names[j], fill="black", font=font)
        img.paste(txt.rotate(90, expand=True), (label_w + j * cell + cell // 2 - 6, top + k * cell))
    return img

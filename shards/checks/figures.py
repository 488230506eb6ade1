"""PNG figures of a build (matplotlib, Agg): example crops (the paper's Figure 2), histograms, counts.

Labels come from the workspace files (city names, status codes), so text is drawn literally:
mathtext and TeX are off (``LITERAL_TEXT``), and a city named ``$\\undefined{x}^{$`` is shown as
written instead of failing the figure.
"""

from __future__ import annotations

import tarfile
from pathlib import Path
from typing import Any

import numpy as np

from common.atomic import atomic_path
from common.errors import UsageError

CELL = (128, 64)  # height, width of one example crop in the grid (the usual Re-ID input shape)
LITERAL_TEXT = {"text.usetex": False, "text.parse_math": False}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
    _pyplot().close(fig)


def read_crops(shards_dir: Path, keys_by_shard: dict[str, list[str]]) -> dict[str, bytes]:
    """JPEG bytes of the given keys, read straight from their tar shards."""
    found: dict[str, bytes] = {}
    for shard, keys in keys_by_shard.items():
        wanted = {f"{k}.jpg": k for k in keys}
        if not (shards_dir / shard).is_file():  # missing, or a FIFO whose open would block
            raise UsageError(f"{shards_dir / shard} is not a shard file: run verify-shards")
        try:
            with tarfile.open(shards_dir / shard) as tar:
                for member in tar:
                    if member.name in wanted:
                        found[wanted[member.name]] = tar.extractfile(member).read()
        except (OSError, tarfile.TarError, EOFError) as e:
            raise UsageError(f"{shards_dir / shard} is unreadable ({e}): run verify-shards") from None
    return found


def example_grid(samples, shards_dir: Path, path: Path, side: int, seed: int) -> int:
    """A ``side`` x ``side`` grid of randomly chosen crops (seeded); returns how many it shows."""
    import cv2

    ok = samples.loc[samples["status"] == "ok", ["key", "shard"]]
    chosen = ok.sample(n=min(side * side, len(ok)), random_state=seed).sort_values("key")
    crops = read_crops(shards_dir, chosen.groupby("shard")["key"].apply(list).to_dict())
    h, w = CELL
    grid = np.full((side * h, side * w, 3), 255, np.uint8)
    for n, key in enumerate(sorted(crops)):
        pixels = cv2.imdecode(np.frombuffer(crops[key], np.uint8), cv2.IMREAD_COLOR)
        if pixels is None:  # a broken JPEG (verify-shards names it): an empty cell
            continue
        r, c = divmod(n, side)
        grid[r * h : (r + 1) * h, c * w : (c + 1) * w] = cv2.resize(
            pixels, (w, h), interpolation=cv2.INTER_AREA
        )
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(side * 0.8, side * 1.6))
    ax.imshow(grid[..., ::-1])
    ax.set_axis_off()
    ax.set_title(f"{len(crops)} random crops (seed {seed})")
    _save(fig, path)
    return len(crops)


def histogram(values, path: Path, title: str, xlabel: str, lines: tuple[float, ...] = ()) -> None:
    """A histogram, with dashed vertical lines at ``lines`` (e.g. the paper's thresholds)."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(np.asarray(values, dtype=float), bins=50, color="tab:blue")
    for x in lines:
        ax.axvline(x, color="tab:red", linestyle="--", linewidth=1)
    ax.set_title(title)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("crops")
    _save(fig, path)


def bar_counts(panels: dict[str, dict[str, int]], path: Path, title: str) -> None:
    """One horizontal bar chart per non-empty panel of ``{label: count}``."""
    panels = {name: counts for name, counts in panels.items() if counts}
    plt = _pyplot()
    height = max(3.0, 0.25 * sum(len(c) for c in panels.values()) + 1.2 * len(panels))
    fig, axes = plt.subplots(len(panels), 1, figsize=(7, height), squeeze=False)
    for ax, (name, counts) in zip(axes[:, 0], panels.items(), strict=True):
        labels = list(counts)
        ax.barh(labels, [counts[k] for k in labels], color="tab:gray")
        ax.invert_yaxis()
        ax.set_title(name)
    fig.suptitle(title)
    fig.tight_layout()
    _save(fig, path)


def write_figures(stats: dict[str, Any], samples, root: Path, side: int, seed: int) -> dict[str, str]:
    """Every figure the data allows; ``{figure: path or 'skipped: why'}``; text drawn literally."""
    with _pyplot().rc_context(LITERAL_TEXT):
        return _draw_figures(stats, samples, root, side, seed)


def _draw_figures(stats: dict[str, Any], samples, root: Path, side: int, seed: int) -> dict[str, str]:
    out = root / "figures"
    ok = samples.loc[samples["status"] == "ok", ["width", "height", "score"]]  # not every column: 4M rows
    made: dict[str, str] = {}
    if ok.empty:
        return {"all": "skipped: no samples"}
    example_grid(samples, root / "shards", out / "examples.png", side, seed)
    made["examples"] = str(out / "examples.png")
    histogram(ok["height"], out / "crop_height.png", "Crop height", "pixels")
    made["crop_height"] = str(out / "crop_height.png")
    # §3.1 keeps boxes with 1.5 < height/width < 5
    histogram(
        ok["height"] / ok["width"], out / "aspect_ratio.png", "Aspect ratio", "height / width", (1.5, 5.0)
    )
    made["aspect_ratio"] = str(out / "aspect_ratio.png")
    scores = ok["score"].dropna()
    if scores.empty:
        made["score"] = "skipped: no detection scores (imported crops)"
    else:
        histogram(scores, out / "score.png", "Detection score", "score", (0.72,))
        made["score"] = str(out / "score.png")
    per_city = {
        "crops per city": stats["crops_per_city"],
        "kept videos per city": (stats["video_filter"] or {}).get("kept_per_city", {}),
    }
    if any(per_city.values()):
        bar_counts(per_city, out / "per_city.png", "Counts per city")
        made["per_city"] = str(out / "per_city.png")
    else:
        made["per_city"] = "skipped: no cities (imported crops)"
    reasons = {
        "videos by filter reason": (stats["video_filter"] or {}).get("reasons", {}),
        "boxes by detection reason": (stats["detections"] or {}).get("reasons", {}),
        "crops by build failure": stats["failed"],
    }
    if any(reasons.values()):
        bar_counts(reasons, out / "drop_reasons.png", "Counts per drop reason")
        made["drop_reasons"] = str(out / "drop_reasons.png")
    else:
        made["drop_reasons"] = "skipped: nothing was dropped"
    return made

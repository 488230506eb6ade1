"""Training logs of rank 0: metrics.csv, TensorBoard, and the loss-curve PNG at the end.

metrics.csv is appended as steps are logged; a resumed run first rewrites it (atomically)
without the rows past its checkpoint, so a kill and rerun never duplicates a step.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path

from common.atomic import atomic_path, write_text

COLUMNS = ("step", "epoch", "lr", "loss", "acc", "pairs_per_s", "data_wait_share", "time_s")


def read_metrics(path: Path) -> list[dict[str, float]]:
    """Rows of metrics.csv as floats (a torn last line from a kill is ignored)."""
    if not path.is_file():
        return []
    rows = []
    for row in csv.DictReader(io.StringIO(path.read_text())):
        try:
            rows.append({k: float(row[k]) for k in COLUMNS})
        except (TypeError, ValueError, KeyError):
            continue
    return rows


def _format(rows: list[dict[str, float]]) -> str:
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=COLUMNS, lineterminator="\n")
    for row in rows:
        writer.writerow({k: (int(row[k]) if k == "step" else repr(float(row[k]))) for k in COLUMNS})
    return out.getvalue()


class MetricsLog:
    """Append metrics rows to ``metrics.csv`` and TensorBoard, starting after ``start_step``."""

    def __init__(self, run_dir: Path, start_step: int):
        self.path = run_dir / "metrics.csv"
        kept = [r for r in read_metrics(self.path) if r["step"] <= start_step]
        write_text(self.path, ",".join(COLUMNS) + "\n" + _format(kept))
        from torch.utils.tensorboard import SummaryWriter

        self.tb = SummaryWriter(
            str(run_dir / "tensorboard"), purge_step=start_step + 1 if start_step else None
        )

    def write(self, rows: list[dict[str, float]]) -> None:
        with open(self.path, "a") as f:
            f.write(_format(rows))
            f.flush()
        for row in rows:
            step = int(row["step"])
            for key in ("loss", "acc", "lr", "pairs_per_s", "data_wait_share"):
                self.tb.add_scalar(f"pretrain/{key}", row[key], step)

    def close(self) -> None:
        self.tb.close()


def plot_loss(metrics: Path, out: Path) -> Path | None:
    """Loss against step (raw and smoothed) as a PNG; None when there is nothing to plot."""
    rows = read_metrics(metrics)
    if not rows:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = [r["step"] for r in rows]
    loss = [r["loss"] for r in rows]
    window = max(1, len(loss) // 50)
    smooth = [
        sum(loss[max(0, i - window + 1) : i + 1]) / len(loss[max(0, i - window + 1) : i + 1])
        for i in range(len(loss))
    ]
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.plot(steps, loss, alpha=0.35, label="InfoNCE loss (Eq. 1)")
    ax.plot(steps, smooth, label=f"mean of {window} rows")
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.legend()
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)
    return out

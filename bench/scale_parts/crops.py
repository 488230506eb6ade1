"""Part ``crops`` of ``bench/scale.py``: every stage that reads or writes crops, at LUPerson's sizes.

The input of each size is a folder tree of hard links to the 14,834 real crops of
``../shared/data/unlabeled`` under distinct names (``c0000/CUHK/0338.jpg``, ``c0001/CUHK/0338.jpg``,
...): ``--from-images`` sees that many distinct files and the shards hold real JPEG bytes, but
the tree costs no disk. The last copy is partial: the first files of one fixed shuffled order,
so every size draws from all four folders. TownCentre's crops are ``<person>_<frame>.jpg``;
``--tracklet-pattern`` makes each person of each copy a tracklet, so ``tracklets.parquet`` is written.
One tree serves every size (it only grows); each size's workspace is deleted before the next.

Stages, each a real command measured by ``run_measured`` (whole process tree, files it left):

- ``build-shards --from-images`` (with the tracklet pattern), then the same command again on the
  finished build (``build-shards rerun``: plans again, reuses every shard, rewrites the index,
  ``samples.parquet``, ``tracklets.parquet`` and ``stats.json``: the tables alone);
- ``verify-shards`` (sha256, tar structure, every JPEG decoded), ``stats`` (figures, report.html);
- ``pretrain start``: ResNet-18 at 64x32, batches of 16, 2 steps on the CPU: the shard list, the
  index and sha256 check of every shard, and the first batches, not training;
- ``export-lmdb``, then ``build-shards --from-lmdb`` of that export into a second workspace.

A stage whose output would not fit the free disk (less ``RESERVE``) is skipped with a row saying
so (``rc`` ``SKIPPED``; the fits leave it out). A smoke run measures each command once, on 42 crops.
"""

from __future__ import annotations

import os
import random
import shutil
from pathlib import Path

from bench.scale_parts.context import Context
from bench.scale_parts.measure import SKIPPED, Measurement, run_measured

UNIT = "crops"
RESERVE = 5 << 30  # bytes of free disk left to the rest of the machine
TAR_OVERHEAD = 3 * 512 + 256  # per sample: two headers, the JSON's block, the JPEG's padding
TRACKLETS = r"(?P<tracklet>c[0-9]+/TownCentre/[0-9]+)_[0-9]+[.]jpg"
STAGES = (
    "build-shards --from-images",
    "build-shards rerun",
    "verify-shards",
    "stats + report.html",
    "pretrain start",
    "export-lmdb",
    "build-shards --from-lmdb",
)
# pretrain's start, not training: a small model, two CPU steps of 16 crops at 64x32
PRETRAIN = {"arch": "resnet18", "height": 64, "width": 32, "batch-size": 16, "queue-size": 64,
            "bn-groups": 2, "epochs": 1, "warmup-epochs": 0, "max-steps": 2, "workers": 1,
            "shuffle-buffer": 64, "device": "cpu", "cpu-threads": 1, "log-every": 1,
            "run-name": "scale"}  # fmt: skip


def sample_crops(data: Path) -> list[Path]:
    """The real crops every copy links to, in one fixed shuffled order (a partial copy takes a
    prefix of it, so it draws from every folder)."""
    files = sorted((data / "unlabeled").glob("*/*.jpg"))
    if not files:
        raise FileNotFoundError(f"no crops under {data / 'unlabeled'}")
    random.Random(0).shuffle(files)
    return files


def grow_inputs(folder: Path, crops: list[Path], have: int, want: int) -> None:
    """Add hard links ``have .. want - 1`` to the tree: link ``i`` is ``c{i // N:04d}/<set>/<name>``
    of crop ``i % N`` (N crops). A filesystem without hard links gets copies."""
    made: set[Path] = set()
    for i in range(have, want):
        crop = crops[i % len(crops)]
        target = folder / f"c{i // len(crops):04d}" / crop.parent.name / crop.name
        if target.parent not in made:
            target.parent.mkdir(parents=True, exist_ok=True)
            made.add(target.parent)
        try:
            os.link(crop, target)
        except OSError:
            shutil.copyfile(crop, target)


def room(folder: Path, need: int) -> str:
    """``""`` when ``need`` bytes fit the free disk under ``folder`` (less ``RESERVE``), else why not."""
    free = shutil.disk_usage(folder).free
    if need + RESERVE <= free:
        return ""
    return f"skipped: needs {need / 1e9:.1f} GB, {free / 1e9:.1f} GB free (keeping {RESERVE >> 30} GiB)"


def skipped(stage: str, size: int, why: str) -> Measurement:
    return Measurement(stage, size, UNIT, 0.0, 0.0, 0, 0, 0, "", SKIPPED, why)


def shard_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in (root / "shards").glob("lup-*.tar"))


def pipeline(stage: str, root: Path, *args: str | Path) -> list[str]:
    return ["python", "pipeline.py", stage, "--root", str(root), *map(str, args)]


def build_and_check(ctx: Context, size: int, inputs: Path, root: Path) -> list[Measurement]:
    """The build from the image tree, its rerun, and the stages that read its shards."""
    measure = dict(timeout_s=ctx.timeout_s)
    build = pipeline("build-shards", root, "--from-images", inputs, "--tracklet-pattern", TRACKLETS)
    rows = [run_measured("build-shards --from-images", size, UNIT, build, root, **measure)]
    if rows[0].rc != 0:
        return rows
    rows.append(run_measured("build-shards rerun", size, UNIT, build, root, **measure))
    rows.append(run_measured("verify-shards", size, UNIT, pipeline("verify-shards", root), root, **measure))
    rows.append(run_measured("stats + report.html", size, UNIT, pipeline("stats", root), root, **measure))
    start = pipeline("pretrain", root, *(f"--{k}={v}" for k, v in PRETRAIN.items()))
    rows.append(run_measured("pretrain start", size, UNIT, start, root, **measure))
    return rows


def lmdb_round_trip(ctx: Context, size: int, root: Path, second: Path) -> list[Measurement]:
    """export-lmdb of the shards, then build-shards --from-lmdb of the export into ``second``."""
    need = shard_bytes(root) + (64 << 20)
    why = room(root, need)
    if why:
        return [skipped("export-lmdb", size, why), skipped("build-shards --from-lmdb", size, why)]
    export = pipeline("export-lmdb", root)
    rows = [run_measured("export-lmdb", size, UNIT, export, root, timeout_s=ctx.timeout_s)]
    why = room(root, need) if rows[0].rc == 0 else "skipped: export-lmdb failed"
    if why:
        return [*rows, skipped("build-shards --from-lmdb", size, why)]
    build = pipeline("build-shards", second, "--from-lmdb", root / "lup_lmdb")
    rows.append(run_measured("build-shards --from-lmdb", size, UNIT, build, second, timeout_s=ctx.timeout_s))
    return rows


def run(ctx: Context) -> list[Measurement]:
    """Every crop stage at each fraction of LUPerson's 4,180,243 crops (see the module doc)."""
    crops = sample_crops(ctx.data)
    per_crop = sum(p.stat().st_size for p in crops) // len(crops) + TAR_OVERHEAD
    inputs = ctx.folder("crops-input")
    have = 0
    rows: list[Measurement] = []
    for fraction in ctx.fractions[:1] if ctx.smoke else ctx.fractions:  # smoke: each command once
        size = ctx.size(UNIT, fraction)
        work = ctx.work / f"crops-{size}"
        why = room(ctx.work, size * per_crop)
        if why:
            rows += [skipped(stage, size, why) for stage in STAGES]
            continue
        grow_inputs(inputs, crops, have, size)
        have = max(have, size)
        try:
            built = build_and_check(ctx, size, inputs, work / "root")
            rows += built
            if built[0].rc == 0:
                rows += lmdb_round_trip(ctx, size, work / "root", work / "from-lmdb")
        finally:
            shutil.rmtree(work, ignore_errors=True)  # one workspace on disk at a time
    shutil.rmtree(inputs, ignore_errors=True)
    return rows

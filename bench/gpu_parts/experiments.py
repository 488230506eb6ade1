"""Parts ``transfer``, ``ablations`` and ``data-scale``: the transfer experiment, GPU-sized.

- transfer: pre-train with the ``lup`` and ``mocov2`` presets on the shared shards, then frozen
  ``evaluate`` and IDE ``finetune`` for every init (those two, random, imagenet when its weights
  are cached) x dataset x seed;
- ablations (the paper's Tables 2-4): ``lup`` without RandomErasing, at temperature 0.2, with
  colour jitter, each pre-trained in its own workspace; the ``lup`` baseline is the transfer
  part's run (same workspace, found finished);
- data-scale (Table 7's shape): ``lup`` on 25 / 50 / 100 % of the crops (each source folder keeps
  its share; each share's shards written by build-shards), with the same number of steps:
  ``epoch_size`` is the full set's size for every share, so epochs, warm-up and cosine schedule
  are identical and only the data differ; a smaller share is seen more often. (The paper does not
  say how it kept its schedules comparable; a fixed number of epochs would also give the smaller
  shares less training.)
- tracklets (issue 17): ``mocov2`` pre-trained with instance positives and with tracklet
  positives at the same budget, on shards whose TownCentre crops are tracklets (built by
  bench/transfer.py in a workspace of its own), then the transfer part's evaluation, random beside.
"""

from __future__ import annotations

from typing import Any

from bench.gpu_parts.context import Context, build_shards, link_shards, subset_tree
from bench.gpu_parts.transfer_runs import baselines, run_table, transfer_argv

ABLATIONS = {  # title: pretrain settings (pretrain/settings.py names)
    "lup -RE": ["random_erasing=false"],
    "lup tau 0.2": ["temperature=0.2"],
    "lup +CJ": ["color_jitter=true"],
}


def run_transfer(ctx: Context, record: dict[str, Any]) -> None:
    """The transfer experiment in the shared shards' workspace."""
    base = baselines(ctx, ["random", "imagenet"], record["notes"])
    argv = transfer_argv(ctx, ctx.shards(), ["lup", "mocov2"], base, [])
    run_table(ctx, record, "transfer", argv)


def ablation_plan(ctx: Context) -> list[tuple[str, str | None, list[str]]]:
    """(title, workspace name or None for the transfer part's, pretrain switches) of each variant."""
    variants = {"lup": []} | ABLATIONS
    if ctx.smoke:  # the loop's shape in seconds: one variant
        variants = dict(list(ABLATIONS.items())[:1])
    plan = []
    for title, switches in variants.items():
        workspace = f"ablation_{switches[0].split('=')[0]}" if switches else None
        plan.append((f"ablation {title}", workspace, switches))
    return plan


def run_ablations(ctx: Context, record: dict[str, Any]) -> None:
    """``lup`` (the transfer part's workspace), then each single switch in a workspace of its own."""
    for title, workspace, switches in ablation_plan(ctx):
        root = link_shards(ctx, ctx.work / workspace) if workspace else ctx.shards()
        run_table(ctx, record, title, transfer_argv(ctx, root, ["lup"], [], switches))


def run_data_scale(ctx: Context, record: dict[str, Any]) -> None:
    """``lup`` on a growing share of the crops, same steps; shards of each share built by build-shards."""
    fractions = (0.5,) if ctx.smoke else tuple(ctx.options.scales)
    images = ctx.work / "smoke_unlabeled" if ctx.smoke else ctx.data / "unlabeled"
    record["raw"] = {"epoch_size": ctx.crops, "crops": {}}
    for fraction in fractions:
        root = ctx.work / f"scale_{round(100 * fraction)}"
        if fraction >= 1.0:
            link_shards(ctx, root)
            crops = ctx.crops
        else:
            subset = subset_tree(images, ctx.work / f"unlabeled_{round(100 * fraction)}", fraction)
            crops = int(build_shards(subset, root, ctx.cpu_workers() or 1)["samples"])
        record["raw"]["crops"][fraction] = crops
        title = f"data scale {100 * fraction:g}% ({crops:,} crops)"
        run_table(ctx, record, title, transfer_argv(ctx, root, ["lup"], [], [f"epoch_size={ctx.crops}"]))


def run_tracklets(ctx: Context, record: dict[str, Any]) -> None:
    """Instance vs tracklet positives (``bench/transfer.py --positives instance,tracklet``)."""
    argv = transfer_argv(ctx, ctx.work / "tracklets", ["mocov2"], ["random"], [])
    run_table(ctx, record, "tracklet positives", [*argv, "--positives", "instance,tracklet"])

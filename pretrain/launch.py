"""``pipeline.py pretrain``: one process, or DDP launched through torchrun's machinery.

With ``gpus * nnodes > 1`` this starts a torch elastic agent (what ``torchrun`` runs) with a
static rendezvous at ``master_addr:master_port``: ``gpus`` worker processes on this node, ranks
``node_rank * gpus ...``. On CPU (``--device cpu``) the workers are CPU processes talking gloo.
Started by an external ``torchrun`` (``RANK`` set), it runs the training loop directly.

Before any process starts: the shard list is made and checked against ``index.parquet``
(``pretrain.shardlist``), a run that is already finished returns its recorded summary without
writing anything (``pretrain.checkpoint``), and every shard's sha256 is checked. The training
processes read only the files so checked (``ShardList.open``).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from common.errors import UsageError
from common.settings import settings_to_dict
from pretrain.shardlist import ShardList, shard_list, verify_shards

log = logging.getLogger(__name__)


def _check_before_launch(cfg, root: Path) -> ShardList:
    """Fail with one line here rather than inside every spawned worker; the shards to read."""
    shards = shard_list(cfg.shards, root)
    if cfg.device == "cuda" or (cfg.device == "auto" and cfg.gpus > 1):
        import torch

        have = torch.cuda.device_count()
        if cfg.device == "cuda" and have == 0:
            raise UsageError("device cuda: no CUDA GPU is visible")
        if 0 < have < cfg.gpus:
            raise UsageError(f"gpus {cfg.gpus}: only {have} CUDA GPUs are visible")
    return shards


def pretrain(cfg, root: Path) -> dict[str, Any]:
    """Pre-train MoCo v2 on the shards; the summary of rank 0 (``ranks_agree`` over this node's ranks)."""
    from pretrain.checkpoint import finished_summary, planned_stop
    from pretrain.trainer import train_worker

    root = Path(root)
    shards = _check_before_launch(cfg, root)
    run_dir = root / "runs" / cfg.run_name
    done = finished_summary(run_dir, planned_stop(cfg, shards.samples), settings_to_dict(cfg))
    if done is not None:
        log.info(
            "pretrain: run %s is finished at step %d (%s): nothing to do",
            cfg.run_name,
            done["steps"],
            run_dir,
        )
        return {**done, "already_finished": True}
    verify_shards(shards)
    if "RANK" in os.environ or cfg.gpus * cfg.nnodes == 1:
        return train_worker(cfg, root, shards)
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(
        min_nodes=cfg.nnodes,
        max_nodes=cfg.nnodes,
        nproc_per_node=cfg.gpus,
        run_id=f"{cfg.run_name}@{cfg.master_addr}:{cfg.master_port}",  # the same on every node
        rdzv_backend="static",
        rdzv_endpoint=f"{cfg.master_addr}:{cfg.master_port}",
        rdzv_configs={"rank": cfg.node_rank},
        max_restarts=0,
        monitor_interval=0.5,
        start_method="spawn",
    )
    log.info("launching %d processes on node %d of %d", cfg.gpus, cfg.node_rank, cfg.nnodes)
    results = elastic_launch(config, train_worker)(cfg, root, shards)
    ranks = sorted(results)
    summary = dict(results[ranks[0]])
    summary["ranks_agree"] = len({tuple(r["checksums"].values()) for r in results.values()}) == 1
    summary["node_rank"] = cfg.node_rank
    return summary

"""mAP, CMC and mINP with the Market-1501 protocol, vectorized over queries.

Same numbers as fast-reid's ``evaluation/rank.py`` (``eval_market1501``): for every query the
gallery samples with the query's identity *and* camera are removed (junk), queries with no
remaining match are skipped, CMC is averaged over the valid queries, AP is the mean precision at
every true match, and INP (Ye et al., TPAMI 2021) is ``#matches / (rank of the last match)``.
Ties in distance are ordered by gallery index (a stable sort).

Example::

    >>> import numpy as np
    >>> d = np.array([[0.1, 0.5, 0.9]])
    >>> r = evaluate(d, np.array([1]), np.array([1, 2, 1]), np.array([0]), np.array([1, 1, 1]))
    >>> round(r["mAP"], 4), r["cmc"][0], r["num_valid_queries"]
    (0.8333, 1.0, 1)
"""

from __future__ import annotations

from typing import Any

import numpy as np

QUERY_CHUNK = 512  # bounds memory: a chunk holds a few (chunk x gallery) arrays


def evaluate(
    distmat: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_camids: np.ndarray,
    g_camids: np.ndarray,
    max_rank: int = 50,
) -> dict[str, Any]:
    """Market-1501 evaluation of a (num_query x num_gallery) distance matrix.

    Returns fractions in [0, 1]: ``mAP``, ``mINP``, ``cmc`` (array of ``max_rank`` values,
    ``cmc[k-1]`` = rank-k accuracy) and ``num_valid_queries``. Raises ``ValueError`` when no
    query has a valid match or shapes disagree.
    """
    distmat = np.asarray(distmat, dtype=np.float64)
    q_pids, g_pids = np.asarray(q_pids), np.asarray(g_pids)
    q_camids, g_camids = np.asarray(q_camids), np.asarray(g_camids)
    num_q, num_g = distmat.shape
    if (len(q_pids), len(q_camids), len(g_pids), len(g_camids)) != (num_q, num_q, num_g, num_g):
        raise ValueError(f"distmat is {num_q}x{num_g} but ids/cameras have other lengths")
    max_rank = min(max_rank, num_g)
    cmc_sum = np.zeros(max_rank)
    ap_all: list[np.ndarray] = []
    inp_all: list[np.ndarray] = []
    for start in range(0, num_q, QUERY_CHUNK):
        sl = slice(start, start + QUERY_CHUNK)
        cmc_hits, ap, inp = _chunk(distmat[sl], q_pids[sl], g_pids, q_camids[sl], g_camids, max_rank)
        cmc_sum += cmc_hits
        ap_all.append(ap)
        inp_all.append(inp)
    ap_cat, inp_cat = np.concatenate(ap_all), np.concatenate(inp_all)
    if ap_cat.size == 0:
        raise ValueError("no query has a matching gallery sample from another camera")
    return {
        "mAP": float(ap_cat.mean()),
        "mINP": float(inp_cat.mean()),
        "cmc": cmc_sum / ap_cat.size,
        "num_valid_queries": int(ap_cat.size),
    }


def _chunk(
    dist: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_cams: np.ndarray,
    g_cams: np.ndarray,
    max_rank: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CMC hit counts (summed over valid queries), AP and INP of the valid queries of one chunk."""
    order = np.argsort(dist, axis=1, kind="stable")  # n x G
    pid_sorted, cam_sorted = g_pids[order], g_cams[order]  # n x G
    same_pid = pid_sorted == q_pids[:, None]  # n x G
    keep = ~(same_pid & (cam_sorted == q_cams[:, None]))  # junk removed
    match = same_pid & keep  # n x G: true matches among kept samples
    kept_rank = np.cumsum(keep, axis=1)  # n x G: 1-based rank once junk is removed
    cum_match = np.cumsum(match, axis=1)  # n x G
    num_rel = cum_match[:, -1]  # n
    valid = num_rel > 0
    kept_rank, cum_match, match, num_rel = kept_rank[valid], cum_match[valid], match[valid], num_rel[valid]

    # AP = mean over true matches of precision at that match's rank.
    precision = np.where(match, cum_match / np.maximum(kept_rank, 1), 0.0)  # n x G
    ap = precision.sum(axis=1) / num_rel
    # INP = matches / rank of the hardest (last) match.
    last_rank = np.where(match, kept_rank, 0).max(axis=1)
    inp = num_rel / last_rank
    # CMC: hit at rank k when the first match has rank <= k.
    first_rank = np.where(match, kept_rank, np.iinfo(np.int64).max).min(axis=1)  # n
    hits = (first_rank[:, None] <= np.arange(1, max_rank + 1)[None, :]).sum(axis=0)
    return hits.astype(np.float64), ap, inp


def summary_percent(result: dict[str, Any]) -> dict[str, float]:
    """The figures a command reports: mAP, rank-1/5/10 and mINP in percent."""
    cmc = result["cmc"]

    def rank(k: int) -> float:
        return round(100.0 * float(cmc[min(k, len(cmc)) - 1]), 2)

    return {
        "mAP": round(100.0 * result["mAP"], 2),
        "rank1": rank(1),
        "rank5": rank(5),
        "rank10": rank(10),
        "mINP": round(100.0 * result["mINP"], 2),
    }

"""mAP, CMC and mINP with the Market-1501 protocol, vectorized over queries.

Same numbers as fast-reid's ``evaluation/rank.py`` (``eval_market1501``): for every query the
gallery samples with the query's identity *and* camera are removed (junk), queries with no
remaining match are skipped, CMC is averaged over the valid queries, AP is the mean precision at
every true match, and INP (Ye et al., TPAMI 2021) is ``#matches / (rank of the last match)``.
Ties in distance are ordered by gallery index (a stable sort), so results do not depend on the
sort algorithm.

Example::

    >>> import numpy as np
    >>> d = np.array([[0.1, 0.5, 0.9]])
    >>> r = evaluate(d, np.array([1]), np.array([1, 2, 1]), np.array([0]), np.array([1, 1, 1]))
    >>> round(r["mAP"], 4), float(r["cmc"][0]), r["num_valid_queries"]
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
    distmat = np.asarray(distmat)
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


def stable_argsort(dist: np.ndarray) -> np.ndarray:
    """Row-wise argsort with ties in gallery-index order, at the speed of numpy's unstable sort.

    float32 (what feature matrices give): sort the unique int64 keys
    ``(monotone float bits << 32) | index`` and keep their low half. Other dtypes: the fast sort, redone stably on the rows that have ties.
    """
    if dist.dtype == np.float32:
        bits = (dist + np.float32(0.0)).view(np.int32)  # + 0.0 turns -0.0 into +0.0
        monotone = bits ^ ((bits >> 31) & 0x7FFFFFFF)  # orders like the float values
        keys = (monotone.astype(np.int64) << 32) | np.arange(dist.shape[1], dtype=np.int64)
        return np.sort(keys, axis=1) & 0xFFFFFFFF  # sorting the keys is faster than argsort
    order = np.argsort(dist, axis=1)
    tied = (np.diff(np.take_along_axis(dist, order, axis=1), axis=1) == 0).any(axis=1)
    if tied.any():
        order[tied] = np.argsort(dist[tied], axis=1, kind="stable")
    return order


def _chunk(
    dist: np.ndarray,
    q_pids: np.ndarray,
    g_pids: np.ndarray,
    q_cams: np.ndarray,
    g_cams: np.ndarray,
    max_rank: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CMC hit counts (summed over valid queries), AP and INP of the valid queries of one chunk."""
    order = stable_argsort(dist)  # n x G
    same_pid = g_pids[order] == q_pids[:, None]  # n x G
    keep = ~(same_pid & (g_cams[order] == q_cams[:, None]))  # junk removed
    match = same_pid & keep  # n x G: true matches among kept samples
    rows, cols = np.nonzero(match)  # every true match, row-major: sorted by rank within a row
    num_rel = np.bincount(rows, minlength=len(dist))  # n
    valid = num_rel > 0
    # 1-based rank of each match once junk is removed, and its index among its query's matches.
    kept_rank = np.cumsum(keep, axis=1, dtype=np.int32)[rows, cols]
    first = np.concatenate(([0], np.cumsum(num_rel)[:-1]))  # offset of each row's first match
    nth = np.arange(len(rows)) - first[rows] + 1
    # AP = mean over true matches of precision at that match's rank.
    ap = np.bincount(rows, weights=nth / kept_rank, minlength=len(dist))[valid] / num_rel[valid]
    # INP = matches / rank of the hardest (last) match.
    last_rank = kept_rank[first[valid] + num_rel[valid] - 1]
    inp = num_rel[valid] / last_rank
    # CMC: hit at rank k when the first match has rank <= k.
    first_rank = kept_rank[first[valid]]
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

"""k-reciprocal re-ranking (Zhong et al., "Re-ranking Person Re-identification with k-reciprocal
Encoding", CVPR 2017), the numpy form used by fast-reid and torchreid.

The final distance is ``(1 - lambda) * Jaccard + lambda * original`` (Eq. 12 of that paper), where
the Jaccard distance compares the (query-expanded, Eq. 11) k-reciprocal neighbour sets of two
samples, weighted by a Gaussian kernel of their distance (Eq. 7).
"""

from __future__ import annotations

import numpy as np


def re_ranking(
    q_g_dist: np.ndarray,
    q_q_dist: np.ndarray,
    g_g_dist: np.ndarray,
    k1: int = 20,
    k2: int = 6,
    lambda_value: float = 0.3,
) -> np.ndarray:
    """Re-ranked (num_query x num_gallery) distances from the three distance blocks."""
    num_q, num_g = q_g_dist.shape
    original = np.concatenate(
        [
            np.concatenate([q_q_dist, q_g_dist], axis=1),
            np.concatenate([q_g_dist.T, g_g_dist], axis=1),
        ],
        axis=0,
    ).astype(np.float64)  # N x N, N = num_q + num_g
    original = np.power(original, 2)
    original = (original / np.maximum(original.max(axis=0), 1e-12)).T  # column-normalized, transposed
    n = original.shape[0]
    k1 = min(k1, n - 1)
    rank = np.argsort(original, axis=1, kind="stable")  # N x N
    weights = np.zeros_like(original)
    for i in range(n):
        expansion = _k_reciprocal(rank, i, k1)
        for candidate in expansion:  # Eq. 11: add neighbours that share most of their set
            cand = _k_reciprocal(rank, candidate, int(np.around(k1 / 2)))
            if len(np.intersect1d(cand, expansion)) > 2 / 3 * len(cand):
                expansion = np.append(expansion, cand)
        expansion = np.unique(expansion)
        w = np.exp(-original[i, expansion])  # Eq. 7
        weights[i, expansion] = w / w.sum()
    if k2 > 1:  # local query expansion
        weights = np.stack([weights[rank[i, :k2]].mean(axis=0) for i in range(n)])
    inv_index = [np.where(weights[:, i] != 0)[0] for i in range(n)]
    jaccard = np.zeros((num_q, n))
    for i in range(num_q):
        nonzero = np.where(weights[i] != 0)[0]
        shared = np.zeros(n)
        for j in nonzero:
            shared[inv_index[j]] += np.minimum(weights[i, j], weights[inv_index[j], j])
        jaccard[i] = 1 - shared / (2 - shared)
    final = jaccard * (1 - lambda_value) + original[:num_q] * lambda_value
    return final[:, num_q:]


def _k_reciprocal(rank: np.ndarray, i: int, k: int) -> np.ndarray:
    """Indices j among i's k+1 nearest whose own k+1 nearest include i (Eq. 5)."""
    forward = rank[i, : k + 1]
    backward = rank[forward, : k + 1]
    return forward[np.where(backward == i)[0]]

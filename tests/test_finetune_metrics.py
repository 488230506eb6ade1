"""The vectorized Market-1501 evaluation against a per-query reference loop, and re-ranking."""

from __future__ import annotations

import numpy as np
import pytest

from finetune import metrics
from finetune.metrics import evaluate, summary_percent
from finetune.rerank import re_ranking


def reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank=50):
    """fast-reid's eval_market1501 written as the plain loop over queries (stable sort)."""
    max_rank = min(max_rank, distmat.shape[1])
    all_cmc, all_ap, all_inp = [], [], []
    for i in range(distmat.shape[0]):
        order = np.argsort(distmat[i], kind="stable")
        keep = ~((g_pids[order] == q_pids[i]) & (g_camids[order] == q_camids[i]))
        raw = (g_pids[order][keep] == q_pids[i]).astype(float)
        if not raw.any():
            continue
        cum = raw.cumsum()
        last = np.max(np.where(raw == 1)[0])
        all_inp.append(cum[last] / (last + 1.0))
        cmc = np.minimum(cum, 1.0)
        all_cmc.append(np.pad(cmc, (0, max(0, max_rank - len(cmc))), mode="edge")[:max_rank])
        precisions = [cum[k] / (k + 1.0) for k in range(len(raw)) if raw[k]]
        all_ap.append(sum(precisions) / raw.sum())
    return np.mean(all_ap), np.mean(all_inp), np.mean(all_cmc, axis=0), len(all_ap)


def random_case(rng, n_q, n_g, n_ids, n_cams, ties=False, dtype=np.float64):
    q_pids = rng.integers(0, n_ids, n_q)
    g_pids = rng.integers(0, n_ids + 5, n_g)  # some gallery-only identities (distractors)
    q_cams = rng.integers(0, n_cams, n_q)
    g_cams = rng.integers(0, n_cams, n_g)
    dist = rng.random((n_q, n_g))
    if ties:
        dist = np.round(dist * 5) / 5 - 0.4  # many equal distances (and -0.0): the order must agree too
    return dist.astype(dtype), q_pids, g_pids, q_cams, g_cams


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])  # two sort paths in metrics.stable_argsort
def test_matches_reference_loop(seed, ties, dtype):
    rng = np.random.default_rng(seed)
    case = random_case(rng, n_q=40 + seed, n_g=120, n_ids=25, n_cams=3 + seed % 3, ties=ties, dtype=dtype)
    got = evaluate(*case)
    m_ap, m_inp, cmc, n_valid = reference(*case)
    assert got["num_valid_queries"] == n_valid
    assert abs(got["mAP"] - m_ap) < 1e-6
    assert abs(got["mINP"] - m_inp) < 1e-6
    np.testing.assert_allclose(got["cmc"], cmc, atol=1e-6)


def test_case_has_junk_and_queries_without_match():
    """The random cases above really exercise both special rules of the protocol."""
    rng = np.random.default_rng(0)
    dist, q_pids, g_pids, q_cams, g_cams = random_case(rng, 40, 120, 25, 3)
    junk = (q_pids[:, None] == g_pids[None, :]) & (q_cams[:, None] == g_cams[None, :])
    valid = ((q_pids[:, None] == g_pids[None, :]) & ~junk).any(axis=1)
    assert junk.any() and not valid.all()
    assert evaluate(dist, q_pids, g_pids, q_cams, g_cams)["num_valid_queries"] == valid.sum()


def test_chunked_equals_single_pass(monkeypatch):
    rng = np.random.default_rng(7)
    case = random_case(rng, 70, 90, 20, 4)
    whole = evaluate(*case)
    monkeypatch.setattr(metrics, "QUERY_CHUNK", 8)
    chunked = evaluate(*case)
    assert abs(whole["mAP"] - chunked["mAP"]) < 1e-12
    np.testing.assert_allclose(whole["cmc"], chunked["cmc"])


def test_hand_computed_case():
    # Query pid 1 cam 0. Sorted gallery: pid1/cam0 (junk), pid2, pid1/cam1, pid3, pid1/cam2.
    dist = np.array([[0.0, 0.1, 0.2, 0.3, 0.4]])
    g_pids, g_cams = np.array([1, 2, 1, 3, 1]), np.array([0, 0, 1, 1, 2])
    r = evaluate(dist, np.array([1]), g_pids, np.array([0]), g_cams, max_rank=4)
    # kept ranks: pid2 -> 1, pid1 -> 2, pid3 -> 3, pid1 -> 4; AP = (1/2 + 2/4) / 2
    assert r["mAP"] == pytest.approx(0.5)
    assert r["mINP"] == pytest.approx(2 / 4)
    np.testing.assert_allclose(r["cmc"], [0, 1, 1, 1])
    assert summary_percent(r) == {"mAP": 50.0, "rank1": 0.0, "rank5": 100.0, "rank10": 100.0, "mINP": 50.0}


def test_no_valid_query_raises():
    with pytest.raises(ValueError):
        evaluate(np.zeros((1, 2)), np.array([1]), np.array([1, 2]), np.array([0]), np.array([0, 0]))


def _clustered(rng, n_ids=12, per_id=4, dim=8, noise=0.35):
    centers = rng.normal(size=(n_ids, dim))
    pids = np.repeat(np.arange(n_ids), per_id)
    feats = centers[pids] + noise * rng.normal(size=(len(pids), dim))
    feats /= np.linalg.norm(feats, axis=1, keepdims=True)
    cams = np.tile(np.arange(per_id), n_ids)
    is_q = cams == 0
    return feats[is_q], feats[~is_q], pids[is_q], pids[~is_q], cams[is_q], cams[~is_q]


def test_rerank_lambda_one_keeps_original_order():
    q, g, *_ = _clustered(np.random.default_rng(1))
    qg, qq, gg = 1 - q @ g.T, 1 - q @ q.T, 1 - g @ g.T
    out = re_ranking(qg, qq, gg, k1=5, k2=3, lambda_value=1.0)
    assert out.shape == qg.shape
    np.testing.assert_array_equal(
        np.argsort(out, axis=1, kind="stable"), np.argsort(qg, axis=1, kind="stable")
    )


def test_rerank_helps_on_clustered_features():
    q, g, qp, gp, qc, gc = _clustered(np.random.default_rng(2), noise=0.6)
    qg, qq, gg = 1 - q @ g.T, 1 - q @ q.T, 1 - g @ g.T
    before = evaluate(qg, qp, gp, qc, gc)["mAP"]
    after = evaluate(re_ranking(qg, qq, gg, k1=4, k2=2, lambda_value=0.3), qp, gp, qc, gc)["mAP"]
    assert after >= before

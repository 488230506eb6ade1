"""Perceptual hashes (DCT pHash) of frames, for spotting re-uploads of the same clip.

The classic pHash: grey frame, shrunk to 32x32, 2-D DCT-II, keep the 8x8 lowest frequencies,
one bit per coefficient: above their median or not. Re-encoding, rescaling and mild colour shifts
move only a few of the 64 bits; different content differs in about half of them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

HASH_SIZE = 8  # 8x8 = 64 bits
IMAGE_SIZE = 32


def dct_matrix(n: int) -> np.ndarray:
    """Orthonormal DCT-II matrix ``D`` (n x n): ``D @ x`` is the DCT of the column vector ``x``."""
    k = np.arange(n)[:, None]
    i = np.arange(n)[None, :]
    d = np.cos(np.pi * (2 * i + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    d[0] /= np.sqrt(2.0)
    return d


_DCT = dct_matrix(IMAGE_SIZE)


def phash(frame: np.ndarray) -> int:
    """64-bit pHash of a BGR (or grey) uint8 frame."""
    import cv2

    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if frame.ndim == 3 else frame
    small = cv2.resize(grey, (IMAGE_SIZE, IMAGE_SIZE), interpolation=cv2.INTER_AREA).astype(np.float64)
    low = (_DCT @ small @ _DCT.T)[:HASH_SIZE, :HASH_SIZE]  # 8x8 lowest frequencies
    bits = (low > np.median(low)).ravel()
    return int(sum(1 << i for i, b in enumerate(bits) if b))


def hamming(a: int, b: int) -> int:
    """Number of differing bits of two hashes."""
    return (a ^ b).bit_count()


def mean_distances(signature: Sequence[int], others: np.ndarray) -> np.ndarray:
    """Mean Hamming distance between one video's frame hashes and each row of ``others``.

    ``signature``: k hashes; ``others``: (n, k) uint64. Returns (n,) float distances, frame i of
    one video compared with frame i of the other.
    """
    if len(others) == 0:
        return np.zeros(0)
    xor = np.bitwise_xor(others, np.asarray(signature, dtype=np.uint64)[None, :])  # n x k
    return np.bitwise_count(xor).mean(axis=1)

"""Image bytes <-> pixels, with the colour order in every name.

The shard-writing side works in OpenCV's BGR (video frames decode to BGR, crops are cut from them
and encoded as they are); training wants RGB, which the decoder gives directly. No function here
converts silently: ``decode_bgr`` / ``encode_jpeg`` / ``to_bgr`` are BGR, ``decode_rgb`` is RGB.
"""

from __future__ import annotations

import cv2
import numpy as np

JPEG_MAGIC = b"\xff\xd8\xff"

# RGB from the decoder itself (a BGR decode + channel flip costs half a decode again); EXIF
# orientation ignored, as PIL's Image.open and torchvision's decode_jpeg do.
IMREAD = cv2.IMREAD_COLOR_RGB | cv2.IMREAD_IGNORE_ORIENTATION


def decode_rgb(data: bytes) -> np.ndarray | None:
    """JPEG bytes -> RGB uint8 HxWx3 (PIL's pixel values), or None when the bytes are not an image."""
    return cv2.imdecode(np.frombuffer(data, np.uint8), IMREAD) if data else None


def is_jpeg(data: bytes) -> bool:
    """Starts with a JPEG's SOI marker."""
    return data[:3] == JPEG_MAGIC


def decode_bgr(data: bytes) -> np.ndarray | None:
    """The pixels of an encoded image as stored (BGR or BGRA, grayscale, 8 or 16 bit: what an importer
    must see to convert any source), ``None`` when OpenCV cannot decode it."""
    if not data:
        return None
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def encode_jpeg(pixels: np.ndarray, quality: int) -> bytes:
    """JPEG bytes of BGR pixels (OpenCV, deterministic for the same pixels and quality)."""
    ok, buf = cv2.imencode(".jpg", pixels, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise ValueError("OpenCV could not encode the image as JPEG")
    return buf.tobytes()


def to_bgr(pixels: np.ndarray) -> np.ndarray:
    """Drop alpha / widen 16-bit and grayscale to 8-bit BGR so that any source can become a JPEG."""
    if pixels.dtype == np.uint16:
        pixels = (pixels >> 8).astype(np.uint8)
    elif pixels.dtype != np.uint8:
        pixels = cv2.convertScaleAbs(pixels, alpha=255.0 / max(float(pixels.max()), 1.0))
    if pixels.ndim == 2:
        return cv2.cvtColor(pixels, cv2.COLOR_GRAY2BGR)
    if pixels.shape[2] == 4:
        return cv2.cvtColor(pixels, cv2.COLOR_BGRA2BGR)
    return pixels

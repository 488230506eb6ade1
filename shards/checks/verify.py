"""``python pipeline.py verify-shards``: re-read every shard and name the bad ones.

For each row of ``shards/index.parquet``: the file exists with the recorded size and sha256, the
tar reads to its end, every sample has a ``.jpg`` and a ``.json``, the sample count matches, and
(``--decode``, the default) every JPEG decodes and every JSON parses. Tars on disk that the index
does not list are reported too. The report goes to ``shards/verify.json`` with the sha256 of the
index it checked (``common.manifests.shard_index.drop_stale_verdict`` removes it when the shards
change; on a read-only root it is not written, with a warning); any bad shard makes the command
fail (exit status 2) with one line naming the shards.
"""

from __future__ import annotations

import json
import logging
import tarfile
from collections import defaultdict
from pathlib import Path
from typing import Any

from common import engine
from common.atomic import write_json
from common.errors import UsageError
from common.integrity import sha256_file
from common.manifests.shard_index import INDEX_NAME, VERIFY_NAME, read_shard_index
from shards.settings import VerifySettings

log = logging.getLogger(__name__)


def read_samples(path: Path) -> dict[str, dict[str, bytes]]:
    """``{key: {ext: bytes}}`` of a tar, read to its end (raises ``tarfile.ReadError`` when cut)."""
    samples: dict[str, dict[str, bytes]] = defaultdict(dict)
    with tarfile.open(path, "r:") as tar:
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            samples[key][ext] = tar.extractfile(member).read()
    return samples


def check_sample(files: dict[str, bytes], decode: bool) -> str | None:
    """Why a sample is bad, or ``None``."""
    import cv2
    import numpy as np

    if set(files) != {"jpg", "json"}:
        return f"has {sorted(files)}, expected ['jpg', 'json']"
    if not decode:
        return None
    try:
        json.loads(files["json"])
    except ValueError:
        return "json does not parse"
    if cv2.imdecode(np.frombuffer(files["jpg"], np.uint8), cv2.IMREAD_UNCHANGED) is None:
        return "jpg does not decode"
    return None


def check_shard(job: tuple[str, dict[str, Any], bool]) -> dict[str, Any]:
    """Every check of one shard: ``{"shard", "problems": [...], "samples", "bad_samples"}``."""
    path_text, row, decode = job
    path = Path(path_text)
    report: dict[str, Any] = {"shard": path.name, "problems": [], "samples": 0, "bad_samples": {}}
    problems = report["problems"]
    if not path.is_file():
        problems.append("missing")
        return report
    size = path.stat().st_size
    if size != row["bytes"]:
        problems.append(
            f"truncated: {size} of {row['bytes']} bytes" if size < row["bytes"] else "size differs"
        )
    if sha256_file(path) != row["sha256"]:
        problems.append("sha256 differs from the index")
    try:
        samples = read_samples(path)
    except (tarfile.TarError, EOFError, OSError) as e:
        problems.append(f"tar unreadable: {e}")
        return report
    report["samples"] = len(samples)
    if len(samples) != row["n_samples"]:
        problems.append(f"{len(samples)} samples, index says {row['n_samples']}")
    for key, files in samples.items():
        why = check_sample(files, decode)
        if why:
            report["bad_samples"][key] = why
    if report["bad_samples"]:
        problems.append(f"{len(report['bad_samples'])} bad samples")
    return report


def write_report(path: Path, report: dict[str, Any]) -> None:
    """Write ``verify.json``; on a read-only root only warn (the verdict is still printed)."""
    try:
        write_json(path, report)
    except OSError as e:
        log.warning("could not write %s (%s): the verdict is only printed", path, e.strerror or e)


def verify_shards(cfg: VerifySettings, root: Path) -> dict[str, Any]:
    """Check every shard in the index; raise ``UsageError`` naming the bad ones."""
    out = Path(root) / "shards"
    index = read_shard_index(out)
    index_sha256 = sha256_file(out / INDEX_NAME)
    jobs = [(str(out / r["shard"]), r, cfg.decode) for r in index.to_dict("records")]
    reports = list(
        engine.ordered_map(
            check_shard,
            jobs,
            workers=cfg.workers,
            context="forkserver",  # clean workers: none inherits this process's pyarrow threads
            preload=[check_shard.__module__],
            label=lambda job: job[0],
        )
    )
    unlisted = sorted(p.name for p in out.glob("lup-*.tar") if p.name not in set(index["shard"]))
    bad = {r["shard"]: r["problems"] for r in reports if r["problems"]}
    bad.update({name: ["not in index.parquet"] for name in unlisted})
    summary = {
        "shards": len(index),
        "shards_ok": len(index) - len([r for r in reports if r["problems"]]),
        "shards_bad": len(bad),
        "samples": sum(r["samples"] for r in reports),
        "samples_in_index": int(index["n_samples"].sum()),
        "bad_samples": sum(len(r["bad_samples"]) for r in reports),
        "decoded": cfg.decode,
    }
    write_report(out / VERIFY_NAME, {**summary, "index_sha256": index_sha256, "bad": bad, "reports": reports})
    if bad:
        for name, problems in bad.items():
            log.error("%s: %s", name, "; ".join(problems))
        named = ", ".join(f"{name} ({'; '.join(problems)})" for name, problems in bad.items())
        raise UsageError(f"{len(bad)} of {len(index) + len(unlisted)} shards failed verification: {named}")
    return summary

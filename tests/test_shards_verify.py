"""verify-shards names corrupt, truncated and unlisted shards, and bad samples in a sound tar."""

from __future__ import annotations

import hashlib
import json
import shutil

import pandas as pd
import pytest

import pipeline
from common.errors import UsageError
from shards.build import build_shards
from shards.checks.verify import verify_shards
from shards.settings import ShardSettings, VerifySettings


@pytest.fixture()
def built(unlabeled_dir, tmp_path):
    tree = tmp_path / "tree"
    tree.mkdir()
    for src in sorted((unlabeled_dir / "INRIA").glob("*.jpg"))[:40]:
        shutil.copy(src, tree / src.name)
    root = tmp_path / "ws"
    build_shards(ShardSettings(from_images=str(tree), max_samples=5, workers=1), root)
    return root


def test_verify_names_every_damaged_shard(built):
    shards = built / "shards"
    assert verify_shards(VerifySettings(), built)["shards_ok"] == 8

    flipped = bytearray((shards / "lup-000002.tar").read_bytes())
    flipped[len(flipped) // 3 : len(flipped) // 3 + 16] = b"\x00" * 16
    (shards / "lup-000002.tar").write_bytes(bytes(flipped))
    cut = (shards / "lup-000005.tar").read_bytes()
    (shards / "lup-000005.tar").write_bytes(cut[: len(cut) // 2])
    shutil.copy(shards / "lup-000000.tar", shards / "lup-000099.tar")
    # a JPEG broken inside a sound tar whose index row was updated to match: only decoding sees it
    sound = bytearray((shards / "lup-000006.tar").read_bytes())
    sound[512 : 512 + 64] = b"\x00" * 64  # the first member's data starts after its 512-byte header
    (shards / "lup-000006.tar").write_bytes(bytes(sound))
    index = pd.read_parquet(shards / "index.parquet")
    row = index["shard"] == "lup-000006.tar"
    index.loc[row, "sha256"] = hashlib.sha256(sound).hexdigest()
    index.to_parquet(shards / "index.parquet", index=False)

    with pytest.raises(UsageError) as error:
        verify_shards(VerifySettings(), built)
    message = str(error.value)
    assert message.startswith("4 of 9 shards failed verification")
    for name in ("lup-000002.tar", "lup-000005.tar", "lup-000006.tar", "lup-000099.tar"):
        assert name in message
    assert "lup-000000.tar (" not in message and "lup-000001.tar" not in message

    report = json.loads((shards / "verify.json").read_text())
    assert report["shards_bad"] == 4 and report["shards_ok"] == 5
    assert report["bad"]["lup-000002.tar"][0] == "sha256 differs from the index"
    assert report["bad"]["lup-000005.tar"][0].startswith("truncated")
    assert any(p.startswith("tar unreadable") for p in report["bad"]["lup-000005.tar"])
    assert report["bad"]["lup-000006.tar"] == ["1 bad samples"]
    assert report["bad"]["lup-000099.tar"] == ["not in index.parquet"]
    # without decoding, the broken JPEG in a sound tar goes unseen
    with pytest.raises(UsageError) as error:
        verify_shards(VerifySettings(decode=False, workers=1), built)
    assert "lup-000006.tar" not in str(error.value)


def test_verify_command_exits_2_with_one_line(built, capsys):
    (built / "shards" / "lup-000003.tar").unlink()
    assert pipeline.main(["verify-shards", "--root", str(built)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == (
        "pipeline.py verify-shards: error: 1 of 8 shards failed verification: lup-000003.tar (missing)"
    )

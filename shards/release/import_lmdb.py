"""``build-shards --from-lmdb PATH``: import the official LUPerson LMDB release.

The release (``LUP/convert_lmdb.py`` of the authors' repository) maps keys
``{country:02d}_{city:02d}_{vid:04d}_{img:08d}`` (read by :func:`shards.release.lmdb_keys.parse_key`)
to raw JPEG bytes and lists the keys in a pickle, ``keys.pkl``: a list of keys, or (LUPerson-NL) a
dict with ``keys`` and ``pids``. PATH is the LMDB folder (with ``data.mdb``) or its parent holding
``lmdb/`` and ``keys.pkl``. Without ``keys.pkl`` the keys are read from the database itself. The
JPEG bytes are stored byte-for-byte; the sample key is the LMDB key. The plan is sorted and kept on
disk (``shards.write.spill``, ``shards.write.task_file``): only keys.pkl's list is ever held whole.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import operator
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from common.errors import UsageError, one_line, require_path
from common.manifests.samples import safe_key
from shards.release import safe_pickle
from shards.release.lmdb_keys import parse_key
from shards.write.faces import Encoding
from shards.write.items import Result, Task, failed, image_sample
from shards.write.spill import SortedSpill, pair_schema
from shards.write.task_file import TaskFile, payload_json, plan_space

log = logging.getLogger(__name__)
CHUNK = 256


def locate(path: str) -> tuple[Path, Path | None]:
    """The LMDB folder and its ``keys.pkl`` (``None`` when absent)."""
    p = require_path(path, "--from-lmdb")
    if p.is_file() and p.name == "data.mdb":
        p = p.parent
    if (p / "data.mdb").is_file():
        env = p
    elif (p / "lmdb" / "data.mdb").is_file():
        env = p / "lmdb"
    else:
        raise UsageError(f"--from-lmdb: no data.mdb in {p} or {p / 'lmdb'}")
    for candidate in (env / "keys.pkl", env.parent / "keys.pkl"):
        if candidate.is_file():
            return env, candidate
    return env, None


def read_keys_pkl(path: Path) -> list[str]:
    """Keys listed in keys.pkl (a list, or a dict with ``keys``)."""
    try:
        data = safe_pickle.load(path)
    except (OSError, *safe_pickle.LOAD_ERRORS) as e:
        raise UsageError(
            f"--from-lmdb: {path} is not a LUPerson keys.pkl ({one_line(str(e), 200)})"
        ) from None
    if isinstance(data, dict):
        data = data.get("keys")
    if hasattr(data, "tolist"):
        data = data.tolist()
    if not isinstance(data, list | tuple) or not all(isinstance(k, str | bytes) for k in data):
        raise UsageError(f"--from-lmdb: {path} must hold a list of keys or a dict with 'keys'")
    return [text_key(k, path) for k in data]


def text_key(key: str | bytes, where: Path) -> str:
    """A key as text; ``UsageError`` naming ``where`` for bytes that are not UTF-8."""
    if isinstance(key, str):
        return key
    try:
        return key.decode()
    except UnicodeDecodeError:
        raise UsageError(
            f"--from-lmdb: {where} holds the key {key[:60]!r}, which is not UTF-8 text"
        ) from None


def open_env(env_dir: str) -> Any:
    """The database, read-only. LMDB maps the file: every page read stays mapped, and counted in
    the process's memory, until the environment closes; so each task opens and closes its own
    (a worker holding one for the whole import grew by the bytes it read: 3.6 GB at 418k crops)."""
    import lmdb

    return lmdb.open(env_dir, readonly=True, lock=False, readahead=False, meminit=False)


def open_checked(env_dir: Path) -> Any:
    """The database (:func:`open_env`; the caller closes it); ``UsageError`` naming ``data.mdb``
    when it is not an LMDB database or is cut short (LMDB maps the file: reading a page past its
    end would kill the process with SIGBUS)."""
    import lmdb

    data, name = env_dir / "data.mdb", str(env_dir.resolve())
    try:
        env = open_env(name)
    except lmdb.Error as e:
        raise UsageError(f"--from-lmdb: {data} is not a readable LMDB database ({e})") from None
    pages, psize, size = env.info()["last_pgno"] + 1, env.stat()["psize"], data.stat().st_size
    if pages * psize > size:
        env.close()
        raise UsageError(
            f"--from-lmdb: {data} is cut short: it records {pages:,} pages of {psize} bytes, "
            f"the file holds {size:,} bytes"
        )
    return env


def database_keys(env: Any, data: Path) -> Iterator[str]:
    """Every key of the database (used when keys.pkl is missing), read as they are used."""
    import lmdb

    try:
        with env.begin() as txn:
            for key in txn.cursor().iternext(values=False):
                yield text_key(bytes(key), data)
    except lmdb.Error as e:
        raise UsageError(f"--from-lmdb: {data} cannot be read ({e})") from None


def key_fields(key: str) -> dict[str, Any]:
    """Country, city, video and image numbers of a LUPerson key (empty for other keys)."""
    fields = parse_key(key)
    return fields._asdict() if fields else {}


def sample_keys(rows: Iterable[tuple[str, str]]) -> Iterator[tuple[str, str]]:
    """``(sample key, payload)`` of each LMDB key, from ``(sample key, LMDB key)`` rows in sorted
    order: a key listed twice is one item; two keys that give one sample key are a ``UsageError``."""
    for sample_key, group in itertools.groupby(rows, key=operator.itemgetter(0)):
        keys = sorted({k for _, k in group})
        if len(keys) > 1:
            raise UsageError(f"--from-lmdb: keys {keys[0]!r} and {keys[1]!r} give one sample key")
        yield sample_key, payload_json({"lmdb_key": keys[0]})


def plan(path: str, spill: Path | None = None) -> tuple[TaskFile, dict[str, Any]]:
    """Tasks of up to ``CHUNK`` keys in sorted key order (kept on disk in ``spill``, a temporary
    folder when ``None``), and counts for the summary."""
    env_dir, keys_file = locate(path)
    where, keep = plan_space(spill)
    listed = SortedSpill(where / "lmdb", pair_schema())
    with contextlib.closing(open_checked(env_dir)) as env:
        if keys_file is None:
            log.warning("no keys.pkl next to %s: reading the keys from the database", env_dir)
        keys = database_keys(env, env_dir / "data.mdb") if keys_file is None else read_keys_pkl(keys_file)
        for k in keys:
            listed.add((safe_key(k), k))
        del keys  # keys.pkl's list: the spill holds them now
    context = {"env": str(env_dir.resolve())}
    unique = sample_keys(listed.merged())
    tasks = TaskFile.write(where / "lmdb.plan", "lmdb", context, unique, CHUNK, keep)
    listed.remove()  # the plan holds it all
    counts = {
        "keys_listed": len(listed),
        "duplicate_keys": len(listed) - tasks.items,
        "keys_from": "keys.pkl" if keys_file else "database",
    }
    return tasks, counts


def run(task: Task, encoding: Encoding) -> list[Result]:
    """Fetch, check and wrap the JPEG bytes of each key of the task."""
    import lmdb

    results = []
    with contextlib.closing(open_env(task.context["env"])) as env, env.begin() as txn:
        for item in task.items:
            key = item.payload["lmdb_key"]
            fields = key_fields(key)
            values: dict[str, Any] = {"source": "lmdb", "source_id": key}
            if fields:  # the key's own digits: "01_02_0003_00000004" -> city "01_02", video "01_02_0003"
                values["city"] = key.rsplit("_", 2)[0]
                values["video_id"] = key.rsplit("_", 1)[0]
            try:
                data = txn.get(key.encode())
            except lmdb.Error as e:  # a key longer than LMDB allows, a damaged page
                results.append(failed(item.key, "unreadable", f"LMDB cannot read it ({e})", **values))
                continue
            if data is None:
                results.append(
                    failed(item.key, "missing", "key listed in keys.pkl but not in the LMDB", **values)
                )
                continue
            meta = {"source": "lmdb", "lmdb_key": key, **fields}
            results.append(image_sample(item.key, bytes(data), encoding, meta, **values))
    return results

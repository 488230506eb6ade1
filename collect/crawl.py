"""``python pipeline.py crawl``: cities, URLs or the official list -> ``videos.parquet`` + ``videos/``.

    python pipeline.py crawl --cities top100.txt                 # search YouTube, then download (§3.1)
    python pipeline.py crawl --cities top100.txt --search-only   # only the candidate manifest
    python pipeline.py crawl --urls my_urls.txt                  # URLs or local paths, no search
    python pipeline.py crawl --from-vnames vnames.txt            # exactly the released LUPerson videos

Resumable: the manifest is rewritten atomically as videos finish (at most every ``SAVE_EVERY_S``,
or ``SAVE_SHARE`` of the time when a rewrite takes longer),
files appear only complete (their title saved before, in ``video_info/``), and a rerun skips every
video that is done (status ``ok`` and its file present) or failed for good (private, unavailable,
not_found, too_large), retrying only the rest.

Downloads run on ``workers`` threads, or as Ray tasks with ``--engine ray`` (``process_task``),
both through ``common.engine.run_tasks``; either way each video's result updates its own manifest row.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import closing
from pathlib import Path
from typing import Any

from collect.cities import load_cities, load_urls
from collect.download import Cancelled, Fetched, copy_local, download
from collect.failures import OK, PENDING, RETRY_ON_RERUN
from collect.ids import is_remote, url_key, video_id_for
from collect.probe import ProbeError, probe_video
from collect.search import search_candidates
from collect.settings import CrawlSettings
from collect.video_info import licence_refusal
from collect.vnames import VNameList, load_vnames, report, video_url
from common.engine import run_tasks
from common.errors import UsageError, require_path
from common.manifests import videos as manifest

SAVE_EVERY_S = 5.0  # seconds between manifest rewrites while downloading, at least
SAVE_SHARE = 0.05  # ... and at most this share of the run spent rewriting (manifest.Saver)
log = logging.getLogger(__name__)


def url_candidates(
    items: list[str], rows: list[dict[str, Any]]
) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """New pending rows for the URLs/paths not yet in the manifest.

    A URL already listed (compared by ``url_key``: case-sensitive but for scheme and host) is
    skipped; two different URLs whose ids collide get the second one's id suffixed with a URL hash.
    """
    by_url = {url_key(r["url"]) for r in rows}
    ids = {r["video_id"] for r in rows}
    new = []
    for item in items:
        if url_key(item) in by_url:
            continue
        vid = video_id_for(item)
        if vid in ids:
            vid = f"{vid}-{hashlib.sha1(item.encode()).hexdigest()[:8]}"
        ids.add(vid)
        by_url.add(url_key(item))
        new.append(manifest.new_row(vid, item))
    return new, {"listed": len(items), "new_candidates": len(new)}


def vname_candidates(
    listing: VNameList, rows: list[dict[str, Any]], template: str, root: Path
) -> list[dict[str, Any]]:
    """New pending rows for the listed videos not yet in the manifest, keyed by YouTube id.

    A listed id already in the manifest (a rerun, or found earlier by a search) gets the list's
    country, city and line; if it still needs work, it is fetched from the list's URL.
    """
    by_id = {r["video_id"]: r for r in rows}
    new = []
    for entry in listing.entries:
        url = video_url(template, entry)
        row = by_id.get(entry.video_id)
        if row is None:
            fields = {"country": entry.country, "city": entry.city, "vname": entry.vname}
            new.append(manifest.new_row(entry.video_id, url, **fields))
            continue
        row.update(country=entry.country, city=entry.city, vname=entry.vname)
        if row["url"] != url and needs_work(row, root):
            row["url"] = url
    return new


def needs_work(row: dict[str, Any], root: Path) -> bool:
    """Pending and transient failures are (re)tried; ``ok`` rows only when their file is gone."""
    if row["status"] == OK:
        return not row.get("path") or not (root / row["path"]).is_file()
    return row["status"] in RETRY_ON_RERUN


def relative(path: Path, root: Path) -> str:
    """``path`` relative to ``root`` when inside it, else absolute (DESIGN.md)."""
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def process(cfg: CrawlSettings, row: dict[str, Any], root: Path, stop: threading.Event) -> tuple[dict, bool]:
    """Fetch and probe one video; returns the manifest fields to update and whether bytes moved."""
    videos = root / "videos"
    vid, url = row["video_id"], row["url"]
    try:
        if is_remote(url):
            got = download(cfg, vid, url, videos, stop)
        else:
            got = copy_local(cfg, vid, url, videos)
    except Cancelled:
        raise
    except Exception as e:  # an unexpected failure is this video's, recorded with its reason
        log.exception("%s: unexpected failure", vid)
        got = Fetched("error", f"{type(e).__name__}: {e}")
    update: dict[str, Any] = {"status": got.status, "reason": got.reason}
    for key in ("title", "channel", "license", "upload_date"):
        if not row.get(key) and got.info.get(key):
            update[key] = got.info[key]
    refused = licence_refusal(cfg.license, {**row, **update}) if got.status == OK else None
    if refused:  # a file fetched before --license, or a local copy: kept on disk, not in the build
        got = Fetched("not_licensed", refused)
        update.update(status=got.status, reason=refused)
    if got.status != OK or got.path is None:
        update.update(dict.fromkeys(manifest.PROBED), path=None)
        return update, got.transferred
    update["path"] = relative(got.path, root)
    try:
        update.update(probe_video(got.path, cfg.count_frames))
    except (ProbeError, OSError) as e:
        update.update(dict.fromkeys(manifest.PROBED))
        update["reason"] = f"probe failed: {e}"
    return update, got.transferred


def process_task(task: tuple[CrawlSettings, dict[str, Any], str]) -> tuple[dict, bool]:
    """``process`` as a Ray task: (settings, row, absolute root) -> (update, transferred).

    A task stopped by Ctrl-C is cancelled by Ray; its ``.part`` file stays for the rerun.
    """
    cfg, row, root = task
    return process(cfg, row, Path(root), threading.Event())


def fetched_threads(
    cfg: CrawlSettings, rows: list[dict[str, Any]], todo: list[int], root: Path
) -> Iterator[tuple[int, tuple[dict, bool]]]:
    """``(row index, process(...))`` as downloads finish, ``workers`` threads on this machine.

    An error, Ctrl-C or closing this iterator sets ``stop``: running downloads stop at their next
    progress tick (their ``.part`` files stay) and the engine waits for them.
    """
    stop = threading.Event()

    def fetch(row: dict[str, Any]) -> tuple[dict, bool]:
        return process(cfg, row, root, stop)

    done = run_tasks(
        fetch,
        [dict(rows[i]) for i in todo],
        engine="threads",
        workers=cfg.workers,
        desc="crawl",
        stop=stop,
        progress=False,  # fetch_all shows its own bar
    )
    with closing(done):
        for k, result in done:
            yield todo[k], result


def fetched_ray(
    cfg: CrawlSettings, rows: list[dict[str, Any]], todo: list[int], root: Path
) -> Iterator[tuple[int, tuple[dict, bool]]]:
    """``(row index, process(...))`` as downloads finish, one Ray task per video."""
    tasks = [(cfg, dict(rows[i]), str(root.resolve())) for i in todo]
    done = run_tasks(
        process_task, tasks, engine="ray", workers=cfg.workers, address=cfg.address, desc="download"
    )
    for k, result in done:
        yield todo[k], result


def fetch_all(
    cfg: CrawlSettings, rows: list[dict[str, Any]], todo: list[int], root: Path
) -> tuple[Counter, int]:
    """Run ``process`` on ``rows[todo]`` (threads, or Ray tasks); save the manifest as they finish.

    Each result lands in its own row, so the manifest does not depend on the order videos finish
    in. Returns the statuses of this run and how many videos moved bytes (downloaded or copied).
    """
    from tqdm import tqdm

    (root / "videos").mkdir(parents=True, exist_ok=True)
    run: Counter = Counter()
    fetched = 0
    results = (fetched_ray if cfg.engine == "ray" else fetched_threads)(cfg, rows, todo, root)
    # Ray shows its own task bar
    bar = tqdm(total=len(todo), desc="download", unit="video", disable=True if cfg.engine == "ray" else None)
    saver = manifest.Saver(root, rows, SAVE_EVERY_S, SAVE_SHARE)
    try:
        with closing(results), bar:  # closing: an interrupted loop stops the running downloads now
            for i, (update, transferred) in results:
                rows[i].update(update)
                # A video finished after the last save stays "pending" on disk; a rerun finds its
                # final file and only probes it again (download() never refetches a finished file),
                # its title read back from video_info/.
                saver.maybe()
                run[update["status"]] += 1
                fetched += int(transferred)
                if update["status"] != OK:
                    log.info("%s: %s (%s)", rows[i]["video_id"], update["status"], update["reason"])
                bar.update(1)
                bar.set_postfix(ok=run[OK], failed=sum(run.values()) - run[OK])
    finally:  # Ctrl-C too: what finished is on disk
        manifest.save(root, rows)
    return run, fetched


def summarize(
    rows: list[dict[str, Any]], run: Counter, fetched: int, todo: int, extra: dict
) -> dict[str, Any]:
    """Figures of the whole manifest (each failure status counted) and of this run."""
    statuses = Counter(r["status"] for r in rows)
    failed = {s: n for s, n in sorted(statuses.items()) if s not in (OK, PENDING)}
    return {
        **extra,
        "videos": len(rows),
        "ok": statuses.get(OK, 0),
        "pending": statuses.get(PENDING, 0),
        "failed": failed or 0,
        "bytes_ok": int(sum(r["bytes"] or 0 for r in rows if r["status"] == OK)),
        "this_run": {"attempted": todo, "fetched": fetched, "ok": run.get(OK, 0)},
    }


def crawl(cfg: CrawlSettings, root: Path) -> dict[str, Any]:
    """Search (``--cities``) or list (``--urls``, ``--from-vnames``) candidates, then download and probe.

    With ``--from-vnames`` only the listed videos are fetched, and the summary's ``vnames``
    figures (also in ``vnames_report.json``) say what was listed, downloaded and unavailable.
    """
    if sum(bool(s) for s in (cfg.cities, cfg.urls, cfg.from_vnames)) != 1:
        raise UsageError(
            "give exactly one of --cities FILE (search YouTube), --urls FILE (URLs or local paths) "
            "or --from-vnames FILE (the official LUPerson list)"
        )
    if cfg.cookies:
        require_path(cfg.cookies, "cookies", is_dir=False)
    start = time.perf_counter()
    root.mkdir(parents=True, exist_ok=True)
    rows = manifest.load(root)
    listing: VNameList | None = None
    if cfg.from_vnames:
        listing = load_vnames(cfg.from_vnames)
        new = vname_candidates(listing, rows, cfg.vnames_url_template, root)
        extra: dict[str, Any] = {}
    elif cfg.cities:
        cities = load_cities(cfg.cities)
        listed = {r["video_id"]: r["city"] for r in rows}
        new, found = search_candidates(cfg, cities, root, listed)
        extra = {"cities": len(cities), "search": found}
    else:
        new, found = url_candidates(load_urls(cfg.urls), rows)
        extra = {"urls": found}
    rows.extend(new)
    manifest.save(root, rows)
    wanted = None if listing is None else {e.video_id for e in listing.entries}
    todo = [
        i
        for i, r in enumerate(rows)
        if not cfg.search_only and needs_work(r, root) and (wanted is None or r["video_id"] in wanted)
    ]
    run, fetched = fetch_all(cfg, rows, todo, root) if todo else (Counter(), 0)
    if listing is not None:
        extra["vnames"] = report(listing, rows, root)
    summary = summarize(rows, run, fetched, len(todo), extra)
    summary["seconds"] = round(time.perf_counter() - start, 1)
    return summary

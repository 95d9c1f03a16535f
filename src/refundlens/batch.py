"""Batch analysis of JSON-lines inputs, locally (a process pool) or on Ray.

Input: one JSON object a line, ``{"id": str, "photo": path, "references": [path, ...],
"context": {...}}`` (``references`` and ``context`` optional; relative paths are relative
to the input file's folder; blank lines are ignored). Output: exactly one JSON line per
input line, in input order, each carrying the input ``id`` and ``line`` number — a line
that cannot be analysed (bad JSON, a missing photo, a photo we cannot decode) gets an
``"status": "error"`` line saying why, and the batch goes on.

Resume: when the output file exists, lines whose id is already there are skipped and the
rest are appended; a half-written last line (a killed run) is cut off first.

The analysis is :func:`refundlens.analyze`, the same on both engines. ``engine="ray"``
imports Ray only when used; ``ray_address`` joins a cluster, otherwise a local Ray starts
with ``workers`` CPUs.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import sys
from collections import deque
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

from .analysis import analyze
from .config import Settings, load_settings
from .detectors import DetectorContext, Reference, create_detectors
from .errors import BatchInputError, ConfigError, PhotoError, RefundLensError
from .imaging import load_photo
from .records import analysis_record, error_record, write_mask

__all__ = ["BatchItem", "BatchSummary", "ENGINES", "read_items", "run_batch"]

log = logging.getLogger(__name__)

ENGINES = ("local", "ray")


@dataclass(frozen=True)
class BatchItem:
    """One parsed input line, or the error that stopped it parsing (``problem``)."""

    line: int
    id: str | None
    photo: str | None = None
    references: tuple[str, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)
    problem: str | None = None


@dataclass
class BatchSummary:
    total: int = 0
    ok: int = 0
    errors: int = 0
    skipped: int = 0
    levels: dict[str, int] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {"total": self.total, "ok": self.ok, "errors": self.errors,
                "skipped": self.skipped, "levels": dict(self.levels)}


def read_items(path: Path) -> Iterator[BatchItem]:
    """Parse ``path`` line by line; a malformed line yields an item with ``problem`` set."""
    base = path.parent
    seen: dict[str, int] = {}
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        for number, raw in enumerate(handle, start=1):
            if not raw.strip():
                continue
            item = _parse_line(raw, number, base)
            if item.id is not None and item.problem is None:
                if item.id in seen:
                    item = BatchItem(number, item.id, problem=(
                        f"line {number}: duplicate id {item.id!r} (first on line "
                        f"{seen[item.id]}); ids must be unique"))
                else:
                    seen[item.id] = number
            yield item


def _parse_line(raw: str, number: int, base: Path) -> BatchItem:
    accepted = ('expected {"id": str, "photo": path, "references": [path, ...], '
                '"context": {...}}')
    try:
        value = json.loads(raw)
    except json.JSONDecodeError as exc:
        return BatchItem(number, None, problem=f"line {number}: not valid JSON ({exc.msg} at "
                                               f"column {exc.colno}); {accepted}")
    if not isinstance(value, dict):
        return BatchItem(number, None, problem=f"line {number}: a JSON {type(value).__name__}, "
                                               f"not an object; {accepted}")
    item_id = value.get("id")
    if isinstance(item_id, (int, float)) and not isinstance(item_id, bool):
        item_id = str(item_id)
    if not isinstance(item_id, str) or not item_id:
        return BatchItem(number, None, problem=f"line {number}: missing or empty \"id\"; "
                                               f"{accepted}")
    photo = value.get("photo")
    if not isinstance(photo, str) or not photo:
        return BatchItem(number, item_id, problem=f"item {item_id!r} (line {number}): missing "
                                                  f"\"photo\" path; {accepted}")
    refs = value.get("references", [])
    if refs is None:
        refs = []
    if not isinstance(refs, list) or not all(isinstance(r, str) and r for r in refs):
        return BatchItem(number, item_id, problem=f"item {item_id!r} (line {number}): "
                                                  f"\"references\" must be a list of paths")
    context = value.get("context") or {}
    if not isinstance(context, dict):
        return BatchItem(number, item_id, problem=f"item {item_id!r} (line {number}): "
                                                  f"\"context\" must be an object")
    unknown = sorted(set(value) - {"id", "photo", "references", "context"})
    if unknown:
        return BatchItem(number, item_id, problem=(
            f"item {item_id!r} (line {number}): unknown field(s) {', '.join(unknown)}; "
            f"{accepted}"))

    def resolve(p: str) -> str:
        return str(Path(p) if Path(p).is_absolute() else base / p)

    return BatchItem(number, item_id, resolve(photo), tuple(resolve(r) for r in refs),
                     context)


class _Analyzer:
    """Per-process state: detectors built once, the reuse index opened once."""

    def __init__(self, settings: Settings, masks_dir: str | None, index_dir: str | None):
        self.settings = settings
        self.masks_dir = Path(masks_dir) if masks_dir else None
        self.detectors = create_detectors(settings=settings)
        self.index = _open_index(index_dir) if index_dir else None

    def __call__(self, item: BatchItem) -> dict[str, Any]:
        head = {"id": item.id, "line": item.line}
        if item.problem:
            return {**head, **error_record(BatchInputError(item.problem))}
        try:
            photo = load_photo(item.photo, max_bytes=self.settings.max_bytes,
                               max_pixels=self.settings.max_pixels)
            references = []
            for path in item.references:
                try:
                    ref = load_photo(path, max_bytes=self.settings.max_bytes,
                                     max_pixels=self.settings.max_pixels)
                except PhotoError as exc:
                    raise PhotoError(f"reference of item {item.id!r}: {exc}",
                                     source=path) from exc
                references.append(Reference(ref, kind="listing", id=Path(path).name))
            context = DetectorContext.from_mapping(item.context, references=tuple(references),
                                                   reuse_index=self.index,
                                                   photo_key=item.id)
        except (RefundLensError, OSError) as exc:
            return {**head, **error_record(exc)}
        analysis = analyze(photo, detectors=self.detectors, context=context)
        mask = write_mask(analysis, self.masks_dir, item.id) if self.masks_dir else None
        record = {**head, **analysis_record(analysis, mask=mask)}
        record["_hashes"] = _reuse_hashes(analysis)
        return record


def _open_index(index_dir: str) -> Any:
    from .index import ReuseIndex

    return ReuseIndex.open(index_dir)


def _reuse_hashes(analysis: Any) -> Any:
    result = analysis.result("reuse")
    return dict(result.info).get("hashes") if result is not None else None


_WORKER: _Analyzer | None = None


def _init_worker(settings: Settings, masks_dir: str | None, index_dir: str | None) -> None:
    global _WORKER
    logging.getLogger("refundlens").setLevel(logging.ERROR)
    _one_thread()
    _WORKER = _Analyzer(settings, masks_dir, index_dir)


def _work(item: BatchItem) -> dict[str, Any]:
    assert _WORKER is not None, "worker not initialised"
    return _WORKER(item)


def _done(output: Path) -> tuple[set[str], set[tuple[int, str | None]]]:
    """Ids and (line, id) pairs already in ``output``; cuts a half-written last line left
    by a killed run."""
    if not output.exists():
        return set(), set()
    done: set[str] = set()
    pairs: set[tuple[int, str | None]] = set()
    with output.open("rb+") as handle:
        data = handle.read()
        if data and not data.endswith(b"\n"):
            cut = data.rfind(b"\n") + 1
            handle.truncate(cut)
            data = data[:cut]
    for raw in data.splitlines():
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            continue
        if not isinstance(value, dict):
            continue
        if isinstance(value.get("id"), str) and value.get("error_code") != "batch_input_error":
            done.add(value["id"])
        if isinstance(value.get("line"), int):
            pairs.add((value["line"], value.get("id")))
    return done, pairs


def run_batch(
    input_path: str | os.PathLike[str],
    output_path: str | os.PathLike[str],
    *,
    masks_dir: str | os.PathLike[str] | None = None,
    workers: int = 1,
    engine: str = "local",
    ray_address: str | None = None,
    settings: Settings | None = None,
    index_dir: str | os.PathLike[str] | None = None,
    progress: bool = True,
    on_record: Callable[[dict[str, Any]], None] | None = None,
) -> BatchSummary:
    """Analyse every line of ``input_path`` into ``output_path`` (see the module docstring).

    Args:
        masks_dir: write one mask PNG per analysed photo here.
        workers: processes (local) or CPUs (local Ray).
        engine: "local" or "ray".
        ray_address: a Ray cluster address for ``engine="ray"``.
        index_dir: the reuse index to check against and add to (None: no reuse check).
        progress: a progress bar on stderr.
        on_record: called with each output record as it is written.

    Raises:
        ConfigError: an option is not accepted (the input file is missing, bad engine).
    """
    input_path, output_path = Path(input_path), Path(output_path)
    if engine not in ENGINES:
        raise ConfigError(f"engine {engine!r}: expected one of {', '.join(ENGINES)}")
    if workers < 1:
        raise ConfigError(f"workers={workers}: expected 1 or more")
    if not input_path.is_file():
        raise ConfigError(f"batch input {str(input_path)!r}: no such file; expected a JSON "
                          f"lines file")
    settings = settings or load_settings()
    done, pairs = _done(output_path)
    items = list(read_items(input_path))
    summary = BatchSummary(total=len(items))
    # an id already answered is skipped (the input may have gained lines since); lines that
    # had no usable id (bad JSON, a duplicate id) are matched by line number
    todo = [item for item in items if (item.line, item.id) not in pairs and
            (item.problem is not None or item.id not in done)]
    summary.skipped = len(items) - len(todo)
    output_path.parent.mkdir(parents=True, exist_ok=True)
    masks = str(masks_dir) if masks_dir else None
    index_path = str(index_dir) if index_dir else None
    index = _open_index(index_path) if index_path else None

    bar = _progress(len(items), summary.skipped, enabled=progress)
    try:
        with output_path.open("a", encoding="utf-8") as out:
            if engine == "ray":
                records = _run_ray(todo, settings, masks, index_path, workers, ray_address)
            elif workers == 1:
                analyzer = _Analyzer(settings, masks, index_path)
                records = (analyzer(item) for item in todo)
            else:
                records = _run_pool(todo, settings, masks, index_path, workers)
            for record in records:
                hashes = record.pop("_hashes", None)
                if index is not None and hashes and record["status"] == "ok":
                    index.add(record["id"], hashes, meta={"line": record["line"]})
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
                out.flush()
                if record["status"] == "ok":
                    summary.ok += 1
                    level = record["risk"]["level"]
                    summary.levels[level] = summary.levels.get(level, 0) + 1
                else:
                    summary.errors += 1
                if on_record is not None:
                    on_record(record)
                bar.update(1)
    finally:
        bar.close()
        if index is not None:
            index.close()
    return summary


def _progress(total: int, initial: int, *, enabled: bool) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, unit="photo", file=sys.stderr,
                disable=not enabled, dynamic_ncols=True)


def _run_pool(items: list[BatchItem], settings: Settings, masks: str | None,
              index_path: str | None, workers: int) -> Iterator[dict[str, Any]]:
    """Results in input order, with at most ``4 × workers`` items in flight."""
    # spawn, not fork: the parent may already run OpenCV / ONNX Runtime thread pools, and a
    # forked child inherits their locks held (it deadlocks at the first parallel call)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker,
                             initargs=(settings, masks, index_path),
                             mp_context=context) as pool:
        pending: deque[tuple[BatchItem, Future[dict[str, Any]]]] = deque()
        queue = iter(items)
        for item in queue:
            pending.append((item, pool.submit(_work, item)))
            if len(pending) >= 4 * workers:
                yield _collect(*pending.popleft())
        while pending:
            yield _collect(*pending.popleft())


def _collect(item: BatchItem, future: Future[dict[str, Any]]) -> dict[str, Any]:
    try:
        return future.result()
    except Exception as exc:  # noqa: BLE001 - a dead worker must not lose the line
        log.error("item %r failed in its worker: %s", item.id, exc)
        return {"id": item.id, "line": item.line,
                **error_record(f"item {item.id!r}: worker failed: {type(exc).__name__}: {exc}",
                               code="worker_failed")}


def _run_ray(items: list[BatchItem], settings: Settings, masks: str | None,
             index_path: str | None, workers: int,
             address: str | None) -> Iterator[dict[str, Any]]:
    try:
        import ray
        from ray.util import ActorPool
    except ImportError as exc:
        raise ConfigError("engine 'ray' needs the ray package: pip install 'refundlens[ray]'") \
            from exc
    started = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
        started = True
    try:
        actor = ray.remote(num_cpus=1)(_RayWorker)
        actors = [actor.remote(settings, masks, index_path) for _ in range(workers)]
        pool = ActorPool(actors)
        window = 4 * workers
        queue = iter(items)
        in_flight: deque[BatchItem] = deque()
        for item in queue:
            pool.submit(lambda a, it: a.run.remote(it), item)
            in_flight.append(item)
            if len(in_flight) >= window:
                yield _ray_next(pool, in_flight.popleft())
        while in_flight:
            yield _ray_next(pool, in_flight.popleft())
    finally:
        if started:
            ray.shutdown()


def _ray_next(pool: Any, item: BatchItem) -> dict[str, Any]:
    try:
        return pool.get_next()
    except Exception as exc:  # noqa: BLE001 - a failed task must not lose the line
        return {"id": item.id, "line": item.line,
                **error_record(f"item {item.id!r}: Ray task failed: {type(exc).__name__}: "
                               f"{exc}", code="worker_failed")}


def _one_thread() -> None:
    """One worker, one core: OpenCV's own thread pool would oversubscribe the machine."""
    import cv2

    cv2.setNumThreads(1)


class _RayWorker:
    """A Ray actor holding one :class:`_Analyzer` (detectors and OCR session built once)."""

    def __init__(self, settings: Settings, masks: str | None, index_path: str | None):
        _one_thread()
        self.analyzer = _Analyzer(settings, masks, index_path)

    def run(self, item: BatchItem) -> dict[str, Any]:
        return self.analyzer(item)

"""Scan a handful of photos against shared references: the library side of ``refundlens scan``.

Every photo named gets exactly one entry, in order: its analysis, or the error that stopped
it. A reference that cannot be loaded is an error of the whole scan (a check against a
silently missing reference would be a false "not derived").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .analysis import analyze
from .config import Settings, load_settings
from .detectors import DetectorContext, Reference, create_detectors
from .errors import PhotoError
from .imaging import load_photo
from .models import Analysis, Photo
from .records import analysis_record, error_record, write_mask

__all__ = ["ScanEntry", "ScanReport", "scan_photos"]


@dataclass
class ScanEntry:
    source: str
    photo: Photo | None = None
    analysis: Analysis | None = None
    error: PhotoError | None = None
    mask: str | None = None

    def record(self, *, full: bool = True) -> dict[str, Any]:
        if self.analysis is not None:
            return {"photo": self.source, **analysis_record(self.analysis, mask=self.mask,
                                                            full=full)}
        assert self.error is not None
        return {"photo": self.source, **error_record(self.error)}


@dataclass
class ScanReport:
    entries: list[ScanEntry]
    references: tuple[Reference, ...] = ()
    context: dict[str, Any] = field(default_factory=dict)

    @property
    def errors(self) -> int:
        return sum(1 for e in self.entries if e.error is not None)

    def to_json(self) -> dict[str, Any]:
        return {
            "refundlens": __version__,
            "references": [{"id": r.label, "kind": r.kind, "sha256": r.photo.sha256}
                           for r in self.references],
            "context": self.context,
            "results": [e.record() for e in self.entries],
        }


def _load_references(paths: Sequence[str], kind: str, settings: Settings) -> list[Reference]:
    out = []
    for path in paths:
        try:
            photo = load_photo(path, max_bytes=settings.max_bytes, max_pixels=settings.max_pixels)
        except PhotoError as exc:
            raise PhotoError(f"reference {exc}", source=str(path)) from exc
        out.append(Reference(photo, kind=kind, id=Path(path).name))
    return out


def scan_photos(
    photos: Sequence[str],
    *,
    references: Sequence[str] = (),
    shipping: Sequence[str] = (),
    settings: Settings | None = None,
    context: dict[str, Any] | None = None,
    index_dir: Path | None = None,
    masks_dir: Path | None = None,
    detectors: Sequence[Any] | None = None,
) -> ScanReport:
    """Analyse ``photos`` against the references; photos are added to the reuse index
    at ``index_dir`` (keyed by absolute path) after they are checked against it."""
    settings = settings or load_settings()
    refs = tuple(_load_references(references, "listing", settings)
                 + _load_references(shipping, "shipping", settings))
    if detectors is None:
        detectors = create_detectors(settings=settings)
    index = None
    if index_dir is not None:
        from .index import ReuseIndex, photo_hashes

        index = ReuseIndex.open(index_dir)
    entries: list[ScanEntry] = []
    try:
        for source in photos:
            entry = ScanEntry(str(source))
            entries.append(entry)
            try:
                photo = load_photo(source, max_bytes=settings.max_bytes,
                                   max_pixels=settings.max_pixels)
            except PhotoError as exc:
                entry.error = exc
                continue
            key = "scan:" + str(Path(source).resolve())
            ctx = DetectorContext.from_mapping(context, references=refs, reuse_index=index,
                                               photo_key=key)
            entry.photo = photo
            entry.analysis = analyze(photo, detectors=detectors, context=ctx)
            if masks_dir is not None:
                entry.mask = write_mask(entry.analysis, masks_dir, Path(source).stem)
            if index is not None:
                index.add(key, photo_hashes(photo), meta={"photo": str(source)})
    finally:
        if index is not None:
            index.close()
    return ScanReport(entries, refs, dict(context or {}))

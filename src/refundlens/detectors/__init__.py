"""The detector registry: the one list of detectors, in the order they run.

Each entry names a class by import path, so a detector's heavy dependencies (ONNX Runtime,
the C2PA library) load only when it is used. The CLI's ``--detectors`` choices, the docs
table and the contract tests are derived from :data:`REGISTRY`.
"""

from __future__ import annotations

import importlib
from typing import Any, Iterable

from ..errors import ConfigError
from .base import Detector, DetectorContext, DetectorOutput, Reference, Skip

__all__ = ["REGISTRY", "Detector", "DetectorContext", "DetectorOutput", "Reference", "Skip",
           "create_detectors", "detector_class", "detector_names"]

#: name -> "module:Class". Cheap, deterministic detectors first.
REGISTRY: dict[str, str] = {
    "labels": "refundlens.detectors.labels:LabelDetector",
    "c2pa": "refundlens.detectors.c2pa:C2paDetector",
    "metadata": "refundlens.detectors.metadata:MetadataDetector",
    "reference": "refundlens.detectors.reference:ReferenceDetector",
    "reuse": "refundlens.detectors.reuse:ReuseDetector",
    "watermark": "refundlens.detectors.watermark:WatermarkDetector",
    "visible_label": "refundlens.detectors.visible_label:VisibleLabelDetector",
    "forensics": "refundlens.detectors.forensics:ForensicsDetector",
}


def detector_names() -> list[str]:
    return list(REGISTRY)


def detector_class(name: str) -> type[Detector]:
    try:
        target = REGISTRY[name]
    except KeyError:
        raise ConfigError(f"unknown detector {name!r}; known: {', '.join(REGISTRY)}") from None
    module_name, _, class_name = target.partition(":")
    cls = getattr(importlib.import_module(module_name), class_name)
    if cls.name != name:
        raise RuntimeError(f"registry entry {name!r} points at {target} whose name is "
                           f"{cls.name!r}")
    return cls


def create_detectors(names: Iterable[str] | None = None, *, settings: Any = None) -> list[Detector]:
    """Instances of the named detectors (default: all, or ``settings.detectors``)."""
    if settings is None:
        from ..config import load_settings

        settings = load_settings()
    chosen = list(names) if names else list(settings.detectors) or list(REGISTRY)
    if not settings.ocr:
        chosen = [n for n in chosen if n != "visible_label"]
    return [detector_class(name).from_settings(settings) for name in chosen]

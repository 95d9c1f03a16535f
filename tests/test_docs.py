"""The generated reference docs match the code (run `make docs` to refresh them)."""

from __future__ import annotations

from pathlib import Path

import pytest

from refundlens.docs import generate

ROOT = Path(__file__).parents[1]


@pytest.mark.parametrize("path, text", list(generate(ROOT).items()), ids=lambda v: str(v)[-20:])
def test_generated_doc_is_current(path, text):
    assert path.is_file(), f"{path} is missing: run `make docs`"
    assert path.read_text(encoding="utf-8") == text, f"{path} is stale: run `make docs`"


def test_every_reason_code_is_emitted_by_some_detector():
    from refundlens.detectors import REGISTRY, detector_class
    from refundlens.reasons import REASONS

    emitted = {code for name in REGISTRY for code in detector_class(name).codes}
    assert set(REASONS) == emitted, f"codes no detector emits: {set(REASONS) - emitted}"

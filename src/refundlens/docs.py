"""Generate the reference docs from their one source of truth.

``python -m refundlens.docs`` rewrites docs/reasons.md (from the reason table),
docs/settings.md (from the settings list), docs/detectors.md (from the registry),
docs/cli.md (the exit codes and ``--help`` texts) and docs/policy.md (the claims policy's
keys, rules and route reason table). ``tests/test_docs.py`` fails when a
committed file differs from what this module generates.
"""

from __future__ import annotations

import sys
from pathlib import Path

__all__ = ["generate", "render_cli", "render_detectors", "render_policy", "render_reasons",
           "render_settings"]


def render_reasons() -> str:
    from .reasons import REASONS, STRENGTH_WEIGHTS

    lines = ["# Reason codes", "",
             "Generated from `src/refundlens/reasons.py` by `make docs`; do not edit by hand.",
             "Codes are stable: never renamed or reused.", "",
             "| strength | weight of a finding at score 1.0 |", "|---|---|"]
    lines += [f"| {name} | {weight:.2f} |" for name, weight in STRENGTH_WEIGHTS.items()]
    lines += ["", "| code | strength | English | 中文 |", "|---|---|---|---|"]
    for reason in REASONS.values():
        lines.append(f"| `{reason.code}` | {reason.strength} | **{reason.title_en}**: "
                     f"{reason.template_en} | **{reason.title_zh}**：{reason.template_zh} |")
    return "\n".join(lines) + "\n"


def render_settings() -> str:
    from .config import SETTINGS

    lines = ["# Settings", "",
             "Generated from `src/refundlens/config.py` by `make docs`; do not edit by hand.",
             "Every setting has a working default; set it in the environment.", "",
             "| variable | meaning |", "|---|---|"]
    lines += [f"| `{env}` | {text} |" for _, env, _, text in SETTINGS]
    return "\n".join(lines) + "\n"


def render_detectors() -> str:
    from .detectors import REGISTRY, detector_class

    lines = ["# Detectors", "",
             "Generated from the registry in `src/refundlens/detectors/__init__.py` by "
             "`make docs`; do not edit by hand. They run in this order.", "",
             "| name | version | what it checks | reason codes |", "|---|---|---|---|"]
    for name in REGISTRY:
        cls = detector_class(name)
        codes = ", ".join(f"`{c}`" for c in cls.codes)
        lines.append(f"| `{name}` | {cls.version} | {cls.description} | {codes} |")
    return "\n".join(lines) + "\n"


def render_cli() -> str:
    import os

    from .cli import EXIT_CODES, _parser

    saved = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = "100"  # argparse wraps usage to the terminal: make it fixed
    try:
        parser = _parser()
        return _render_cli(parser, EXIT_CODES)
    finally:
        if saved is None:
            os.environ.pop("COLUMNS", None)
        else:
            os.environ["COLUMNS"] = saved


def _render_cli(parser, EXIT_CODES) -> str:
    lines = ["# Command line", "",
             "Generated from `src/refundlens/cli.py` by `make docs`; do not edit by hand.", "",
             "## Exit codes", "", "| code | meaning |", "|---|---|"]
    lines += [f"| {code} | {text} |" for code, text in EXIT_CODES.items()]
    subparsers = next(a for a in parser._actions if a.dest == "command")
    for name, sub in subparsers.choices.items():
        lines += ["", f"## refundlens {name}", "", "```", sub.format_usage().strip(), "```", ""]
        for action in sub._actions:
            if action.help and action.dest != "help":
                flags = ", ".join(action.option_strings) or action.metavar or action.dest
                lines.append(f"- `{flags}`: {action.help}")
    return "\n".join(lines) + "\n"


def render_policy() -> str:
    from dataclasses import fields

    from .claims.policy import (CODE_ALPHABET, CODE_LENGTH, EFFECTS, ROUTE_REASONS,
                                ROUTING_RULES, Policy)

    def show(value: object) -> str:
        if value is None:
            return "null"
        if isinstance(value, tuple):
            return "[" + ", ".join(map(str, value)) + "]"
        return str(value)

    lines = ["# Claims policy", "",
             "Generated from `src/refundlens/claims/policy.py` by `make docs`; do not edit by "
             "hand. The default file, every key commented, is "
             "`src/refundlens/claims/default_policy.yaml`; `load_policy(path)` reads a copy and "
             "stops with every problem named (file, key, what is accepted).", "",
             "## Routes", "",
             "`auto_approved`, `evidence_requested`, `in_review`. None rejects.", ""]
    lines += [f"{i}. {rule}" for i, rule in enumerate(ROUTING_RULES, 1)]
    lines += ["", "## Keys", "", "| key | default | accepted | meaning |", "|---|---|---|---|"]
    for f in fields(Policy):
        lines.append(f"| `{f.name}` | `{show(f.default)}` | {f.metadata['kind'].accepts} | "
                     f"{f.metadata['doc']} |")
    lines += ["", "## Route reason codes", "",
              "Every route carries its reasons, the deciding one first. Codes are stable: "
              "never renamed or reused.", "",
              "| code | effect | English | 中文 |", "|---|---|---|---|"]
    for spec in ROUTE_REASONS.values():
        lines.append(f"| `{spec.code}` | {EFFECTS[spec.effect]} | {spec.template_en} | "
                     f"{spec.template_zh} |")
    lines += ["", "## One-time evidence code", "",
              f"{CODE_LENGTH} characters from `{CODE_ALPHABET}`, which leaves out 0 O Q D, 1 I L, "
              f"2 Z, 5 S, 8 B, G, U V and J, with no character twice in a row, so a handwritten "
              f"code reads back unambiguously. OCR text "
              f"matches ignoring case, width, spaces and punctuation between characters, and "
              f"maps misreadings onto characters outside the alphabet back (q, g → 9; b, G → "
              f"6)."]
    return "\n".join(lines) + "\n"


def _openapi() -> dict:
    from .config import load_settings
    from .web import create_app

    return create_app(load_settings(environ={})).openapi()


def render_openapi() -> str:
    import json

    return json.dumps(_openapi(), ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def render_api() -> str:
    """One line per endpoint, from the OpenAPI schema the service serves at /openapi.json."""
    spec = _openapi()
    lines = ["# REST API", "",
             "Generated from the OpenAPI schema (`docs/openapi.json`; live at `/openapi.json` and "
             "`/docs` on a running `refundlens serve`). Every request but `GET /api/v1/health` "
             "carries `Authorization: Bearer <key>`. Every error is "
             "`{\"error\": {\"code\", \"message\", \"field\"}}` with a stable `code`.", "",
             "| method | path | what |", "|---|---|---|"]
    for path, methods in spec["paths"].items():
        for method, op in methods.items():
            text = (op.get("description") or op.get("summary") or "").strip()
            summary = " ".join(text.split("\n\n")[0].split())
            lines.append(f"| {method.upper()} | `{path}` | {summary} |")
    return "\n".join(lines) + "\n"


def generate(root: Path) -> dict[Path, str]:
    docs = root / "docs"
    return {docs / "reasons.md": render_reasons(), docs / "settings.md": render_settings(),
            docs / "detectors.md": render_detectors(), docs / "cli.md": render_cli(),
            docs / "policy.md": render_policy(), docs / "api.md": render_api(),
            docs / "openapi.json": render_openapi()}


def main() -> int:
    root = Path.cwd()
    for path, text in generate(root).items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The ``refundlens`` command: parses, calls the library, prints.

Exit codes (also in ``refundlens --help`` and docs/cli.md):

    0  every input was analysed
    1  an unexpected internal failure (a bug: please report it)
    2  usage or configuration error (bad option, missing input file, bad setting)
    3  the run finished, but one or more inputs could not be analysed (each has an
       error entry in the output saying why)
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .errors import ConfigError, RefundLensError

__all__ = ["EXIT_CODES", "main"]

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INPUT_ERRORS = 0, 1, 2, 3
EXIT_CODES = {
    EXIT_OK: "every input was analysed",
    EXIT_INTERNAL: "unexpected internal failure",
    EXIT_USAGE: "usage or configuration error",
    EXIT_INPUT_ERRORS: "finished, but one or more inputs could not be analysed",
}

_EPILOG = "exit codes:\n" + "\n".join(f"  {code}  {text}" for code, text in EXIT_CODES.items())


def _parser() -> argparse.ArgumentParser:
    from .detectors import detector_names

    parser = argparse.ArgumentParser(
        prog="refundlens",
        description="Verify the photos behind e-commerce refund claims.",
        epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--version", action="version", version=f"refundlens {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress and detector "
                        "failures to stderr")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    scan = sub.add_parser("scan", help="analyse photos and print the evidence",
                          epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    scan.add_argument("photos", nargs="+", metavar="PHOTO", help="claim photo(s)")
    scan.add_argument("--reference", action="append", default=[], metavar="REF",
                      help="a merchant reference photo (listing photo); repeatable")
    scan.add_argument("--shipping", action="append", default=[], metavar="REF",
                      help="a shipping-evidence photo taken at packing; repeatable")
    scan.add_argument("--json", action="store_true", help="print one JSON document")
    scan.add_argument("--html", metavar="DIR", help="write an HTML evidence report into DIR")
    scan.add_argument("--masks", metavar="DIR", help="write alteration masks (PNG) into DIR")
    scan.add_argument("--lang", choices=("zh", "en"), default="zh",
                      help="language of the table and report (default zh)")
    scan.add_argument("--detectors", metavar="NAMES",
                      help=f"comma-separated subset of: {', '.join(detector_names())}")
    scan.add_argument("--claim-time", metavar="ISO", help="when the claim was filed")
    scan.add_argument("--delivered-at", metavar="ISO", help="when the parcel was delivered")
    scan.add_argument("--index", metavar="DIR",
                      help="reuse index to check against and add to (default: "
                           "REFUNDLENS_DATA_DIR/reuse; 'none' to disable)")

    batch = sub.add_parser("batch", help="analyse a JSON-lines file of photos",
                           epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    batch.add_argument("input", metavar="INPUT.jsonl")
    batch.add_argument("--out", required=True, metavar="OUTPUT.jsonl")
    batch.add_argument("--masks", metavar="DIR")
    batch.add_argument("--workers", type=int, default=None, metavar="N")
    batch.add_argument("--engine", choices=("local", "ray"), default="local")
    batch.add_argument("--ray-address", metavar="ADDR", help="join this Ray cluster")
    batch.add_argument("--index", metavar="DIR",
                       help="reuse index (default: REFUNDLENS_DATA_DIR/reuse; 'none' to disable)")
    batch.add_argument("--no-progress", action="store_true", help="no progress bar")

    demo = sub.add_parser("demo", help="run the analysis on the bundled sample claims")
    demo.add_argument("--out", default="demo-out", metavar="DIR",
                      help="where to write the report and outputs (default demo-out)")
    demo.add_argument("--lang", choices=("zh", "en"), default="zh")

    sub.add_parser("detectors", help="list the detectors")
    reasons = sub.add_parser("reasons", help="list the reason codes")
    reasons.add_argument("--json", action="store_true")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return _COMMANDS[args.command](args)
    except ConfigError as exc:
        print(f"refundlens: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except RefundLensError as exc:
        print(f"refundlens: error: {exc}", file=sys.stderr)
        return EXIT_INPUT_ERRORS
    except KeyboardInterrupt:
        print("refundlens: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - the documented exit 1, with the traceback to report
        logging.getLogger("refundlens").exception("internal error")
        print("refundlens: internal error (a bug): please report the traceback above",
              file=sys.stderr)
        return EXIT_INTERNAL


def _settings(args: argparse.Namespace) -> Any:
    from .config import load_settings
    from .detectors import detector_names

    overrides: dict[str, Any] = {}
    names = getattr(args, "detectors", None)
    if names:
        chosen = tuple(n.strip() for n in names.split(",") if n.strip())
        unknown = [n for n in chosen if n not in detector_names()]
        if unknown:
            raise ConfigError(f"--detectors: unknown {', '.join(unknown)}; known: "
                              f"{', '.join(detector_names())}")
        overrides["detectors"] = chosen
    if getattr(args, "workers", None):
        overrides["workers"] = args.workers
    return load_settings(**overrides)


def _index_dir(args: argparse.Namespace, settings: Any) -> Path | None:
    if args.index == "none":
        return None
    return Path(args.index) if args.index else Path(settings.data_dir) / "reuse"


def _cmd_scan(args: argparse.Namespace) -> int:
    from .scan import scan_photos
    from .summary import render_table

    settings = _settings(args)
    context = {k: v for k, v in (("claim_time", args.claim_time),
                                 ("delivered_at", args.delivered_at)) if v}
    report = scan_photos(args.photos, references=args.reference, shipping=args.shipping,
                         settings=settings, context=context,
                         index_dir=_index_dir(args, settings),
                         masks_dir=Path(args.masks) if args.masks else None)
    if args.json:
        print(json.dumps(report.to_json(), ensure_ascii=False, indent=2))
    else:
        print(render_table(report, lang=args.lang))
    if args.html:
        from .reports.html import write_html_report

        path = write_html_report(report, Path(args.html), lang=args.lang)
        print(f"HTML report: {path}", file=sys.stderr if args.json else sys.stdout)
    return EXIT_INPUT_ERRORS if report.errors else EXIT_OK


def _cmd_batch(args: argparse.Namespace) -> int:
    from .batch import run_batch

    settings = _settings(args)
    summary = run_batch(args.input, args.out, masks_dir=args.masks,
                        workers=args.workers or settings.workers, engine=args.engine,
                        ray_address=args.ray_address, settings=settings,
                        index_dir=_index_dir(args, settings), progress=not args.no_progress)
    levels = ", ".join(f"{k} {v}" for k, v in sorted(summary.levels.items())) or "none"
    print(f"{summary.total} lines: {summary.ok} analysed, {summary.errors} errors, "
          f"{summary.skipped} already done (resumed); risk levels: {levels}; "
          f"output: {args.out}", file=sys.stderr)
    return EXIT_INPUT_ERRORS if summary.errors else EXIT_OK


def _cmd_demo(args: argparse.Namespace) -> int:
    from .demo import run_demo

    return run_demo(Path(args.out), lang=args.lang)


def _cmd_detectors(args: argparse.Namespace) -> int:
    from .detectors import detector_class, detector_names

    for name in detector_names():
        cls = detector_class(name)
        print(f"{name:14} v{cls.version:6} {cls.description}")
        print(f"{'':22}codes: {', '.join(cls.codes)}")
    return EXIT_OK


def _cmd_reasons(args: argparse.Namespace) -> int:
    from .reasons import REASONS

    if args.json:
        print(json.dumps([{"code": r.code, "strength": r.strength, "title_en": r.title_en,
                           "title_zh": r.title_zh} for r in REASONS.values()],
                         ensure_ascii=False, indent=2))
    else:
        for r in REASONS.values():
            print(f"{r.code:34} {r.strength:10} {r.title_en} / {r.title_zh}")
    return EXIT_OK


_COMMANDS = {"scan": _cmd_scan, "batch": _cmd_batch, "demo": _cmd_demo,
             "detectors": _cmd_detectors, "reasons": _cmd_reasons}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

"""The ``refundlens`` command: parses, calls the library, prints.

Exit codes (also in ``refundlens --help`` and docs/cli.md):

    0  success (scan, batch: every input was analysed)
    1  an unexpected internal failure (a bug: please report it)
    2  usage or configuration error: a bad option or value (e.g. a merchant key without
       --merchant, an unknown key id or merchant), a missing input file, a bad setting,
       a database that cannot be reached or needs `refundlens db upgrade`
    3  the run finished, but one or more inputs could not be analysed (each has an
       error entry in the output saying why)
    4  `audit verify` found the audit chain edited, with events inserted or deleted
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path
from typing import Any, Sequence

from . import __version__
from .errors import ConfigError, RefundLensError, RequestError

__all__ = ["EXIT_CODES", "main"]

EXIT_OK, EXIT_INTERNAL, EXIT_USAGE, EXIT_INPUT_ERRORS, EXIT_AUDIT = 0, 1, 2, 3, 4
EXIT_CODES = {
    EXIT_OK: "success (scan, batch: every input was analysed)",
    EXIT_INTERNAL: "unexpected internal failure",
    EXIT_USAGE: "usage or configuration error: a bad option or value (e.g. a merchant key "
                "without --merchant, an unknown key id or merchant), a missing input file, a "
                "bad setting, a database that cannot be reached or needs `refundlens db "
                "upgrade`",
    EXIT_INPUT_ERRORS: "finished, but one or more inputs could not be analysed",
    EXIT_AUDIT: "audit verify: the audit chain was edited, or events inserted or deleted",
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
    _service_parsers(sub)
    return parser


def _service_parsers(sub: Any) -> None:
    serve = sub.add_parser("serve", help="run the claims service (REST API, job workers)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=None, metavar="N",
                       help="analysis processes (default REFUNDLENS_ANALYSIS_WORKERS, 1; "
                            "0: run `refundlens worker` separately)")
    serve.add_argument("--api-processes", type=int, default=None, metavar="N",
                       help="processes answering HTTP on the one port (default "
                            "REFUNDLENS_API_PROCESSES, 1)")
    serve.add_argument("--demo", action="store_true",
                       help="seed a demo merchant, products, orders and claims")

    worker = sub.add_parser("worker", help="run job workers without the API")
    worker.add_argument("--processes", type=int, default=None, metavar="N",
                        help="analysis processes (default REFUNDLENS_ANALYSIS_WORKERS, 1)")

    keys = sub.add_parser("keys", help="create, rotate and revoke API keys")
    keys_sub = keys.add_subparsers(dest="keys_command", required=True, metavar="ACTION")
    create = keys_sub.add_parser("create", help="print a new key (last line of stdout)")
    create.add_argument("--role", required=True,
                        choices=("admin", "reviewer", "merchant", "intake"))
    create.add_argument("--merchant", metavar="ID", help="the merchant a merchant key is for")
    create.add_argument("--name", default="", help="a label for the key")
    rotate = keys_sub.add_parser("rotate", help="a successor key; the old one works 24 h more")
    rotate.add_argument("key_id", metavar="KEY_ID")
    revoke = keys_sub.add_parser("revoke", help="stop a key now")
    revoke.add_argument("key_id", metavar="KEY_ID")

    users = sub.add_parser("users", help="console users")
    users_sub = users.add_subparsers(dest="users_command", required=True, metavar="ACTION")
    ucreate = users_sub.add_parser("create", help="create a console user")
    ucreate.add_argument("--role", required=True, choices=("admin", "reviewer", "merchant"))
    ucreate.add_argument("--username", required=True)
    ucreate.add_argument("--password", required=True)
    ucreate.add_argument("--merchant", metavar="ID")

    db = sub.add_parser("db", help="database schema")
    db_sub = db.add_subparsers(dest="db_command", required=True, metavar="ACTION")
    db_sub.add_parser("upgrade", help="apply the migrations (Alembic) up to the newest")
    db_sub.add_parser("current", help="print the schema revision")

    blobs = sub.add_parser("blobs", help="the blob store (uploads, masks, keyframes)")
    blobs_sub = blobs.add_subparsers(dest="blobs_command", required=True, metavar="ACTION")
    sweep = blobs_sub.add_parser("sweep", help="remove blobs no row names (left by failed "
                                               "requests), older than the grace period")
    sweep.add_argument("--grace-hours", type=float, default=24.0, metavar="H",
                       help="keep blobs stored within the last H hours (default 24, "
                            "at least 0.17)")

    reuse = sub.add_parser("reuse", help="the service's reuse index (in the database)")
    reuse_sub = reuse.add_subparsers(dest="reuse_command", required=True, metavar="ACTION")
    reuse_sub.add_parser("backfill", help="index every analysed claim photo not indexed yet, "
                                          "from its stored analysis (after upgrading from a "
                                          "file index; a queued job does the same)")
    rimport = reuse_sub.add_parser("import", help="copy a reuse index directory (the old "
                                                  "per-host file index, a batch index) into "
                                                  "the database, keeping photos already there")
    rimport.add_argument("directory", metavar="DIR", nargs="?",
                         help="the index directory (default REFUNDLENS_DATA_DIR/reuse-index, "
                              "where the service kept it before)")

    audit = sub.add_parser("audit", help="the audit chain")
    audit_sub = audit.add_subparsers(dest="audit_command", required=True, metavar="ACTION")
    verify = audit_sub.add_parser("verify", help="check every event's hash and link; exit 4 "
                                                 "and name the first bad event if any")
    verify.add_argument("--json", action="store_true")


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = _parser().parse_args(argv)
    except SystemExit as exc:  # argparse exits 2 on usage errors, 0 on --help
        return int(exc.code or 0)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.ERROR,
                        format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    try:
        return _COMMANDS[args.command](args)
    except RefundLensError as exc:
        print(f"refundlens: error: {exc}", file=sys.stderr)
        return EXIT_USAGE if _is_usage_error(exc) else EXIT_INPUT_ERRORS
    except KeyboardInterrupt:
        print("refundlens: interrupted", file=sys.stderr)
        return 130
    except Exception:  # noqa: BLE001 - the documented exit 1, with the traceback to report
        logging.getLogger("refundlens").exception("internal error")
        print("refundlens: internal error (a bug): please report the traceback above",
              file=sys.stderr)
        return EXIT_INTERNAL


def _is_usage_error(exc: RefundLensError) -> bool:
    """A bad setting, or a value given on the command line the service refused (a bad
    --role or --merchant, an unknown key id: a ``RequestError``), or a database that is
    unreachable or not upgraded: exit 2, not 3 (an input that could not be analysed)."""
    if isinstance(exc, (ConfigError, RequestError)):
        return True
    store_db = sys.modules.get("refundlens.store.db")  # not imported: not its error
    return store_db is not None and isinstance(exc, store_db.DatabaseError)


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
    from .config import make_data_dir

    if args.index == "none":
        return None
    return Path(args.index) if args.index else make_data_dir(settings) / "reuse"


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


def _service(*, migrate_embedded: bool = False) -> Any:
    """The service over the configured database; ``migrate_embedded`` upgrades the embedded
    SQLite default first, as ``serve`` does (PostgreSQL is upgraded on purpose, with
    `refundlens db upgrade`)."""
    from .claims.service import open_service
    from .config import load_settings

    settings = load_settings()
    if migrate_embedded:
        return _service_for_serve(settings)
    return open_service(settings)


def _cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from .config import load_settings
    from .web import create_app

    overrides: dict[str, Any] = {}
    if args.workers is not None:
        overrides["analysis_workers"] = args.workers
    if args.api_processes is not None:
        if args.api_processes < 1:
            raise ConfigError(f"--api-processes {args.api_processes}: expected 1 or more")
        overrides["api_processes"] = args.api_processes
    settings = load_settings(**overrides)
    svc = _service_for_serve(settings)
    if args.demo:
        from .claims.demo import seed_demo

        print(seed_demo(svc), flush=True)
    where = (f"RefundLens serving on http://{args.host}:{args.port}: review console /console, "
             f"API /api/v1, OpenAPI /docs; data in {settings.data_dir}")
    server = {"host": args.host, "port": args.port, "log_level": "warning",
              "proxy_headers": True, "forwarded_allow_ips": settings.forwarded_allow_ips}
    if settings.api_processes > 1:
        return _serve_processes(svc, settings, server, where)
    print(where, flush=True)
    try:
        uvicorn.run(create_app(settings, service=svc), **server)
    finally:
        svc.close()
    return EXIT_OK


def _serve_processes(svc: Any, settings: Any, server: dict[str, Any], where: str) -> int:
    """``--api-processes N``: this process runs the job workers and supervises N API
    processes (uvicorn's), which share the port and get the settings through the
    environment."""
    import uvicorn

    from .web.app import SERVE_PID_ENV, start_workers, stop_workers

    os.environ.update({SERVE_PID_ENV: str(os.getpid()),
                       "REFUNDLENS_DATA_DIR": str(settings.data_dir),
                       "REFUNDLENS_API_PROCESSES": str(settings.api_processes)})
    if settings.database_url:
        os.environ["REFUNDLENS_DATABASE_URL"] = settings.database_url
    running = start_workers(svc, analysis_processes=settings.analysis_workers) \
        if settings.analysis_workers > 0 else []
    print(f"{where}; {settings.api_processes} API processes", flush=True)
    try:
        uvicorn.run("refundlens.web.app:api_process_app", factory=True,
                    workers=settings.api_processes, **server)
    finally:
        stop_workers(running)
        svc.close()
    return EXIT_OK


def _service_for_serve(settings: Any) -> Any:
    from .claims.service import open_service

    # The embedded SQLite default migrates itself; a PostgreSQL deployment runs
    # `refundlens db upgrade` on purpose.
    return open_service(settings, migrate=not settings.database_url or
                        settings.database_url.startswith("sqlite"))


def _cmd_worker(args: argparse.Namespace) -> int:
    import signal
    import threading

    from .config import load_settings
    from .web.app import start_workers, stop_workers

    overrides = {} if args.processes is None else {"analysis_workers": args.processes}
    settings = load_settings(**overrides)
    svc = _service_for_serve(settings)
    running = start_workers(svc, analysis_processes=max(1, settings.analysis_workers))
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    print(f"RefundLens worker running ({max(1, settings.analysis_workers)} analysis "
          f"processes); data in {settings.data_dir}", flush=True)
    try:
        stop.wait()
    except KeyboardInterrupt:
        pass
    stop_workers(running)
    svc.close()
    return EXIT_OK


def _cmd_keys(args: argparse.Namespace) -> int:
    from .claims import access

    svc = _service(migrate_embedded=True)
    try:
        if args.keys_command == "create":
            row, token = access.create_key(svc, role=args.role, merchant_id=args.merchant,
                                           name=args.name)
            print(f"created {row.role} key {row.id}" +
                  (f" for merchant {row.merchant_id}" if row.merchant_id else "") +
                  "; it is shown once:")
            print(token)
        elif args.keys_command == "rotate":
            row, token = access.rotate_key(svc, args.key_id)
            print(f"created {row.role} key {row.id} replacing {args.key_id} (which stops "
                  f"working in 24 hours); it is shown once:")
            print(token)
        else:
            access.revoke_key(svc, args.key_id)
            print(f"revoked key {args.key_id}")
    finally:
        svc.close()
    return EXIT_OK


def _cmd_users(args: argparse.Namespace) -> int:
    from .claims import access

    svc = _service(migrate_embedded=True)
    try:
        user = access.create_user(svc, username=args.username, password=args.password,
                                  role=args.role, merchant_id=args.merchant)
        print(f"created {user.role} user {user.username} ({user.id})")
    finally:
        svc.close()
    return EXIT_OK


def _cmd_db(args: argparse.Namespace) -> int:
    from .config import load_settings, make_data_dir
    from .store import Database, default_database_url

    settings = load_settings()
    db = Database(settings.database_url or default_database_url(make_data_dir(settings)))
    try:
        if args.db_command == "upgrade":
            db.upgrade()
        print(f"{db!r}: schema revision {db.current_revision()} (newest "
              f"{db.head_revision()})")
    finally:
        db.dispose()
    return EXIT_OK


def _cmd_blobs(args: argparse.Namespace) -> int:
    from datetime import timedelta

    from .claims.retention import sweep_blobs

    svc = _service()
    try:
        report = sweep_blobs(svc, grace=timedelta(hours=args.grace_hours), actor="cli")
    finally:
        svc.close()
    print(f"blob sweep: {report.examined} blobs older than {args.grace_hours:g} h examined, "
          f"{report.kept_in_use} in use, {report.removed} removed "
          f"({report.removed_bytes / 1e6:.1f} MB)")
    return EXIT_OK


def _cmd_reuse(args: argparse.Namespace) -> int:
    from .claims import reuse
    from .claims.service import LEGACY_REUSE_INDEX

    svc = _service(migrate_embedded=True)
    try:
        if args.reuse_command == "backfill":
            report = reuse.backfill_reuse_index(svc, limit=0, progress=_backfill_progress)
            print(f"reuse index backfill: {report.examined} analysed photos, {report.indexed} "
                  f"added, {report.already_indexed} already indexed, {report.without_hashes} "
                  f"without hashes (analysis failed or no reuse detector), "
                  f"{report.other_version} hashed by another hash version; "
                  f"{len(svc.reuse_index)} photos in the index")
        else:
            path = Path(args.directory or Path(svc.settings.data_dir) / LEGACY_REUSE_INDEX)
            total, added = reuse.import_file_index(svc, path)
            print(f"reuse index import from {path}: {total} photos, {added} added, "
                  f"{total - added} already indexed; {len(svc.reuse_index)} photos in the index")
    finally:
        svc.close()
    return EXIT_OK


def _backfill_progress(report: Any) -> None:
    if report.resume_after and report.batches % 20 == 0:
        print(f"{report.examined} analysed photos examined, {report.indexed} added",
              file=sys.stderr, flush=True)


def _cmd_audit(args: argparse.Namespace) -> int:
    from .claims.audit import verify_chain

    svc = _service()
    try:
        with svc.db.read() as session:
            report = verify_chain(session)
    finally:
        svc.close()
    if args.json:
        print(json.dumps(report.to_dict(), ensure_ascii=False, indent=2))
    elif report.ok:
        print(f"audit chain intact: {report.events} events, head {report.head_hash}")
    else:
        problem = report.first_problem
        assert problem is not None
        print(f"audit chain BROKEN at event {problem.seq} ({problem.kind}): {problem.detail}")
        for other in report.problems[1:]:
            print(f"  also at event {other.seq} ({other.kind}): {other.detail}")
    return EXIT_OK if report.ok else EXIT_AUDIT


_COMMANDS = {"scan": _cmd_scan, "batch": _cmd_batch, "demo": _cmd_demo,
             "detectors": _cmd_detectors, "reasons": _cmd_reasons, "serve": _cmd_serve,
             "worker": _cmd_worker, "keys": _cmd_keys, "users": _cmd_users, "db": _cmd_db,
             "blobs": _cmd_blobs, "reuse": _cmd_reuse, "audit": _cmd_audit}


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())

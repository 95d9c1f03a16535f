"""``create_app``: the FastAPI application over one :class:`~refundlens.claims.service.Service`.

The app opens the service when it starts (never at import), runs the in-process job
workers unless told not to, and closes both when it stops. Tests build it with their
own settings and a temporary data directory.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, AsyncIterator

from fastapi import FastAPI

from .. import __version__
from ..claims.service import Service, open_service
from ..config import Settings
from .api import router
from .console import install_console
from .deps import RateLimiter
from .errors import install_error_handlers

__all__ = ["api_process_app", "create_app", "job_handlers", "start_workers", "stop_workers"]

log = logging.getLogger(__name__)


def job_handlers(svc: Service, engine: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every job kind's handler: ``(heavy, light)`` — analysis and keyframes, which use the
    analysis ``engine`` or decode video, and the rest, which must never wait behind them."""
    from ..claims.analyzer import handle_analyze_claim
    from ..claims.keyframes import handle_extract_keyframes
    from ..claims.retention import handle_sweep_blobs
    from ..claims.reuse import handle_backfill_reuse_index
    from ..claims.webhooks import handle_deliver_webhook
    from ..claims.workflow import expire_evidence

    heavy = {"analyze_claim": lambda ctx: handle_analyze_claim(svc, engine, ctx),
             "extract_keyframes": lambda ctx: handle_extract_keyframes(svc, ctx)}
    light = {"deliver_webhook": lambda ctx: handle_deliver_webhook(svc, ctx),
             "expire_evidence": lambda ctx: expire_evidence(svc, ctx),
             "sweep_blobs": lambda ctx: handle_sweep_blobs(svc, ctx),
             "backfill_reuse_index": lambda ctx: handle_backfill_reuse_index(svc, ctx)}
    return heavy, light


def start_workers(svc: Service, *, analysis_processes: int, inline: bool = False) -> list[Any]:
    """Start the job workers: analysis threads feeding a process pool, and one thread for
    the light jobs (webhook deliveries, evidence deadlines, the blob sweep, the reuse index
    backfill) so they never wait behind photos. Returns what to stop."""
    from ..claims.analyzer import default_engine
    from ..claims.retention import schedule_sweep
    from ..claims.workflow import on_job_failed
    from ..jobs import CommitWaker, Worker

    engine = default_engine(svc, inline=inline)
    heavy, light_handlers = job_handlers(svc, engine)
    analysis = Worker(svc.db, heavy, threads=max(1, analysis_processes),
                      lease_s=svc.settings.job_lease_s,
                      on_failed=lambda ctx, error: on_job_failed(svc, ctx, error))
    light = Worker(svc.db, light_handlers, threads=1, lease_s=svc.settings.job_lease_s)
    schedule_sweep(svc)
    analysis.start()
    light.start()

    def wake(kinds: set[str]) -> None:
        for worker in (analysis, light):
            if worker.kinds & kinds:
                worker.wake()

    return [analysis, light, engine, CommitWaker(svc.db, wake)]


def stop_workers(running: list[Any], *, timeout: float = 10.0) -> None:
    """Stop what :func:`start_workers` started: the workers lease no more jobs, the analysis
    processes are ended (a job they were running is put back and re-run by the next
    worker), then the worker threads are joined. In that order: closing the pool first
    would let a worker lease the next job and start a new pool."""
    workers = [item for item in running if hasattr(item, "request_stop")]
    for worker in workers:
        worker.request_stop()
    for item in running:
        if not hasattr(item, "request_stop"):
            try:
                item.close()
            except Exception:  # noqa: BLE001 - close the rest, then join the workers
                log.exception("stopping the workers: closing %r failed", item)
    for worker in workers:
        worker.stop(timeout=timeout)


def create_app(settings: Settings, *, service: Service | None = None,
               workers: bool = True, migrate: bool = True) -> FastAPI:
    """The API app. ``service`` is opened from ``settings`` at start-up unless given;
    ``workers`` runs the in-process job workers (``settings.analysis_workers`` analysis
    processes; none when that is 0)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        svc = service or open_service(settings, migrate=migrate)
        app.state.service = svc
        running: list[Any] = []
        if workers and settings.analysis_workers > 0:
            running = start_workers(svc, analysis_processes=settings.analysis_workers)
        try:
            yield
        finally:
            stop_workers(running)
            if service is None:
                svc.close()

    app = FastAPI(title="RefundLens", version=__version__, lifespan=lifespan,
                  description="Verify the photos behind refund claims and route the claims. "
                              "Authenticate with `Authorization: Bearer <key>`.")
    app.state.rate_limiter = RateLimiter(settings.intake_rate,
                                         processes=settings.api_processes)
    install_error_handlers(app)
    app.include_router(router)
    install_console(app)
    return app


#: Set by ``refundlens serve`` for the API processes it starts: its own process id.
SERVE_PID_ENV = "REFUNDLENS_SERVE_PID"


def api_process_app() -> FastAPI:
    """The app of one of ``refundlens serve --api-processes N``'s API processes (a uvicorn
    factory): settings from the environment, no job workers (the serving process runs them
    and polls for new work), and the process dies with the serving process."""
    import os

    from ..config import load_settings
    from ..processes import die_with_parent

    serve_pid = os.environ.get(SERVE_PID_ENV)
    if serve_pid:
        die_with_parent(int(serve_pid))
    return create_app(load_settings(), workers=False, migrate=False)

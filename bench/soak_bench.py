"""Durability soak: intake for N minutes while the worker process is SIGKILLed every minute;
at the end no claim and no decision is lost and every job has finished.

    .venv/bin/python bench/soak_bench.py [--minutes 10] [--rate 1] [--kill-every 60]
        [--json FILE]

Runs ``refundlens serve --workers 0`` (the API, no analysis) and a separate ``refundlens
worker`` (the analysis jobs) on SQLite in a new temporary data directory, with the
default job lease (``REFUNDLENS_JOB_LEASE_S``, 30 s). Then, for ``--minutes``:

- an intake thread files claims at ``--rate`` a second, 3 photos each (the small photos of
  bench/intake_bench.py, made unique per claim; every third claim's first photo is the
  product's listing photo — ../shared/data catalog_and_buyer/Bravo-Orange-Juice — so
  those claims are routed to review), each with an
  ``Idempotency-Key`` and retried with the same key on a transport error or a 5xx; every
  claim id answered 202 (or 200, a replayed retry) is recorded;
- a reviewer thread polls the routed claims (in_review, evidence_requested) every 2 s and
  decides every other one it sees (approved, or rejected with a reason); every decision
  answered 201 is recorded;
- every ``--kill-every`` seconds the worker's whole process group (the worker and its
  analysis process) gets SIGKILL and a new worker is started.

After the intake stops, it waits for the backlog to drain, then checks straight in the
database: every recorded claim is there with all its photo rows and blobs, every recorded
decision is there, every analysis job is done (none failed), each claim has exactly one
``analysis_completed`` audit event (no evidence is submitted, so one analysis round), and
``refundlens audit verify`` exits 0. Prints a summary; exits 1 if anything was lost.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from intake_bench import (REFUNDLENS, SHARED, ClaimBodies, Server, percentile,  # noqa: E402
                          setup_catalog, small_photos)

LISTING = SHARED / "catalog_and_buyer" / "Bravo-Orange-Juice" / "catalog.jpg"


class Worker:
    """``refundlens worker`` in its own process group (with its analysis process)."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.env, self.log = env, log
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0

    def start(self) -> None:
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen([str(REFUNDLENS), "worker", "--processes", "1"],
                                         env=self.env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        self.started += 1

    def kill(self) -> None:
        assert self.proc is not None
        os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.kill()


class Soak:
    def __init__(self, url: str, reviewer: str, intake: str, order_id: str,
                 listing: bytes, rate: float) -> None:
        self.url, self.rate = url, rate
        self.reviewer = {"Authorization": f"Bearer {reviewer}"}
        self.intake = {"Authorization": f"Bearer {intake}"}
        photos = small_photos()
        self.bodies = ClaimBodies(photos, order_id)
        self.listing_bodies = ClaimBodies([listing, *photos[1:]], order_id)
        self.stop = threading.Event()
        self.accepted: list[str] = []
        self.intake_failures: list[str] = []
        self.retries = 0
        self.latencies: list[float] = []
        self.decisions: dict[str, str] = {}  # claim id → outcome
        self.decision_failures: list[str] = []
        self.seen_routed: set[str] = set()

    def run_intake(self) -> None:
        start = time.monotonic()
        n = 0
        with httpx.Client(base_url=self.url, timeout=60) as http:
            while not self.stop.is_set():
                due = start + n / self.rate
                if self.stop.wait(max(0.0, due - time.monotonic())):
                    return
                n += 1
                bodies = self.listing_bodies if n % 3 == 0 else self.bodies
                self._file(http, bodies.body(n), bodies.content_type, n)

    def _file(self, http: httpx.Client, body: bytes, content_type: str, n: int) -> None:
        key = uuid.uuid4().hex
        headers = {**self.intake, "Content-Type": content_type, "Idempotency-Key": key}
        for attempt in range(5):
            began = time.perf_counter()
            try:
                response = http.post("/api/v1/claims", content=body, headers=headers)
            except httpx.TransportError as exc:
                self.retries += 1
                time.sleep(0.5 * (attempt + 1))
                last = f"claim {n}: {type(exc).__name__}"
                continue
            if response.status_code in (200, 202):
                self.latencies.append(time.perf_counter() - began)
                self.accepted.append(response.json()["id"])
                return
            last = f"claim {n}: HTTP {response.status_code} {response.text[:200]}"
            if response.status_code < 500:
                break
            self.retries += 1
            time.sleep(0.5 * (attempt + 1))
        self.intake_failures.append(last)

    def run_reviewer(self) -> None:
        rng = random.Random(7)
        with httpx.Client(base_url=self.url, headers=self.reviewer, timeout=60) as http:
            while not self.stop.wait(2.0):
                try:
                    listed = http.get("/api/v1/claims", params={
                        "status": "in_review,evidence_requested", "limit": 100}).json()
                except httpx.TransportError:
                    continue
                for claim in listed["claims"]:
                    if claim["id"] in self.seen_routed:
                        continue
                    self.seen_routed.add(claim["id"])
                    if len(self.seen_routed) % 2:
                        continue  # leave every other routed claim undecided
                    outcome = rng.choice(("approved", "rejected"))
                    reason = "" if outcome == "approved" else "照片与商品主图一致，损坏为后期添加"
                    response = http.post(f"/api/v1/claims/{claim['id']}/decision",
                                         json={"outcome": outcome, "reason": reason})
                    if response.status_code == 201:
                        self.decisions[claim["id"]] = outcome
                    else:
                        self.decision_failures.append(
                            f"{claim['id']}: HTTP {response.status_code} {response.text[:200]}")


def job_counts(db_path: Path) -> dict[str, int]:
    with sqlite3.connect(db_path) as conn:
        return dict(conn.execute("select status, count(*) from jobs where kind = "
                                 "'analyze_claim' group by status").fetchall())


def running_jobs(db_path: Path) -> int:
    with sqlite3.connect(db_path) as conn:
        return conn.execute("select count(*) from jobs where status = 'running'").fetchone()[0]


def verify(db_path: Path, blobs: Path, soak: Soak) -> dict[str, Any]:
    with sqlite3.connect(db_path) as conn:
        claims = dict(conn.execute("select id, status from claims").fetchall())
        photos = conn.execute("select claim_id, sha256, analyzed_at from claim_photos").fetchall()
        decisions = dict(conn.execute("select claim_id, outcome from decisions "
                                      "where kind = 'person'").fetchall())
        jobs = conn.execute("select id, kind, status, attempts, last_error from jobs").fetchall()
        completed = dict(conn.execute("select claim_id, count(*) from audit_events where "
                                      "action = 'analysis_completed' group by claim_id")
                         .fetchall())
    photos_of: dict[str, int] = {}
    missing_blobs, unanalysed = 0, 0
    for claim_id, sha, analyzed_at in photos:
        photos_of[claim_id] = photos_of.get(claim_id, 0) + 1
        missing_blobs += not (blobs / sha[:2] / sha[2:4] / sha).is_file()
        unanalysed += analyzed_at is None
    analysis_jobs = [j for j in jobs if j[1] == "analyze_claim"]
    return {
        "claims_accepted": len(soak.accepted),
        "claims_lost": sorted(set(soak.accepted) - set(claims)),
        "claims_with_missing_photos": sorted(c for c in soak.accepted
                                             if photos_of.get(c, 0) != 3),
        "missing_blobs": missing_blobs,
        "photos_unanalysed": unanalysed,
        "claims_still_open": sorted(c for c, s in claims.items()
                                    if s in ("submitted", "analyzing")),
        "decisions_recorded": len(soak.decisions),
        "decisions_lost": sorted(c for c, outcome in soak.decisions.items()
                                 if decisions.get(c) != outcome),
        "analysis_jobs": len(analysis_jobs),
        "analysis_jobs_not_done": [(j[0], j[2], j[4]) for j in analysis_jobs if j[2] != "done"],
        "analysis_jobs_run_more_than_once": sum(j[3] > 1 for j in analysis_jobs),
        "max_attempts": max((j[3] for j in analysis_jobs), default=0),
        "claims_without_one_analysis_result": sorted(
            c for c in claims if completed.get(c, 0) != 1),
        "final_statuses": {s: list(claims.values()).count(s) for s in set(claims.values())},
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--rate", type=float, default=1.0, help="claims filed per second")
    parser.add_argument("--kill-every", type=float, default=60.0, metavar="SECONDS")
    parser.add_argument("--drain-timeout", type=float, default=1800.0, metavar="SECONDS")
    parser.add_argument("--keep", metavar="DIR", help="use DIR as the data directory and "
                        "keep it (default: a temporary directory, removed)")
    parser.add_argument("--json", metavar="FILE")
    args = parser.parse_args()

    tmp = None if args.keep else tempfile.TemporaryDirectory(prefix="refundlens-soak-")
    root = Path(args.keep or tmp.name)  # type: ignore[union-attr]
    data_dir = root / "data"
    data_dir.mkdir(parents=True, exist_ok=True)
    server = Server(data_dir, analysis=0, api_processes=1, extra_env={})
    server.env["REFUNDLENS_INTAKE_RATE"] = "200"  # the default limit, on
    worker = Worker(server.env, root / "worker.log")
    db_path = data_dir / "refundlens.db"
    keys = {role: server.cli("keys", "create", "--role", role).strip().splitlines()[-1]
            for role in ("admin", "reviewer", "intake")}
    kills: list[dict[str, Any]] = []
    try:
        server.start()
        listing = LISTING.read_bytes()
        order_id = setup_catalog(server.url, {"Authorization": f"Bearer {keys['admin']}"},
                                 listing)
        soak = Soak(server.url, keys["reviewer"], keys["intake"], order_id, listing,
                    args.rate)
        worker.start()
        threads = [threading.Thread(target=soak.run_intake, daemon=True),
                   threading.Thread(target=soak.run_reviewer, daemon=True)]
        for thread in threads:
            thread.start()
        began = time.monotonic()
        end = began + 60 * args.minutes
        next_kill = began + args.kill_every
        while time.monotonic() < end:
            time.sleep(max(0.0, min(next_kill, end) - time.monotonic()))
            if time.monotonic() >= next_kill and time.monotonic() < end:
                running = running_jobs(db_path)
                worker.kill()
                kills.append({"at_s": round(time.monotonic() - began), "jobs_running": running,
                              "accepted_so_far": len(soak.accepted)})
                print(f"[{time.monotonic() - began:6.0f} s] killed the worker "
                      f"({running} job(s) running); {len(soak.accepted)} claims accepted, "
                      f"{len(soak.decisions)} decided; jobs {job_counts(db_path)}", flush=True)
                worker.start()
                next_kill += args.kill_every
        soak.stop.set()
        for thread in threads:
            thread.join(120)
        intake_done = time.monotonic()
        print(f"intake stopped after {intake_done - began:.0f} s; draining "
              f"{job_counts(db_path)}", flush=True)
        deadline = intake_done + args.drain_timeout
        while time.monotonic() < deadline:
            counts = job_counts(db_path)
            if not counts.get("queued") and not counts.get("running"):
                break
            time.sleep(2)
        drained = time.monotonic() - intake_done
        worker.stop()
        result = verify(db_path, data_dir / "blobs", soak)
        audit = subprocess.run([str(REFUNDLENS), "audit", "verify"], env=server.env,
                               capture_output=True, text=True)
    finally:
        worker.stop()
        server.stop()
    lat = soak.latencies
    result.update({
        "minutes": args.minutes, "rate_per_s": args.rate, "worker_kills": len(kills),
        "kills": kills, "kills_with_a_job_running": sum(k["jobs_running"] > 0 for k in kills),
        "drain_s": round(drained),
        "intake_failures": soak.intake_failures, "intake_retries": soak.retries,
        "decision_failures": soak.decision_failures,
        "intake_p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
        "intake_p99_ms": round(1000 * percentile(lat, 0.99), 1) if lat else None,
        "audit_verify_exit": audit.returncode, "audit_verify": audit.stdout.strip(),
    })
    if tmp is not None:
        tmp.cleanup()
    lost = (result["claims_lost"] or result["claims_with_missing_photos"] or
            result["missing_blobs"] or result["decisions_lost"] or
            result["analysis_jobs_not_done"] or result["claims_still_open"] or
            result["claims_without_one_analysis_result"] or result["photos_unanalysed"] or
            result["audit_verify_exit"] != 0 or result["intake_failures"])
    print(json.dumps({k: v for k, v in result.items() if k != "kills"}, indent=2,
                     ensure_ascii=False))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, ensure_ascii=False))
    print("RESULT:", "FAILED — something was lost or left unfinished" if lost else
          "nothing lost, every job finished")
    return 1 if lost else 0


if __name__ == "__main__":
    sys.exit(main())

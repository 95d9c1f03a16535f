"""Review console queue at scale: server-side time of the queue pages and the queue API over
10,000 and 100,000 claims, on SQLite and on PostgreSQL, with the query plans behind them.

    .venv/bin/python bench/console_bench.py [--claims 10000,100000]
        [--databases sqlite,postgresql] [--repeat 20]

For each database and size, a fresh database (SQLite: a file in a temporary directory, as
``refundlens serve`` opens it; PostgreSQL: a throwaway cluster from tests/pgserver.py) is
migrated and seeded in bulk through the ORM's ``insert()``: merchants (300, claim counts
falling off as 1/rank, so the largest has ~16 %), one order per claim, claims in a mix of
statuses (35 % in review, 5 % appealed, 10 % evidence requested, 50 % decided), risk
levels, deadlines (waiting claims were filed in the last 4 days and are due 24 h after),
one analysed photo per claim whose stored analysis is a real one (``analyze`` run once on a
photo made from a listing photo) with the findings swapped for the claim's reason codes
(and those codes in ``photo_codes``, as the analysis writes them), and the decisions and
appeals that appealed and decided claims have. PostgreSQL is then
``VACUUM ANALYZE``d (what autovacuum does after a bulk load); SQLite gets no ``ANALYZE``,
as the service never runs one.

Then a reviewer signs in through the console's form and every request below is sent
through the FastAPI ``TestClient`` in this process (no network, no uvicorn: the time is the
app's whole handling of the request — auth, queries, template — plus the client's
in-process transport, whose floor is printed: ``/api/v1/health``, one ``SELECT 1``), twice
to warm up, then ``--repeat`` times. It prints p50/p95, the median SQL time per request
(the statements' own time, from SQLAlchemy's cursor events) and the statement count, and
the plan (SQLite ``EXPLAIN QUERY PLAN``, PostgreSQL ``EXPLAIN ANALYZE``) of every
statement the requests send that reads claims, their photos and codes, decisions or
merchants, flagging full table scans and sorts; the summary column lists full scans and
sorts of more than a page of claims. The results go in docs/benchmarks.md ("Review console
queue").
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Iterator

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "console")]

from fastapi.testclient import TestClient  # noqa: E402
from sqlalchemy import create_engine, event, insert, select, text  # noqa: E402

from conftest import jpeg, painted_crack, textured_rgb  # noqa: E402 - the tests' factories
from console_support import PASSWORD, csrf_of, sign_in  # noqa: E402
from refundlens import DetectorContext, Reference, analyze, load_photo  # noqa: E402
from refundlens.claims.access import create_key, create_user  # noqa: E402
from refundlens.claims.intake import new_id  # noqa: E402
from refundlens.claims.service import Service, open_service  # noqa: E402
from refundlens.config import load_settings  # noqa: E402
from refundlens.store.tables import (Appeal, Claim, ClaimPhoto, Decision, Merchant,  # noqa: E402
                                     Order, PhotoCode, utcnow)
from refundlens.web import create_app  # noqa: E402

MERCHANTS = 300
CHUNK = 5000
STATUSES = (("in_review", 35), ("appealed", 5), ("evidence_requested", 10),
            ("auto_approved", 30), ("approved", 15), ("rejected", 5))
#: reason codes of a waiting claim's photo by its risk level: (codes, percent)
CODES = {
    "high": ((("REFERENCE_DERIVED", "REFERENCE_ALTERED"), 50), (("REUSED_PHOTO",), 20),
             (("AIGC_LABEL_TC260",), 15), (("AI_WATERMARK",), 10), (("AIGC_LABEL_C2PA",), 5)),
    "medium": ((("FORENSIC_ELA",), 40), (("METADATA_EDITING_SOFTWARE",), 40),
               (("FORENSIC_NOISE", "METADATA_SCREENSHOT"), 20)),
    "low": (((), 70), (("METADATA_EDITING_SOFTWARE",), 30)),
}
COMMON_CODE, RARE_CODE = "REFERENCE_ALTERED", "AIGC_LABEL_C2PA"


# --- seeding -----------------------------------------------------------------------------

def real_analysis() -> dict[str, Any]:
    """One real stored analysis: a 640×480 photo made from the listing photo with a crack
    painted on, analysed against that listing photo (REFERENCE_DERIVED, REFERENCE_ALTERED)."""
    listing = textured_rgb(640, 480, seed=3)
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "listing.jpg").write_bytes(jpeg(listing, 92))
        (Path(tmp) / "claim.jpg").write_bytes(jpeg(painted_crack(listing), 90))
        result = analyze(load_photo(Path(tmp) / "claim.jpg"), context=DetectorContext(
            references=(Reference(load_photo(Path(tmp) / "listing.jpg"), kind="listing"),)))
    return json.loads(json.dumps(result.to_dict()))


class Analyses:
    """The real analysis with its findings swapped for other codes (the detectors' own
    copies of the findings emptied, so a code is named only where the claim has it)."""

    def __init__(self, template: dict[str, Any]) -> None:
        self.template = {**template, "status": "ok", "findings": [],
                         "detectors": [{**d, "findings": []} for d in template["detectors"]]}
        self.finding = template["findings"][-1]

    def make(self, codes: tuple[str, ...], score: int | None, level: str | None
             ) -> dict[str, Any]:
        if score is None:
            return {"status": "error", "error": {"code": "corrupt_photo",
                                                 "message": "truncated JPEG"},
                    "findings": [], "risk": None}
        analysis = copy.copy(self.template)
        analysis["findings"] = [{**self.finding, "code": c} for c in codes]
        analysis["risk"] = {"score": score, "level": level, "recommendation": "review",
                            "reasons": [{"code": c, "contribution": 50.0} for c in codes]}
        return analysis


def _pick(rng: random.Random, table: tuple[tuple[Any, int], ...]) -> Any:
    return rng.choices([v for v, _ in table], weights=[w for _, w in table])[0]


def seed(svc: Service, n: int, analyses: Analyses, *, seed: int = 7) -> dict[str, Any]:
    """``n`` claims in bulk; returns what the requests need (merchant ids, counts)."""
    rng = random.Random(seed)
    now = utcnow()
    merchants = [f"mch_bench{i:04d}" for i in range(MERCHANTS)]
    weights = [1 / (rank + 1) for rank in range(MERCHANTS)]
    with svc.db.write() as session:
        session.execute(insert(Merchant), [{"id": m, "name": f"店铺 {i}", "created_at": now}
                                           for i, m in enumerate(merchants)])
    counts: dict[str, int] = {}
    photo_bytes = 0
    for start in range(0, n, CHUNK):
        orders, claims, photos, codes_rows, decisions, appeals = [], [], [], [], [], []
        for _ in range(start, min(n, start + CHUNK)):
            status = _pick(rng, STATUSES)
            counts[status] = counts.get(status, 0) + 1
            waiting = status in ("in_review", "appealed", "evidence_requested")
            merchant = rng.choices(merchants, weights=weights)[0]
            buyer = f"b_{rng.randrange(n // 3 + 1):08x}"
            created = now - (timedelta(hours=rng.uniform(0, 96)) if waiting
                             else timedelta(days=rng.uniform(4, 60)))
            if status == "auto_approved":
                level = "low"
            else:
                level = _pick(rng, (("high", 50), ("medium", 35), ("low", 15)))
            score = {"low": rng.randrange(0, 35), "medium": rng.randrange(35, 70),
                     "high": rng.randrange(70, 101)}[level]
            if status != "auto_approved" and rng.random() < 0.01:  # analysis failed
                score, level = None, None
            codes = _pick(rng, CODES[level]) if level else ()
            order_id, claim_id = new_id("ord"), new_id("clm")
            amount = rng.randrange(500, 50000)
            orders.append({"id": order_id, "merchant_id": merchant, "buyer": buyer,
                           "amount_cents": amount, "currency": "CNY",
                           "items": [{"sku": "SKU-1", "quantity": 1}],
                           "delivered_at": created - timedelta(days=2),
                           "created_at": created - timedelta(days=4)})
            due = None
            if status == "in_review":
                due = created + timedelta(hours=24)
            elif status == "appealed":
                due = created + timedelta(hours=48)
            claims.append({
                "id": claim_id, "order_id": order_id, "merchant_id": merchant, "buyer": buyer,
                "type": rng.choice(("refund_only", "return_refund")), "reason": "破损",
                "amount_cents": amount, "currency": "CNY", "status": status,
                "route": "auto_approved" if status == "auto_approved" else "in_review",
                "route_reasons": [], "risk_score": score, "risk_level": level,
                "recommendation": "review", "risk": None if score is None else
                {"score": score, "level": level, "reasons": [{"code": c} for c in codes]},
                "review_due_at": due,
                "merchant_response_due_at": due and due - timedelta(hours=12),
                "evidence_due_at": created + timedelta(hours=72)
                if status == "evidence_requested" else None,
                "decided_at": None if waiting else created + timedelta(hours=20),
                "created_at": created, "updated_at": created})
            analysis = analyses.make(codes, score, level)
            photo_bytes += len(json.dumps(analysis))
            photo_id = new_id("pho")
            codes_rows += [{"photo_id": photo_id, "claim_id": claim_id, "code": c}
                           for c in codes]  # as claims/analyzer.py stores them
            photos.append({"id": photo_id, "claim_id": claim_id, "position": 0,
                           "role": "claim", "sha256": f"{rng.getrandbits(256):064x}",
                           "filename": "IMG_0001.jpg", "content_type": "image/jpeg",
                           "width": 4000, "height": 3000, "analysis": analysis,
                           "risk_score": score, "risk_level": level,
                           "analyzed_at": created, "created_at": created})
            if status in ("auto_approved", "approved", "rejected", "appealed"):
                kind = "policy" if status == "auto_approved" or \
                    (status == "appealed" and rng.random() < 0.3) else "person"
                decisions.append({
                    "id": new_id("dec"), "claim_id": claim_id, "reason": "",
                    "outcome": "rejected" if status == "rejected" or
                    (status == "appealed" and kind == "person") else "approved",
                    "actor": "policy" if kind == "policy" else "user:rev", "kind": kind,
                    "created_at": created + timedelta(hours=20)})
            if status == "appealed":
                appeals.append({"id": new_id("apl"), "claim_id": claim_id, "reason": "不同意",
                                "actor": "key:intake", "status": "open",
                                "created_at": created + timedelta(hours=24)})
        with svc.db.write() as session:
            for table, rows in ((Order, orders), (Claim, claims), (ClaimPhoto, photos),
                                (PhotoCode, codes_rows), (Decision, decisions),
                                (Appeal, appeals)):
                if rows:
                    session.execute(insert(table), rows)
    return {"merchants": merchants, "counts": counts,
            "analysis_bytes": photo_bytes // max(1, n)}


# --- measuring ---------------------------------------------------------------------------

class SqlMeter:
    """Counts and times the SQL statements the service sends, and keeps the last request's."""

    def __init__(self, svc: Service) -> None:
        self.statements: list[tuple[str, Any, float]] = []
        for engine in {svc.db.engine, svc.db.read_engine}:
            event.listen(engine, "before_cursor_execute", self._before)
            event.listen(engine, "after_cursor_execute", self._after)

    def _before(self, conn: Any, cursor: Any, statement: str, parameters: Any,
                context: Any, executemany: bool) -> None:
        conn.info.setdefault("bench_started", []).append(time.perf_counter())

    def _after(self, conn: Any, cursor: Any, statement: str, parameters: Any,
               context: Any, executemany: bool) -> None:
        took = time.perf_counter() - conn.info["bench_started"].pop()
        self.statements.append((statement, parameters, took))


def _pct(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def requests_for(info: dict[str, Any], waiting: int, claim_id: str) -> list[tuple[str, str]]:
    last = max(1, -(-waiting // 50))
    big, small = info["merchants"][0], info["merchants"][-1]
    return [
        ("console queue, first page", "/console/queue"),
        (f"console queue, last page ({last})", f"/console/queue?page={last}"),
        ("console: largest merchant", f"/console/queue?merchant={big}"),
        ("console: smallest merchant", f"/console/queue?merchant={small}"),
        ("console: risk level high", "/console/queue?level=high"),
        (f"console: code {COMMON_CODE}", f"/console/queue?code={COMMON_CODE}"),
        (f"console: code {RARE_CODE}", f"/console/queue?code={RARE_CODE}"),
        ("console: age ≥ 24 h", "/console/queue?age=24"),
        ("console: status=appealed", "/console/queue?status=appealed"),
        ("console: merchant+high+24 h, page 3",
         f"/console/queue?merchant={big}&level=high&age=24&page=3"),
        ("console: claim page opened deep in the queue",
         f"/console/claims/{claim_id}?i={waiting - 2}"),
        ("API GET /queue", "/api/v1/queue"),
        ("API GET /queue, last offset", f"/api/v1/queue?offset={max(0, waiting - 50)}"),
        (f"API GET /queue?code={COMMON_CODE}", f"/api/v1/queue?code={COMMON_CODE}"),
        ("API GET /claims (newest first)", "/api/v1/claims"),
        ("API GET /claims?status=in_review&sort=risk",
         "/api/v1/claims?status=in_review&sort=risk"),
    ]


_READS_CLAIMS = re.compile(r"\bFROM (claims|claim_photos|photo_codes|decisions|merchants)\b")


def explain(svc: Service, statement: str, parameters: Any) -> list[str]:
    sqlite = svc.db.is_sqlite
    prefix = "EXPLAIN QUERY PLAN " if sqlite else "EXPLAIN (ANALYZE, COSTS OFF) "
    with svc.db.read_engine.connect() as conn:
        rows = conn.exec_driver_sql(prefix + statement, parameters).all()
    if sqlite:  # (id, parent, notused, detail): indent by depth
        depth: dict[int, int] = {}
        lines = []
        for node, parent, _, detail in rows:
            depth[node] = depth.get(parent, -1) + 1
            lines.append("  " * depth[node] + detail)
        return lines
    return [r[0] for r in rows]


def verdicts(sql: str, lines: list[str]) -> list[str]:
    """Full table scans and sorts in a plan. A sort is of every row the query matched,
    except SQLite's top-level sort in a page query (the rows of the page's ids); PostgreSQL
    says how many rows went into each sort."""
    found = []
    for i, line in enumerate(lines):
        s = line.strip()
        m = re.match(r"SCAN (\w+)$", s) or re.search(r"Seq Scan on (\w+)", s)
        if m:
            found.append(f"full scan of {m.group(1)}")
        if "TEMP B-TREE FOR ORDER BY" in s:
            page = line == s and " IN (SELECT claims.id " in sql
            found.append("sorts the page's rows" if page else "sorts every matching row")
        if re.match(r"(->\s+)?(Incremental )?Sort \(", s):
            child = next((c for c in lines[i + 1:] if c.strip().startswith("->")), "")
            m = re.search(r"rows=(\d+) loops=(\d+)", child)
            rows = int(m.group(1)) * int(m.group(2)) if m else 0
            found.append(f"sorts {rows:,} rows")
    return found


def measure(svc: Service, client: TestClient, requests: list[tuple[str, str]],
            repeat: int, meter: SqlMeter, *, api_key: dict[str, str], plans: bool
            ) -> list[dict[str, Any]]:
    """The console requests carry the signed-in reviewer's cookie, the API's its key."""
    results = []
    for name, path in requests:
        headers = api_key if path.startswith("/api/") else {}
        for _ in range(2):
            client.get(path, headers=headers)
        samples, sql = [], []
        for _ in range(repeat):
            meter.statements.clear()
            started = time.perf_counter()
            response = client.get(path, headers=headers)
            samples.append(time.perf_counter() - started)
            assert response.status_code == 200, (path, response.status_code, response.text)
            sql.append(sum(s[2] for s in meter.statements))
        statements = list(meter.statements)
        row = {"name": name, "path": path, "p50_ms": 1000 * statistics.median(samples),
               "p95_ms": 1000 * _pct(samples, 0.95), "sql_ms": 1000 * statistics.median(sql),
               "statements": len(statements), "plans": []}
        if plans:
            for statement, parameters, took in statements:
                if statement.lstrip().upper().startswith("SELECT") and \
                        _READS_CLAIMS.search(statement):
                    lines = explain(svc, statement, parameters)
                    row["plans"].append({"sql": statement, "ms": 1000 * took, "plan": lines,
                                         "flags": verdicts(statement, lines)})
        results.append(row)
    return results


# --- databases ---------------------------------------------------------------------------

class Postgres:
    """A throwaway cluster, one database per run."""

    def __init__(self) -> None:
        from pgserver import PostgresServer

        self.server = PostgresServer()
        self.base = self.server.start()
        self.admin = create_engine(self.base, isolation_level="AUTOCOMMIT")

    def database(self, name: str) -> str:
        with self.admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name}"))
            conn.execute(text(f"CREATE DATABASE {name}"))
        return self.base.rsplit("/", 1)[0] + f"/{name}"

    def vacuum(self, url: str) -> None:
        engine = create_engine(url, isolation_level="AUTOCOMMIT")
        with engine.connect() as conn:
            conn.execute(text("VACUUM ANALYZE"))
        engine.dispose()

    def stop(self) -> None:
        self.admin.dispose()
        self.server.stop()


def run_one(database: str, n: int, analyses: Analyses, args: argparse.Namespace,
            pg: Postgres | None, tmp: Path) -> dict[str, Any]:
    url = pg.database(f"console_bench_{n}") if pg else \
        f"sqlite:///{tmp / f'console-{n}' / 'refundlens.db'}"
    settings = load_settings(environ={}, data_dir=tmp / f"data-{database}-{n}",
                             database_url=url, analysis_workers=0)
    svc = open_service(settings, migrate=True)
    try:
        started = time.perf_counter()
        info = seed(svc, n, analyses)
        seeded = time.perf_counter() - started
        if pg:
            pg.vacuum(url)
        create_user(svc, username="rev", password=PASSWORD, role="reviewer")
        _, token = create_key(svc, role="reviewer")
        with svc.db.read() as session:
            claim_id = session.execute(select(Claim.id).where(Claim.status == "in_review")
                                       .limit(1)).scalar_one()
        waiting = info["counts"].get("in_review", 0) + info["counts"].get("appealed", 0)
        app = create_app(settings, service=svc, workers=False)
        with TestClient(app) as client:
            done = sign_in(client, "rev")
            assert done.status_code == 303, done.text
            csrf_of(client.get("/console/queue").text)
            meter = SqlMeter(svc)
            baseline = [1000 * _timed(client, "/api/v1/health") for _ in range(20)]
            results = measure(svc, client, requests_for(info, waiting, claim_id),
                              args.repeat, meter,
                              api_key={"Authorization": f"Bearer {token}"}, plans=True)
        return {"database": database, "claims": n, "waiting": waiting, "seed_s": seeded,
                "counts": info["counts"], "analysis_bytes": info["analysis_bytes"],
                "client_overhead_ms": statistics.median(baseline), "results": results}
    finally:
        svc.close()


def _timed(client: TestClient, path: str) -> float:
    started = time.perf_counter()
    client.get(path)
    return time.perf_counter() - started


def _notable(sql: str, flag: str) -> bool:
    """For the summary: every full scan, and sorts of more than a page (500 rows, the
    largest limit) of the claims a list query matched."""
    if flag.startswith("full scan"):
        return True
    rows = re.match(r"sorts ([\d,]+) rows", flag)
    if rows:
        return int(rows.group(1).replace(",", "")) > 500
    return flag == "sorts every matching row" and "claims.status" in sql \
        and "claims.id = " not in sql


def report(run: dict[str, Any]) -> Iterator[str]:
    yield (f"\n## {run['database']}, {run['claims']:,} claims ({run['waiting']:,} waiting: "
           f"{run['counts'].get('in_review', 0):,} in review, "
           f"{run['counts'].get('appealed', 0):,} appealed); seeded in {run['seed_s']:.0f} s, "
           f"analysis JSON ~{run['analysis_bytes']:,} B a photo; /api/v1/health "
           f"{run['client_overhead_ms']:.1f} ms\n")
    yield "| request | p50 ms | p95 ms | SQL ms | statements | full scans, big sorts |"
    yield "|---|---|---|---|---|---|"
    for r in run["results"]:
        flags = sorted({f for p in r["plans"] for f in p["flags"] if _notable(p["sql"], f)})
        yield (f"| {r['name']} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['sql_ms']:.1f} | "
               f"{r['statements']} | {', '.join(flags) or '—'} |")
    seen: set[str] = set()
    yield ("\nPlans of the statements reading claims, their photos, codes, decisions or "
           "merchants (ms: that statement in the last timed request):")
    for r in run["results"]:
        for p in r["plans"]:
            key = re.sub(r"\s+", " ", p["sql"]) + "\n".join(p["plan"]) \
                if run["database"] == "sqlite" else r["name"] + p["sql"]
            if key in seen:
                continue
            seen.add(key)
            yield f"\n### {r['name']} — {p['ms']:.1f} ms {p['flags'] or ''}"
            yield re.sub(r"\s+", " ", p["sql"]).strip()
            yield from ("    " + line for line in p["plan"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--claims", default="10000,100000",
                        help="comma-separated claim counts (default 10000,100000)")
    parser.add_argument("--databases", default="sqlite,postgresql")
    parser.add_argument("--repeat", type=int, default=20, help="timed requests per row")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.claims.split(",") if s]
    databases = [d for d in args.databases.split(",") if d]
    unknown = set(databases) - {"sqlite", "postgresql"}
    if unknown:
        parser.error(f"--databases: got {', '.join(sorted(unknown))}; accepted: sqlite, "
                     f"postgresql")
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
          flush=True)
    analyses = Analyses(real_analysis())
    runs = []
    pg = Postgres() if "postgresql" in databases else None
    try:
        with tempfile.TemporaryDirectory(prefix="console-bench-") as tmp:
            for database in databases:
                for n in sizes:
                    run = run_one(database, n, analyses, args,
                                  pg if database == "postgresql" else None, Path(tmp))
                    runs.append(run)
                    for line in report(run):
                        print(line, flush=True)
    finally:
        if pg:
            pg.stop()
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.json:
        args.json.write_text(json.dumps(runs, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())

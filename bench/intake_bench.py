"""Intake benchmark: claims per second and latency of ``POST /api/v1/claims`` against a real
``refundlens serve`` on SQLite, from a load generator on the same machine.

    .venv/bin/python bench/intake_bench.py [--duration 30] [--concurrency 8]
        [--photos small,phone] [--analysis 0,1] [--api-processes 1,2] [--rate R]
        [--json FILE]

Each claim carries 3 photos. ``phone``: three real phone JPEGs from
../shared/data/camera_exif (iPhone HDR off/on 3264×2448, 1.96 and 1.98 MB; HMD Nokia 8.3
4608×1976, 2.19 MB) — 6.1 MB a claim; ``small``: the same photos downscaled to 1024 px
on the long side at quality 85 (≈ 0.1–0.2 MB each). Every claim's photos are made unique
(a JPEG comment segment with the claim's number, inserted after the APP segments) so the
content-addressed blob store writes every one of them, as with real buyers.

For each (photos, analysis) case the script starts a fresh ``refundlens serve`` (data in a
new temporary directory, ``--workers 0`` = intake alone, ``--workers 1`` = one analysis
process beside the API, the default deployment), creates an admin key, a merchant, a product
with a listing photo and an order, warms up for 3 s, then runs for ``--duration`` seconds:

- closed loop (default): ``--concurrency`` clients, each sending its next claim as soon as
  the last one is answered — the sustained throughput;
- open loop (``--rate R``): claims start at R a second whatever the answers — the latency
  at that offered load (a closed loop understates tail latency under overload).

Reports claims/s (answered 202 in the window / window), p50/p95/p99/max latency in ms, and
errors. Results and the command go in docs/benchmarks.md ("Claims service").
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
REFUNDLENS = Path(sys.executable).with_name("refundlens")
PHONE = [SHARED / "camera_exif" / "jpg" / "hdr" / "iphone_hdr_NO.jpg",
         SHARED / "camera_exif" / "jpg" / "hdr" / "iphone_hdr_YES.jpg",
         SHARED / "camera_exif" / "jpg" / "mobile" / "HMD_Nokia_8.3_5G.jpg"]


# --- photos --------------------------------------------------------------------------------

def phone_photos() -> list[bytes]:
    return [path.read_bytes() for path in PHONE]


def small_photos() -> list[bytes]:
    from PIL import Image

    out = []
    for path in PHONE:
        with Image.open(path) as im:
            im = im.convert("RGB")
            im.thumbnail((1024, 1024), Image.LANCZOS)
            buffer = io.BytesIO()
            im.save(buffer, format="JPEG", quality=85)
            out.append(buffer.getvalue())
    return out


def split_after_app_segments(jpeg: bytes) -> tuple[bytes, bytes]:
    """``jpeg`` cut after SOI and its APPn segments (EXIF stays first, as the spec wants)."""
    assert jpeg[:2] == b"\xff\xd8", "not a JPEG"
    pos = 2
    while jpeg[pos] == 0xFF and 0xE0 <= jpeg[pos + 1] <= 0xEF:
        pos += 2 + int.from_bytes(jpeg[pos + 2:pos + 4], "big")
    return jpeg[:pos], jpeg[pos:]


def comment_segment(text: str) -> bytes:
    body = text.encode()
    return b"\xff\xfe" + (len(body) + 2).to_bytes(2, "big") + body


class ClaimBodies:
    """Multipart bodies for claims with 3 unique photos each, built by joining bytes (cheap:
    the load generator shares the server's two cores)."""

    def __init__(self, photos: list[bytes], order_id: str) -> None:
        self.parts = [split_after_app_segments(p) for p in photos]
        self.boundary = "----refundlens-bench-" + uuid.uuid4().hex
        self.content_type = f"multipart/form-data; boundary={self.boundary}"
        b = self.boundary.encode()
        fields = {"order_id": order_id, "type": "refund_only", "reason": "商品破损",
                  "amount": "10.00"}
        self.head = b"".join(
            b"--" + b + b"\r\nContent-Disposition: form-data; name=\"" + k.encode() +
            b"\"\r\n\r\n" + v.encode() + b"\r\n" for k, v in fields.items())
        self.tail = b"--" + b + b"--\r\n"
        self.file_head = [b"--" + b + b"\r\nContent-Disposition: form-data; name=\"photos\"; "
                          b"filename=\"IMG_" + str(i).encode() + b".jpg\"\r\nContent-Type: "
                          b"image/jpeg\r\n\r\n" for i in range(len(photos))]
        self.bytes_per_claim = len(self.body(0))

    def body(self, n: int) -> bytes:
        chunks = [self.head]
        for i, (head, rest) in enumerate(self.parts):
            chunks += [self.file_head[i], head, comment_segment(f"bench claim {n} photo {i}"),
                       rest, b"\r\n"]
        chunks.append(self.tail)
        return b"".join(chunks)


# --- the server ----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    def __init__(self, data_dir: Path, *, analysis: int, api_processes: int,
                 extra_env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.env = {**os.environ, "REFUNDLENS_DATA_DIR": str(data_dir),
                    "REFUNDLENS_INTAKE_RATE": "0", **extra_env}
        self.env.pop("REFUNDLENS_DATABASE_URL", None)  # this benchmark is about SQLite
        self.analysis = analysis
        self.api_processes = api_processes
        self.log = open(data_dir.parent / "serve.log", "ab")
        self.proc: subprocess.Popen[bytes] | None = None

    def cli(self, *args: str) -> str:
        done = subprocess.run([str(REFUNDLENS), *args], env=self.env, capture_output=True,
                              text=True, check=True)
        return done.stdout

    def start(self) -> None:
        import httpx

        self.proc = subprocess.Popen(
            [str(REFUNDLENS), "serve", "--host", "127.0.0.1", "--port", str(self.port),
             "--workers", str(self.analysis), "--api-processes", str(self.api_processes)],
            env=self.env, stdout=self.log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"refundlens serve exited with {self.proc.returncode}")
            try:
                if httpx.get(self.url + "/api/v1/health", timeout=1).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        raise SystemExit("refundlens serve did not become healthy in 60 s")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def setup_catalog(url: str, headers: dict[str, str], listing: bytes) -> str:
    import httpx

    with httpx.Client(base_url=url, headers=headers, timeout=30) as http:
        merchant = http.post("/api/v1/merchants", json={"name": "压测店"}).json()["id"]
        product = http.post(f"/api/v1/merchants/{merchant}/products",
                            json={"sku": "BENCH-1", "name": "Bench product"}).json()["id"]
        http.post(f"/api/v1/products/{product}/references",
                  files={"file": ("listing.jpg", listing, "image/jpeg")}).raise_for_status()
        order = http.post("/api/v1/orders", json={
            "merchant_id": merchant, "buyer_id": "bench-buyer", "amount": "1000000.00",
            "items": [{"sku": "BENCH-1", "quantity": 1}],
            "shipped_at": "2026-11-01T10:00:00+08:00",
            "delivered_at": "2026-11-03T10:00:00+08:00"})
        order.raise_for_status()
        return order.json()["id"]


# --- the load ------------------------------------------------------------------------------

class Recorder:
    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.started: list[float] = []  # when each answered claim was sent (perf_counter)
        self.errors: dict[str, int] = {}
        self.counter = 0
        self.window: tuple[float, float] = (0.0, 0.0)

    def next_id(self) -> int:
        self.counter += 1
        return self.counter


async def one_claim(client: Any, bodies: ClaimBodies, rec: Recorder, headers: dict[str, str],
                    record: bool) -> None:
    import httpx

    body = bodies.body(rec.next_id())
    start = time.perf_counter()
    try:
        response = await client.post("/api/v1/claims", content=body,
                                     headers={**headers, "Content-Type": bodies.content_type})
        status = str(response.status_code)
    except httpx.HTTPError as exc:
        status = type(exc).__name__
    elapsed = time.perf_counter() - start
    if not record:
        return
    if status == "202":
        rec.latencies.append(elapsed)
        rec.started.append(start)
    else:
        rec.errors[status] = rec.errors.get(status, 0) + 1


async def run_load(url: str, headers: dict[str, str], bodies: ClaimBodies, *, duration: float,
                   concurrency: int, rate: float | None, warmup: float) -> Recorder:
    import httpx

    rec = Recorder()
    limits = httpx.Limits(max_connections=max(concurrency, 64),
                          max_keepalive_connections=max(concurrency, 64))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        start = time.perf_counter()
        measure_from, measure_to = start + warmup, start + warmup + duration
        rec.window = (measure_from, measure_to)

        if rate is None:
            async def loop() -> None:
                while True:
                    now = time.perf_counter()
                    if now >= measure_to:
                        return
                    await one_claim(client, bodies, rec, headers, record=now >= measure_from)
            await asyncio.gather(*(loop() for _ in range(concurrency)))
        else:
            tasks = []
            n = 0
            while True:
                due = start + n / rate
                if due >= measure_to:
                    break
                delay = due - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(
                    one_claim(client, bodies, rec, headers, record=due >= measure_from)))
                n += 1
            await asyncio.gather(*tasks)
            rec.window = (measure_from, max(measure_to, time.perf_counter()))
    return rec


def _stat(pid: int) -> list[str]:
    """``/proc/PID/stat`` after the command name: [state, ppid, …] (proc(5) fields 3…)."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def serving_cpu_s(pid: int) -> float:
    """User + system CPU seconds of ``refundlens serve`` (``pid``) and its descendants that
    are not analysis processes (those run at nice 10): the API process(es) and, with
    ``--api-processes N``, the supervising process with the job workers' threads."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(_stat(int(entry.name))[1])
            except (OSError, ValueError, IndexError):
                continue
    tree, grew = {pid}, True
    while grew:
        grew = False
        for child, parent in parents.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    total = 0.0
    for member in tree:
        try:
            fields = _stat(member)
        except OSError:
            continue
        if int(fields[16]) == 0:  # nice
            total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def count_rows(data_dir: Path) -> dict[str, int]:
    import sqlite3

    with sqlite3.connect(data_dir / "refundlens.db") as conn:
        return {table: conn.execute(f"select count(*) from {table}").fetchone()[0]
                for table in ("claims", "claim_photos", "jobs")}


def run_case(photos_kind: str, analysis: int, api_processes: int,
             args: argparse.Namespace) -> dict[str, Any]:
    photos = phone_photos() if photos_kind == "phone" else small_photos()
    with tempfile.TemporaryDirectory(prefix="refundlens-intake-") as tmp:
        data_dir = Path(tmp) / "data"
        data_dir.mkdir()
        server = Server(data_dir, analysis=analysis, api_processes=api_processes,
                        extra_env=dict(args.env))
        try:
            token = server.cli("keys", "create", "--role", "intake").strip().splitlines()[-1]
            admin = server.cli("keys", "create", "--role", "admin").strip().splitlines()[-1]
            server.start()
            order_id = setup_catalog(server.url, {"Authorization": f"Bearer {admin}"},
                                     small_photos()[0])
            bodies = ClaimBodies(photos, order_id)
            headers = {"Authorization": f"Bearer {token}"}
            cpu0, server0 = os.times(), serving_cpu_s(server.proc.pid)
            rec = asyncio.run(run_load(server.url, headers, bodies, duration=args.duration,
                                       concurrency=args.concurrency, rate=args.rate,
                                       warmup=args.warmup))
            cpu1, server1 = os.times(), serving_cpu_s(server.proc.pid)
            rows = count_rows(data_dir)
        finally:
            server.stop()
    window = rec.window[1] - rec.window[0]
    lat = rec.latencies
    result = {
        "photos": photos_kind, "analysis_workers": analysis, "api_processes": api_processes,
        "mode": f"open loop {args.rate:g}/s" if args.rate else
                f"closed loop, {args.concurrency} clients",
        "bytes_per_claim": bodies.bytes_per_claim, "seconds": round(window, 1),
        "claims": len(lat), "claims_per_s": round(len(lat) / window, 1),
        "p50_ms": round(1000 * statistics.median(lat), 1) if lat else None,
        "p95_ms": round(1000 * percentile(lat, 0.95), 1) if lat else None,
        "p99_ms": round(1000 * percentile(lat, 0.99), 1) if lat else None,
        "max_ms": round(1000 * max(lat), 1) if lat else None,
        "errors": rec.errors,
        "client_cpu_s": round((cpu1.user - cpu0.user) + (cpu1.system - cpu0.system), 1),
        # the serving processes, analysis excluded (warm-up included)
        "api_cpu_ms_per_claim": round(1000 * (server1 - server0) / max(1, rec.counter), 1),
        "rows_after": rows,
        "timeline": timeline(rec),
    }
    return result


def timeline(rec: Recorder) -> list[dict[str, Any]]:
    """Per second of the window: claims sent that second and their median and slowest
    latency (ms) — whether a slow tail is spread out or one stall."""
    seconds: dict[int, list[float]] = {}
    for sent, latency in zip(rec.started, rec.latencies):
        seconds.setdefault(int(sent - rec.window[0]), []).append(latency)
    return [{"second": s, "claims": len(lat), "p50_ms": round(1000 * statistics.median(lat)),
             "max_ms": round(1000 * max(lat))} for s, lat in sorted(seconds.items())]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=30.0, help="measured seconds")
    parser.add_argument("--warmup", type=float, default=3.0)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rate", type=float, default=None,
                        help="open loop: claims started per second (default: closed loop)")
    parser.add_argument("--photos", default="small,phone",
                        help="comma-separated cases: small, phone")
    parser.add_argument("--analysis", default="0,1",
                        help="comma-separated analysis process counts for serve --workers")
    parser.add_argument("--api-processes", default="1",
                        help="comma-separated counts for serve --api-processes")
    parser.add_argument("--env", action="append", default=[], type=lambda s: s.split("=", 1),
                        metavar="NAME=VALUE", help="extra environment for the server")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args()
    results = []
    print("| photos (3 a claim) | analysis workers | API processes | load | claims/s | "
          "p50 ms | p95 ms | p99 ms | max ms | errors | API CPU ms/claim |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for kind in args.photos.split(","):
        for analysis in (int(a) for a in args.analysis.split(",")):
            for api in (int(a) for a in args.api_processes.split(",")):
                r = run_case(kind, analysis, api, args)
                results.append(r)
                print(f"| {kind} ({r['bytes_per_claim'] / 1e6:.2f} MB) | {analysis} | {api} | "
                      f"{r['mode']} | "
                      f"{r['claims_per_s']} | {r['p50_ms']} | {r['p95_ms']} | {r['p99_ms']} | "
                      f"{r['max_ms']} | {r['errors'] or 0} | {r['api_cpu_ms_per_claim']} |",
                      flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()

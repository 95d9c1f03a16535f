"""Helpers for the console tests: signing in through the forms, a live ``refundlens serve``
started in a subprocess with its own data directory, and seeding it through the API."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from conftest import jpeg, textured_rgb
from serving import REFUNDLENS, Server

PASSWORD = "correct horse battery"
CHROMIUM = "/usr/bin/chromium"


def csrf_of(html: str) -> str:
    """The CSRF token a page carries (meta tag, or the sign-in form's hidden field)."""
    found = re.search(r'<meta name="csrf-token" content="([^"]+)"', html) or \
        re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def sign_in(client: Any, username: str, password: str = PASSWORD, **extra: str) -> Any:
    """Sign in through the form; returns the response to the POST (a redirect when it
    worked)."""
    form = client.get("/console/login")
    assert form.status_code == 200, form.text
    return client.post("/console/login", data={"username": username, "password": password,
                                               "csrf_token": csrf_of(form.text), **extra},
                       follow_redirects=False)


def stain(reference: np.ndarray) -> np.ndarray:
    """The reference photo with a brown 'stain' painted on its upper left."""
    stained = reference.copy()
    h, w = stained.shape[:2]
    yy, xx = np.mgrid[0:h, 0:w]
    blob = ((xx - w // 4) ** 2 / (w // 10) ** 2 + (yy - h // 3) ** 2 / (h // 9) ** 2) < 1
    stained[blob] = (0.45 * stained[blob] + 0.55 * np.array([92, 60, 30])).astype(np.uint8)
    return stained


@dataclass
class LiveServer:
    """A real ``refundlens serve`` (workers on) in a subprocess, with keys and users."""

    data_dir: Path
    server: Server | None = None
    keys: dict[str, dict[str, str]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        assert self.server is not None, "start() the server first"
        return self.server.url

    def env(self) -> dict[str, str]:
        return {**os.environ, "REFUNDLENS_DATA_DIR": str(self.data_dir),
                "REFUNDLENS_ANALYSIS_WORKERS": "1", "PYTHONUNBUFFERED": "1"}

    def cli(self, *args: str) -> str:
        done = subprocess.run([str(REFUNDLENS), *args], env=self.env(), capture_output=True,
                              text=True, timeout=120)
        assert done.returncode == 0, f"refundlens {' '.join(args)}: {done.stderr}"
        return done.stdout

    def start(self) -> "LiveServer":
        self.server = Server(self.env(), self.data_dir / "serve.log", "--workers", "1")
        self.server.start(timeout=90)
        for role in ("admin", "intake"):
            token = self.cli("keys", "create", "--role", role).strip().splitlines()[-1]
            self.keys[role] = {"Authorization": f"Bearer {token}"}
        return self

    def log(self) -> str:
        path = self.server.log if self.server else None
        return path.read_text(errors="replace")[-4000:] if path and path.exists() else ""

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()

    def api(self, method: str, path: str, *, role: str = "admin", **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.url}/api/v1{path}", headers=self.keys[role],
                                 timeout=60, **kwargs)
        return response

    def seed_merchant(self, name: str, seed: int) -> dict[str, Any]:
        """A merchant with a product, its listing photo and an order."""
        merchant = self.api("POST", "/merchants", json={"name": name}).json()["id"]
        product = self.api("POST", f"/merchants/{merchant}/products",
                           json={"sku": f"SKU-{seed}", "name": f"{name} 商品"}).json()["id"]
        reference = textured_rgb(800, 600, seed=seed)
        added = self.api("POST", f"/products/{product}/references",
                         files={"file": ("listing.jpg", jpeg(reference, 92), "image/jpeg")})
        assert added.status_code == 201, added.text
        return {"merchant_id": merchant, "product_id": product, "reference": reference,
                "sku": f"SKU-{seed}"}

    def file_claim(self, shop: dict[str, Any], buyer: str, photo: bytes) -> str:
        order = self.api("POST", "/orders", role="intake", json={
            "merchant_id": shop["merchant_id"], "buyer_id": buyer, "amount": "129.00",
            "items": [{"sku": shop["sku"], "quantity": 1}],
            "shipped_at": "2026-11-01T10:00:00+08:00",
            "delivered_at": "2026-11-03T10:00:00+08:00"})
        assert order.status_code == 201, order.text
        claim = self.api("POST", "/claims", role="intake", data={
            "order_id": order.json()["id"], "type": "refund_only", "reason": "瓶身破裂",
            "amount": "129.00"}, files=[("photos", ("photo.jpg", photo, "image/jpeg"))])
        assert claim.status_code == 202, claim.text
        return str(claim.json()["id"])

    def wait_for(self, claim_ids: list[str], statuses: tuple[str, ...],
                 timeout: float = 240) -> dict[str, dict[str, Any]]:
        deadline = time.monotonic() + timeout
        found: dict[str, dict[str, Any]] = {}
        while time.monotonic() < deadline:
            found = {cid: self.api("GET", f"/claims/{cid}").json() for cid in claim_ids}
            if all(d["status"] in statuses for d in found.values()):
                return found
            time.sleep(1)
        raise AssertionError(f"claims not {statuses} in {timeout} s: "
                             f"{ {k: v['status'] for k, v in found.items()} }\n{self.log()}")


def save_screenshot(page: Any, directory: Path, name: str) -> Path:
    """A full-page screenshot in ``directory`` (and REFUNDLENS_SCREENSHOTS_DIR if set)."""
    path = directory / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    extra = os.environ.get("REFUNDLENS_SCREENSHOTS_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, Path(extra) / path.name)
    return path

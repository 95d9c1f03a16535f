"""Secrets: API keys, console passwords, buyer pseudonyms, PII encryption, webhook signatures.

- API keys are ``rl_<id>_<secret>`` with 256 random bits of secret. Only the SHA-256 of the
  secret is stored: a key has full entropy, so a slow hash adds nothing (NIST SP 800-63B
  §5.1.1.2 asks for a slow hash only for memorised secrets).
- Console passwords are memorised secrets: scrypt (RFC 7914) with n=2^15, r=8, p=1 and a
  16-byte salt, the parameters OWASP's password storage cheat sheet lists for scrypt.
- Buyer ids are pseudonymised with HMAC-SHA256 under a deployment key, so buyer history
  can be shared across merchants without the platform's raw id.
- Buyer personal data is sealed with AES-256-GCM (NIST SP 800-38D), a fresh 96-bit nonce
  per value; the ciphertext names its key id, so keys can be rotated: new values use the
  first key, old values stay readable while their key is still listed.
- Webhook bodies are signed ``t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>``; a
  receiver checks the time to refuse replays.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from .errors import ConfigError, RefundLensError

__all__ = [
    "ApiKeyParts", "PiiCipher", "PiiError", "Pseudonymizer", "generate_api_key",
    "hash_password", "hash_secret", "load_or_create_key", "parse_api_key", "sign_webhook",
    "verify_password", "verify_webhook",
]

KEY_PREFIX = "rl"
_SCRYPT = {"n": 2**15, "r": 8, "p": 1}


class PiiError(RefundLensError):
    """Sealed personal data cannot be opened (unknown key id, tampered, not ours)."""

    code = "pii_error"


# --- API keys ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ApiKeyParts:
    key_id: str
    secret: str

    @property
    def token(self) -> str:
        return f"{KEY_PREFIX}_{self.key_id}_{self.secret}"


def generate_api_key() -> ApiKeyParts:
    return ApiKeyParts(key_id="key" + secrets.token_hex(6), secret=secrets.token_urlsafe(32))


def parse_api_key(token: str) -> ApiKeyParts | None:
    """The parts of a well-formed key, or None (the caller answers 401 either way)."""
    prefix, _, rest = token.strip().partition("_")
    key_id, _, secret = rest.partition("_")
    if prefix != KEY_PREFIX or not key_id or not secret:
        return None
    return ApiKeyParts(key_id, secret)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


# --- passwords ---------------------------------------------------------------------------

def hash_password(password: str) -> str:
    salt = os.urandom(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, maxmem=64 * 1024 * 1024, **_SCRYPT)
    return "scrypt${n}${r}${p}${salt}${digest}".format(
        **_SCRYPT, salt=base64.b64encode(salt).decode(), digest=base64.b64encode(digest).decode())


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = base64.b64decode(digest)
        got = hashlib.scrypt(password.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=64 * 1024 * 1024, dklen=len(expected))
    except (ValueError, binascii.Error):
        return False
    return hmac.compare_digest(got, expected)


# --- keys from the environment -----------------------------------------------------------

def load_or_create_key(value: str | None, *, name: str, file: Path | None) -> bytes:
    """A 32-byte key: from ``value`` (base64 or 64 hex digits, e.g. an environment
    variable), else from ``file``, created with 0600 permissions on first use (the embedded
    default, so ``refundlens serve`` works with no set-up; production sets the variable)."""
    if value:
        return _decode_key(value, name=name)
    if file is None:
        raise ConfigError(f"setting {name}: not set; expected a 32-byte key as base64 or hex")
    if file.exists():
        return _decode_key(file.read_text().strip(), name=str(file))
    file.parent.mkdir(parents=True, exist_ok=True)
    key = os.urandom(32)
    fd = os.open(file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(base64.b64encode(key).decode() + "\n")
    return key


def _decode_key(text: str, *, name: str) -> bytes:
    text = text.strip()
    try:
        key = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
    except (ValueError, binascii.Error):
        key = b""
    if len(key) != 32:
        raise ConfigError(f"key {name}: expected 32 bytes as base64 (44 characters) or "
                          f"64 hex digits; got {len(text)} characters that do not decode "
                          f"to 32 bytes")
    return key


# --- pseudonyms and PII ------------------------------------------------------------------

class Pseudonymizer:
    """``b_`` + 32 hex digits of HMAC-SHA256(key, platform buyer id)."""

    #: the form of every pseudonym: ``b_`` and 32 lowercase hex digits
    PATTERN = re.compile(r"b_[0-9a-f]{32}")

    def __init__(self, key: bytes) -> None:
        self._key = key

    def __call__(self, buyer_id: str) -> str:
        return "b_" + hmac.new(self._key, buyer_id.encode(), hashlib.sha256).hexdigest()[:32]

    @classmethod
    def is_pseudonym(cls, value: str) -> bool:
        """Whether ``value`` has exactly the form of a pseudonym (under any key)."""
        return cls.PATTERN.fullmatch(value) is not None


class PiiCipher:
    """Seal and open short strings with AES-256-GCM. ``keys[0]`` seals; all open."""

    def __init__(self, *keys: bytes) -> None:
        if not keys:
            raise ConfigError("PII cipher: at least one key is needed")
        self._keys = {self.key_id(k): AESGCM(k) for k in keys}
        self._current = self.key_id(keys[0])

    @staticmethod
    def key_id(key: bytes) -> str:
        return hashlib.sha256(b"refundlens-pii-key-id" + key).hexdigest()[:8]

    def seal(self, plaintext: str, *, context: str = "") -> str:
        nonce = os.urandom(12)
        sealed = self._keys[self._current].encrypt(nonce, plaintext.encode(), context.encode())
        return f"v1:{self._current}:{base64.b64encode(nonce + sealed).decode()}"

    def open(self, token: str, *, context: str = "") -> str:
        try:
            version, key_id, payload = token.split(":", 2)
            raw = base64.b64decode(payload, validate=True)
        except (ValueError, binascii.Error):
            raise PiiError("sealed value: not a RefundLens ciphertext (expected v1:<key>:<b64>)") \
                from None
        if version != "v1" or key_id not in self._keys:
            raise PiiError(f"sealed value: key {key_id!r} is not configured; known: "
                           f"{', '.join(sorted(self._keys))}")
        if len(raw) < 12 + 16:  # a nonce and a tag at least
            raise PiiError(f"sealed value: {len(raw)} bytes of payload, too short for a "
                           f"nonce and a tag (28 bytes)")
        try:
            return self._keys[key_id].decrypt(raw[:12], raw[12:], context.encode()).decode()
        except InvalidTag:
            raise PiiError("sealed value: authentication failed (tampered or wrong context)") \
                from None


# --- webhooks ----------------------------------------------------------------------------

def sign_webhook(secret: str, body: bytes, *, timestamp: int | None = None) -> str:
    t = int(time.time()) if timestamp is None else timestamp
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def verify_webhook(secret: str, body: bytes, header: str, *, tolerance_s: int = 300,
                   now: float | None = None) -> bool:
    """True when ``header`` signs ``body`` with ``secret`` within ``tolerance_s``."""
    try:
        parts = dict(item.split("=", 1) for item in header.split(","))
        t = int(parts["t"])
        mac = parts["v1"]
    except (ValueError, KeyError):
        return False
    if abs((time.time() if now is None else now) - t) > tolerance_s:
        return False
    expected = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    # bytes: compare_digest refuses non-ASCII str (a garbage header must be False, not raise)
    return hmac.compare_digest(expected.encode(), mac.encode())

"""Settings: one frozen object, built from ``REFUNDLENS_*`` environment variables with
working defaults, and passed down. Nothing here runs at import time.

Every setting is listed once, in :data:`SETTINGS`; ``docs/settings.md`` is generated from it
and a test fails when the two drift.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Callable, Mapping
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from .errors import ConfigError
from .imaging import DEFAULT_MAX_BYTES, DEFAULT_MAX_PIXELS

__all__ = ["DEFAULT_TIMEZONE", "SETTINGS", "Settings", "load_settings", "make_data_dir",
           "time_zone"]


#: The zone times are shown in when none is set: the platforms this serves run on China
#: Standard Time.
DEFAULT_TIMEZONE = "Asia/Shanghai"


@dataclass(frozen=True)
class Settings:
    """Runtime settings. Build with :func:`load_settings`; every field has a working default."""

    data_dir: Path = Path(".refundlens")
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pixels: int = DEFAULT_MAX_PIXELS
    detectors: tuple[str, ...] = ()
    c2pa_trust_anchors: Path | None = None
    ocr: bool = True
    timezone: str = DEFAULT_TIMEZONE
    workers: int = 1
    database_url: str = ""
    pii_keys: tuple[str, ...] = field(default=(), repr=False)
    pseudonym_key: str = field(default="", repr=False)
    policy_file: Path | None = None
    max_photos_per_claim: int = 9
    intake_rate: int = 200
    analysis_workers: int = 1
    api_processes: int = 1
    forwarded_allow_ips: str = "127.0.0.1"
    public_url: str = ""
    job_lease_s: int = 30
    webhook_allow_private: bool = False
    login_max_failures: int = 5
    login_address_max_failures: int = 25
    login_window_s: int = 900
    login_lockout_s: int = 900

    def __post_init__(self) -> None:
        self.zone  # an unknown time zone is refused here, at start-up, not on first use

    def with_(self, **changes: Any) -> "Settings":
        return replace(self, **changes)

    @property
    def zone(self) -> ZoneInfo:
        """The time zone the console and the reports show times in (``timezone``)."""
        return time_zone(self.timezone)


def make_data_dir(settings: Settings) -> Path:
    """The data directory, created (with its parents) when missing.

    Raises:
        ConfigError: it cannot be created (a file in the way, a read-only or virtual file
            system, no permission); the message names ``REFUNDLENS_DATA_DIR`` and the path.
    """
    path = Path(settings.data_dir)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        why = ("it is a file" if isinstance(exc, FileExistsError) else
               f"{exc.strerror}: {exc.filename}")
        raise ConfigError(f"setting REFUNDLENS_DATA_DIR={str(path)!r}: cannot create the "
                          f"directory ({why}); expected a directory that exists or can be "
                          f"created, writable by this user") from exc
    return path


def time_zone(name: str, *, setting: str = "REFUNDLENS_TIMEZONE") -> ZoneInfo:
    """The IANA time zone ``name`` (``Asia/Shanghai``, ``Europe/Berlin``, ``UTC``).

    Raises:
        ConfigError: no such zone; the message names ``setting`` and what is accepted.
    """
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise ConfigError(
            f"setting {setting}={name!r}: unknown time zone; expected an IANA time zone name "
            f"such as Asia/Shanghai, Asia/Hong_Kong, Europe/Berlin or UTC (names are "
            f"case-sensitive; the zone data comes from the system or the tzdata package)"
        ) from None


def _positive_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"setting {name}={raw!r}: expected a whole number") from None
    if value <= 0:
        raise ConfigError(f"setting {name}={raw!r}: expected a number above 0")
    return value


def _bool(name: str, raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ConfigError(f"setting {name}={raw!r}: expected one of 1/0, true/false, yes/no, on/off")


def _names(name: str, raw: str) -> tuple[str, ...]:
    return tuple(part.strip() for part in raw.split(",") if part.strip())


def _text(name: str, raw: str) -> str:
    return raw.strip()


def _policy_file(name: str, raw: str) -> Path | None:
    if not raw.strip():
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigError(f"setting {name}={raw!r}: no such file; expected a policy YAML file "
                          f"(see docs/policy.md)")
    return path


def _non_negative_int(name: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise ConfigError(f"setting {name}={raw!r}: expected a whole number") from None
    if value < 0:
        raise ConfigError(f"setting {name}={raw!r}: expected 0 or more")
    return value


def _path(name: str, raw: str) -> Path:
    return Path(raw).expanduser()


def _optional_file(name: str, raw: str) -> Path | None:
    if not raw.strip():
        return None
    path = Path(raw).expanduser()
    if not path.is_file():
        raise ConfigError(f"setting {name}={raw!r}: no such file; expected a PEM file of "
                          f"trusted C2PA signing certificates")
    return path


#: (field, environment variable, parser, description): the one list of settings.
SETTINGS: list[tuple[str, str, Callable[[str, str], Any], str]] = [
    ("data_dir", "REFUNDLENS_DATA_DIR", _path,
     "Directory for the database, blobs and the reuse index (default `.refundlens`)."),
    ("max_bytes", "REFUNDLENS_MAX_BYTES", _positive_int,
     "Largest photo file accepted, in bytes (default 50 MiB)."),
    ("max_pixels", "REFUNDLENS_MAX_PIXELS", _positive_int,
     "Largest declared width × height accepted, checked before decoding (default 100 MP)."),
    ("detectors", "REFUNDLENS_DETECTORS", _names,
     "Comma-separated detector names to run (default: all registered detectors)."),
    ("c2pa_trust_anchors", "REFUNDLENS_C2PA_TRUST_ANCHORS", _optional_file,
     "PEM file of trusted C2PA signer roots; signers chaining to them read as trusted."),
    ("ocr", "REFUNDLENS_OCR", _bool,
     "Run OCR for visible AI marks (default on)."),
    ("timezone", "REFUNDLENS_TIMEZONE", _text,
     "IANA time zone the console and the PDF reports show times in, with its UTC offset "
     "beside them (default `Asia/Shanghai`); an unknown name is refused at start-up."),
    ("workers", "REFUNDLENS_WORKERS", _positive_int,
     "Worker processes for batch analysis (default 1)."),
    ("database_url", "REFUNDLENS_DATABASE_URL", _text,
     "Claims database, e.g. `postgresql+psycopg://user@host/db` (default: SQLite "
     "`refundlens.db` in the data directory)."),
    ("pii_keys", "REFUNDLENS_PII_KEYS", _names,
     "Keys sealing buyer personal data (AES-256-GCM): comma-separated 32-byte keys as base64 "
     "or hex, the first seals, all open (rotation). Default: a key file created in the data "
     "directory."),
    ("pseudonym_key", "REFUNDLENS_PSEUDONYM_KEY", _text,
     "Key of the keyed hash that turns platform buyer ids into pseudonyms (32 bytes, base64 "
     "or hex). Default: a key file created in the data directory."),
    ("policy_file", "REFUNDLENS_POLICY", _policy_file,
     "Routing policy YAML (docs/policy.md); default: the embedded policy."),
    ("max_photos_per_claim", "REFUNDLENS_MAX_PHOTOS_PER_CLAIM", _positive_int,
     "Most photos one claim or evidence submission may carry (default 9)."),
    ("intake_rate", "REFUNDLENS_INTAKE_RATE", _non_negative_int,
     "Claims per second one API key may create, with a burst of twice that; evidence "
     "submissions and appeals count as claims (default 200; 0 turns the limit off)."),
    ("analysis_workers", "REFUNDLENS_ANALYSIS_WORKERS", _non_negative_int,
     "Analysis processes `refundlens serve` runs (default 1; 0: none, run "
     "`refundlens worker` instead)."),
    ("api_processes", "REFUNDLENS_API_PROCESSES", _positive_int,
     "Processes `refundlens serve` answers HTTP requests with, sharing one port (default 1; "
     "one Python process uses one core for requests). The intake rate limit is shared "
     "out among them."),
    ("forwarded_allow_ips", "REFUNDLENS_FORWARDED_ALLOW_IPS", _text,
     "Reverse proxies whose `X-Forwarded-For`/`X-Forwarded-Proto` headers `refundlens serve` "
     "believes, comma-separated addresses or networks, `*` for any (default `127.0.0.1`, "
     "a proxy on the same host). The client address they give is what sign-in lockouts "
     "and logs use; behind a proxy not listed every client looks like the proxy."),
    ("public_url", "REFUNDLENS_PUBLIC_URL", _text,
     "The service's external base URL, used in webhook payload links (default: none)."),
    ("job_lease_s", "REFUNDLENS_JOB_LEASE_S", _positive_int,
     "Seconds a worker's lease on a job lasts (default 30). A live worker renews it every "
     "third of that while the job runs; a worker that died (SIGKILL, power cut) stops "
     "renewing, and its jobs are taken over once the lease runs out."),
    ("webhook_allow_private", "REFUNDLENS_WEBHOOK_ALLOW_PRIVATE", _bool,
     "Accept webhook receivers at private (10/8, 172.16/12, 192.168/16, 100.64/10, "
     "fc00::/7) and loopback addresses, for on-premises deployments whose receivers live on "
     "a private network (default off: public addresses only). Link-local (169.254.169.254, "
     "cloud metadata), multicast, reserved and unspecified addresses are refused either "
     "way; the address is checked at registration and at every delivery."),
    ("login_max_failures", "REFUNDLENS_LOGIN_MAX_FAILURES", _positive_int,
     "Failed console sign-ins for one username within the window that lock it (default 5). "
     "Counted in the database, so every `serve` process and a restart see the same count; "
     "a successful sign-in clears the username's count."),
    ("login_address_max_failures", "REFUNDLENS_LOGIN_ADDRESS_MAX_FAILURES", _positive_int,
     "Failed console sign-ins from one client address, across usernames, within the window "
     "that lock the address (default 25)."),
    ("login_window_s", "REFUNDLENS_LOGIN_WINDOW_S", _positive_int,
     "Seconds over which failed console sign-ins are counted (default 900); the count "
     "starts again at the first failure after a window ends."),
    ("login_lockout_s", "REFUNDLENS_LOGIN_LOCKOUT_S", _positive_int,
     "Seconds a locked username or address must wait before signing in again (default 900)."),
]


def load_settings(environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``environ`` (default ``os.environ``), then ``overrides``.

    Raises:
        ConfigError: a variable has a value that is not accepted; the message names it.
    """
    environ = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for field_name, env_name, parse, _ in SETTINGS:
        raw = environ.get(env_name)
        if raw is not None:
            values[field_name] = parse(env_name, raw)
    known = {f.name for f in fields(Settings)}
    for key, value in overrides.items():
        if key not in known:
            raise ConfigError(f"unknown setting {key!r}; known: {', '.join(sorted(known))}")
        if value is not None:
            values[key] = value
    return Settings(**values)

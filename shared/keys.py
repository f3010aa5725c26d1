"""API keys and tenants: keys kept only as SHA-256 hashes, per-key limits, webhook signing secrets.

Where keys come from (either or both):

* ``VOXQ_API_KEYS``: ``tenant:sha256hex`` entries separated by commas, e.g.
  ``acme:9f86d081...,beta:60303ae2...``. These keys get the default limits.
* ``VOXQ_API_KEYS_FILE``: a TOML file, one ``[[keys]]`` table per tenant::

      [[keys]]
      tenant = "acme"                # jobs belong to the tenant; letters, digits, _ . -; 1-64 chars
      sha256 = "9f86d081..."         # hex SHA-256 of the key; a list of hashes while a key is rotated
      requests_per_minute = 600      # optional; default VOXQ_RATE_LIMIT_PER_MINUTE; 0 = no limit
      chars_per_day = 1000000        # optional; default VOXQ_CHARS_PER_DAY; 0 = no limit
      webhook_secrets = ["whsec_..."]  # optional; the first signs; two sign during a rotation

Webhook secrets may instead (or also) live in ``VOXQ_WEBHOOK_SECRETS_FILE``, a TOML file of
``tenant = "whsec_..."`` or ``tenant = ["whsec_new", "whsec_old"]`` lines. Without any keys the
one tenant is ``anonymous``, and its secret, if webhooks are wanted, comes from that file.
Secrets live in these files (mounted from a secret store), never in the repository.
"""
from __future__ import annotations

import base64
import hashlib
import logging
import os
import re
import secrets
import threading
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from shared.config import KeySettings

log = logging.getLogger(__name__)

ANONYMOUS = "anonymous"
KEY_PREFIX = "vxq_"
SECRET_PREFIX = "whsec_"

_TENANT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class KeysError(ValueError):
    """The key configuration is malformed; the message says where and how."""


@dataclass(frozen=True)
class Tenant:
    name: str
    requests_per_minute: int = 0  # 0: no limit
    chars_per_day: int = 0
    webhook_secrets: tuple[str, ...] = field(default=(), repr=False)  # never in a log line


@dataclass(frozen=True)
class KeyRing:
    tenants: dict[str, Tenant] = field(default_factory=dict)
    by_hash: dict[str, str] = field(default_factory=dict)  # sha256 hex -> tenant name

    @property
    def configured(self) -> bool:
        return bool(self.by_hash)

    def tenant_for_key(self, key: str) -> Tenant | None:
        name = self.by_hash.get(hash_key(key))
        return self.tenants.get(name) if name else None

    def tenant(self, name: str) -> Tenant:
        return self.tenants.get(name) or Tenant(name)

    def secrets_for(self, name: str) -> tuple[str, ...]:
        return self.tenant(name).webhook_secrets


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode().rstrip("=")


def new_secret() -> str:
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def secret_bytes(secret: str) -> bytes:
    """The HMAC key of a ``whsec_`` secret, as Standard Webhooks defines it (24 to 64 bytes)."""
    if not secret.startswith(SECRET_PREFIX):
        raise KeysError(f"a webhook secret must start with {SECRET_PREFIX!r}")
    try:
        raw = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
    except ValueError:
        raise KeysError("a webhook secret must be whsec_ followed by base64") from None
    if not 24 <= len(raw) <= 64:
        raise KeysError(f"a webhook secret must hold 24 to 64 bytes, not {len(raw)}")
    return raw


def keys_configured(settings: KeySettings) -> bool:
    """Whether any API key is configured. Raises KeysError when the configuration is malformed."""
    return load(settings).configured


def load(settings: KeySettings) -> KeyRing:
    """Read every source of keys and secrets the settings name; raise KeysError on any flaw."""
    default_rpm = settings.rate_limit_per_minute
    default_cpd = settings.chars_per_day
    tenants: dict[str, dict] = {}
    by_hash: dict[str, str] = {}

    def add(name: str, hashes: list[str], where: str, rpm=None, cpd=None, secrets_=()):
        if not isinstance(name, str) or not _TENANT.match(name):
            raise KeysError(f"{where}: tenant must be 1-64 letters, digits, '_', '.' or '-', not {name!r}")
        entry = tenants.setdefault(name, {"rpm": default_rpm, "cpd": default_cpd, "secrets": []})
        if rpm is not None:
            entry["rpm"] = _limit(rpm, f"{where}: requests_per_minute")
        if cpd is not None:
            entry["cpd"] = _limit(cpd, f"{where}: chars_per_day")
        for digest in hashes:
            digest = digest.strip().lower() if isinstance(digest, str) else digest
            if not isinstance(digest, str) or not _SHA256.match(digest):
                raise KeysError(f"{where}: sha256 must be 64 hex digits (the hash of the key, never the key)")
            if by_hash.get(digest, name) != name:
                raise KeysError(f"{where}: the same key hash is listed for two tenants")
            by_hash[digest] = name
        _add_secrets(entry, secrets_, where)

    for i, item in enumerate(filter(None, (s.strip() for s in settings.api_keys.split(",")))):
        name, sep, digest = item.rpartition(":")
        if not sep:
            raise KeysError(f"VOXQ_API_KEYS entry {i + 1}: expected tenant:sha256hex")
        add(name, [digest], f"VOXQ_API_KEYS entry {i + 1}")

    keys_file = settings.api_keys_file
    if keys_file:
        data = _read_toml(keys_file, "VOXQ_API_KEYS_FILE")
        unknown = set(data) - {"keys"}
        if unknown:
            raise KeysError(f"{keys_file}: unknown top-level entries {sorted(unknown)}; expected [[keys]] tables")
        entries = data.get("keys", [])
        if not isinstance(entries, list):
            raise KeysError(f"{keys_file}: 'keys' must be an array of tables ([[keys]])")
        for i, entry in enumerate(entries):
            where = f"{keys_file}: [[keys]] #{i + 1}"
            if not isinstance(entry, dict):
                raise KeysError(f"{where}: must be a table")
            extra = set(entry) - {"tenant", "sha256", "requests_per_minute", "chars_per_day", "webhook_secrets"}
            if extra:
                raise KeysError(f"{where}: unknown fields {sorted(extra)}")
            hashes = entry.get("sha256", [])
            hashes = [hashes] if isinstance(hashes, str) else hashes
            if not isinstance(hashes, list):
                raise KeysError(f"{where}: sha256 must be a string or a list of strings")
            add(entry.get("tenant"), hashes, where, entry.get("requests_per_minute"),
                entry.get("chars_per_day"), _as_list(entry.get("webhook_secrets", []), where))

    secrets_file = settings.webhook_secrets_file
    if secrets_file:
        for name, value in _read_toml(secrets_file, "VOXQ_WEBHOOK_SECRETS_FILE").items():
            where = f"{secrets_file}: {name}"
            if not _TENANT.match(name):
                raise KeysError(f"{where}: not a valid tenant name")
            entry = tenants.setdefault(name, {"rpm": default_rpm, "cpd": default_cpd, "secrets": []})
            _add_secrets(entry, _as_list(value, where), where)

    if not by_hash:
        # Without keys the one anonymous tenant has no limits: it is only ever bound to loopback.
        for entry in tenants.values():
            entry["rpm"] = entry["cpd"] = 0
    ring = {
        name: Tenant(name, e["rpm"], e["cpd"], tuple(e["secrets"])) for name, e in tenants.items()
    }
    return KeyRing(ring, by_hash)


class KeySource:
    """The current KeyRing, read again when a file it came from changes (rotation, no restart)."""

    def __init__(self, settings: KeySettings):
        self.settings = settings
        self._lock = threading.Lock()
        self._stamp = self._files_stamp()
        self._ring = load(self.settings)

    def _files_stamp(self) -> tuple:
        stamp = []
        for path in (self.settings.api_keys_file, self.settings.webhook_secrets_file):
            try:
                st = os.stat(path) if path else None
            except OSError:
                st = None
            stamp.append((st.st_mtime_ns, st.st_size, st.st_ino) if st else None)
        return tuple(stamp)

    def current(self) -> KeyRing:
        stamp = self._files_stamp()
        if stamp != self._stamp:
            with self._lock:
                if stamp != self._stamp:
                    try:
                        self._ring = load(self.settings)
                    except KeysError as exc:
                        # Keep serving with the last good keys rather than locking everyone out.
                        log.error("key files changed but cannot be read, keeping the previous keys: %s", exc)
                    self._stamp = stamp
        return self._ring


def _add_secrets(entry: dict, values: list, where: str) -> None:
    for value in values:
        if not isinstance(value, str):
            raise KeysError(f"{where}: webhook secrets must be strings")
        try:
            secret_bytes(value)
        except KeysError as exc:
            raise KeysError(f"{where}: {exc}") from None
        if value not in entry["secrets"]:
            entry["secrets"].append(value)


def _as_list(value, where: str) -> list:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return value
    raise KeysError(f"{where}: expected a string or a list of strings")


def _read_toml(path: str, var: str) -> dict:
    try:
        with Path(path).open("rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise KeysError(f"{var}={path}: no such file") from None
    except OSError as exc:
        raise KeysError(f"{var}={path}: cannot be read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise KeysError(f"{var}={path}: not valid TOML ({exc})") from None


def _limit(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise KeysError(f"{where} must be a whole number >= 0 (0 means no limit)")
    return value

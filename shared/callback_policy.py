"""The callback-URL policy: where a job's webhook may be sent (the SSRF rules).

A callback URL must not be a way into the internal network. `check` accepts only http and https
on the allowed ports, resolves the host once, and refuses the URL if ANY address it resolves to is
loopback, private, link-local, CGNAT, multicast, reserved or unspecified, directly or inside an
IPv4-mapped, 6to4 or NAT64 address. Numeric host spellings that resolvers accept (2130706433,
0177.0.0.1, 0x7f.1) are parsed here first, so the check sees the address a resolver would use.
The caller connects to the addresses `check` returns, never to the name again: no second lookup,
so no DNS rebinding. Networks in VOXQ_WEBHOOK_ALLOW_NETWORKS (CIDRs) are let through, for
receivers on premises.
"""
from __future__ import annotations

import ipaddress
import logging
import re
import socket
from dataclasses import dataclass
from typing import Callable
from urllib.parse import urlsplit

from shared.config import WebhookSettings

log = logging.getLogger(__name__)

MAX_URL_LENGTH = 2048

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network

# Spelled out rather than trusting is_global alone: its answers for IPv6 differ between Python
# releases (3.11 calls ff02::1 and ::127.0.0.1 global).
_BLOCKED_V4 = [ipaddress.ip_network(n) for n in (
    "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16", "172.16.0.0/12",
    "192.0.0.0/24", "192.0.2.0/24", "192.88.99.0/24", "192.168.0.0/16", "198.18.0.0/15",
    "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/4", "240.0.0.0/4",
)]
_GLOBAL_UNICAST_V6 = ipaddress.ip_network("2000::/3")
_BLOCKED_V6 = [ipaddress.ip_network(n) for n in (
    "2001::/23",  # IETF protocol assignments, Teredo among them (it hides an IPv4 address)
    "2001:db8::/32", "3fff::/20",  # documentation
)]
_NAT64 = ipaddress.ip_network("64:ff9b::/96")
_SIX_TO_FOUR = ipaddress.ip_network("2002::/16")

_NAME = re.compile(r"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")
_IPV4_PART = re.compile(r"^(0x[0-9a-f]*|[0-9]+)$")


class CallbackError(ValueError):
    """The callback URL is refused. `transient` means only that DNS could not answer just now."""

    def __init__(self, code: str, message: str, transient: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.transient = transient


@dataclass(frozen=True)
class Policy:
    ports: frozenset[int]
    allow: tuple[Network, ...] = ()

    @classmethod
    def from_settings(cls, settings: WebhookSettings) -> "Policy":
        return cls(
            ports=frozenset(settings.ports),
            allow=tuple(ipaddress.ip_network(n, strict=False) for n in settings.allow_networks),
        )


@dataclass(frozen=True)
class Target:
    """A checked callback: where to connect (addresses) and what to say (host, path)."""

    url: str
    scheme: str
    host: str  # ASCII host name or IP literal, for the Host header and TLS SNI
    port: int
    path: str  # path and query
    addresses: tuple[str, ...]

    @property
    def host_header(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        default = 443 if self.scheme == "https" else 80
        return host if self.port == default else f"{host}:{self.port}"


def check(url: str, policy: Policy, resolve: Callable = socket.getaddrinfo) -> Target:
    """The checked target of a callback URL, or CallbackError saying why it is refused."""
    if len(url) > MAX_URL_LENGTH:
        raise CallbackError("callback_url_too_long", f"callback_url is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        raise CallbackError("invalid_callback_url", "callback_url is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise CallbackError("invalid_callback_url", "callback_url must be an http or https URL")
    if parts.username is not None or parts.password is not None:
        raise CallbackError("invalid_callback_url",
                            "callback_url must not carry credentials; the webhook signature authenticates it")
    if not parts.hostname:
        raise CallbackError("invalid_callback_url", "callback_url has no host")
    port = port or (443 if scheme == "https" else 80)
    if port not in policy.ports:
        raise CallbackError("callback_url_blocked", f"callback_url port {port} is not allowed")
    host, literal = _normalise_host(parts.hostname)
    if literal is not None:
        addresses = [literal]
    else:
        addresses = _resolve(host, port, resolve)
    for address in addresses:
        reason = blocked(address, policy.allow)
        if reason:
            raise CallbackError("callback_url_blocked",
                                f"callback_url resolves to {address} ({reason}); webhooks go only to "
                                f"public addresses (or networks in VOXQ_WEBHOOK_ALLOW_NETWORKS)")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return Target(url, scheme, host, port, path, tuple(str(a) for a in addresses))


def blocked(address: IPAddress, allow: tuple[Network, ...] = ()) -> str | None:
    """Why an address must not receive webhooks ('loopback', 'private', ...), or None."""
    embedded = _embedded_ipv4(address)
    for candidate in (address, embedded):
        if candidate is not None and any(candidate in net for net in allow if net.version == candidate.version):
            return None
    if embedded is not None:
        return blocked(embedded)
    if address.is_unspecified:
        return "unspecified"
    if address.is_loopback:
        return "loopback"
    if address.is_link_local:
        return "link-local"
    if address.is_multicast:
        return "multicast"
    if address.version == 4:
        if address in ipaddress.ip_network("100.64.0.0/10"):
            return "CGNAT"
        if address.is_private:
            return "private"
        if address.is_reserved or any(address in net for net in _BLOCKED_V4):
            return "reserved"
        return None
    if address.is_private or address.is_site_local:
        return "private"
    if address not in _GLOBAL_UNICAST_V6 or address.is_reserved or any(address in n for n in _BLOCKED_V6):
        return "reserved"
    return None


def _embedded_ipv4(address: IPAddress) -> ipaddress.IPv4Address | None:
    if address.version != 6:
        return None
    if address.ipv4_mapped is not None:
        return address.ipv4_mapped
    if address in _NAT64:
        return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address in _SIX_TO_FOUR:
        return address.sixtofour
    return None


def _normalise_host(hostname: str) -> tuple[str, IPAddress | None]:
    """(ASCII host, the address if the host is an IP literal in any spelling a resolver accepts)."""
    host = hostname.lower()
    if ":" in host:
        if "%" in host:
            raise CallbackError("invalid_callback_url", "callback_url must not use an IPv6 zone")
        try:
            return host, ipaddress.IPv6Address(host)
        except ValueError:
            raise CallbackError("invalid_callback_url", "callback_url has an invalid IPv6 address") from None
    bare = host[:-1] if host.endswith(".") else host
    labels = bare.split(".")
    # As the WHATWG URL standard does: a host whose last label is a number is an IPv4 address,
    # in whatever base and number of parts inet_aton would accept, or it is invalid.
    if labels and _IPV4_PART.match(labels[-1]):
        address = _parse_ipv4(labels)
        if address is None:
            raise CallbackError("invalid_callback_url", f"callback_url host {hostname!r} is not a valid address")
        return str(address), address
    try:
        ascii_host = bare.encode("idna").decode("ascii")
    except UnicodeError:
        raise CallbackError("invalid_callback_url", f"callback_url host {hostname!r} is not a valid name") from None
    if len(ascii_host) > 253 or not all(_NAME.match(label) for label in ascii_host.split(".")):
        raise CallbackError("invalid_callback_url", f"callback_url host {hostname!r} is not a valid name")
    return ascii_host, None


def _parse_ipv4(labels: list[str]) -> ipaddress.IPv4Address | None:
    if not 1 <= len(labels) <= 4:
        return None
    numbers = []
    for label in labels:
        if not _IPV4_PART.match(label):
            return None
        try:
            if label.startswith("0x"):
                numbers.append(int(label[2:] or "0", 16))
            elif len(label) > 1 and label.startswith("0"):
                numbers.append(int(label, 8))
            else:
                numbers.append(int(label, 10))
        except ValueError:  # e.g. 08: not octal, and resolvers disagree on it
            return None
    *head, last = numbers
    if any(n > 255 for n in head) or last >= 256 ** (5 - len(numbers)):
        return None
    value = last
    for i, n in enumerate(head):
        value += n << (8 * (3 - i))
    return ipaddress.IPv4Address(value)


def _resolve(host: str, port: int, resolve: Callable) -> list[IPAddress]:
    try:
        infos = resolve(host, port, type=socket.SOCK_STREAM, proto=socket.IPPROTO_TCP)
    except socket.gaierror as exc:
        transient = exc.errno in (socket.EAI_AGAIN, getattr(socket, "EAI_FAIL", None))
        raise CallbackError("callback_url_unresolvable", f"callback_url host {host!r} does not resolve",
                            transient=transient) from None
    except (UnicodeError, OSError):
        raise CallbackError("callback_url_unresolvable", f"callback_url host {host!r} does not resolve",
                            transient=True) from None
    addresses: list[IPAddress] = []
    for family, _, _, _, sockaddr in infos:
        if family not in (socket.AF_INET, socket.AF_INET6):
            continue
        address = ipaddress.ip_address(sockaddr[0].split("%")[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise CallbackError("callback_url_unresolvable", f"callback_url host {host!r} has no address")
    return addresses

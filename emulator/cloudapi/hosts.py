"""Which host a cloud API request was signed for, and how much leeway the emulator gives there.

Real SDKs pointed at a local address sign it in their own ways: the Node.js, Java, Go and
PHP SDKs take the credential scope's service from the endpoint's first label (`127` for
`127.0.0.1:8765`) and sign the host name without its port, while the Host header they send
carries the port. At Tencent's own names (`*.tencentcloudapi.com`) none of that happens, so
only a non-Tencent host in the default fidelity gets the leeway; `strict` never does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

TENCENT_ROOT_DOMAIN = "tencentcloudapi.com"
SERVICE = "tiw"
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://")
_PORT = re.compile(r":[0-9]*$")


def host_name(host: str) -> str:
    """The bare, lowercased name of a Host value: no scheme, port or IPv6 brackets."""
    name = _SCHEME.sub("", host.strip()).split("/", 1)[0]
    if name.startswith("["):
        return name[1:].split("]", 1)[0].lower()
    return _PORT.sub("", name).rstrip(".").lower()


def is_tencent_host(host: str) -> bool:
    """True for `tencentcloudapi.com` and any name under it (e.g. `tiw.tencentcloudapi.com`)."""
    name = host_name(host)
    return name == TENCENT_ROOT_DOMAIN or name.endswith("." + TENCENT_ROOT_DOMAIN)


def without_port(host: str) -> str:
    """`127.0.0.1:8765` → `127.0.0.1`, `[::1]:8765` → `[::1]`; a value without a port as is."""
    scheme = _SCHEME.match(host)
    prefix = scheme.group(0) if scheme else ""
    rest = host[len(prefix) :]
    if rest.startswith("["):
        head, bracket, tail = rest.rpartition("]")
        return prefix + (head + bracket if _PORT.fullmatch(tail) else rest)
    if rest.count(":") > 1:  # an unbracketed IPv6 address has no port to strip
        return host
    return prefix + _PORT.sub("", rest)


@dataclass(frozen=True)
class SigningLeeway:
    """What a signature check accepts beyond the exact rules, decided once per request."""

    lenient: bool

    @classmethod
    def for_request(cls, host_header: str, fidelity: str) -> SigningLeeway:
        """Lenient in the default fidelity at any host not under tencentcloudapi.com."""
        return cls(lenient=fidelity != "strict" and not is_tencent_host(host_header))

    def signed_hosts(self, host_header: str) -> tuple[str, ...]:
        """The host strings a client may have signed: the Host header, or also without port."""
        hosts = [host_header]
        if self.lenient:
            bare = without_port(host_header)
            if bare != host_header:
                hosts.append(bare)
            if bare.startswith("[") and bare.endswith("]"):
                hosts.append(bare[1:-1])  # some URL parsers drop the brackets of [::1]
        return tuple(hosts)

    def accepts_service(self, service: str, expected: str = SERVICE) -> bool:
        """Strictly only `expected`; leniently whatever service the client derived (not empty)."""
        return service == expected or (self.lenient and bool(service))


EXACT = SigningLeeway(lenient=False)

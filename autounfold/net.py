"""Fail fast on an address nothing listens at, instead of waiting minutes inside a client's retries."""
from __future__ import annotations

import socket
from typing import Optional, Tuple
from urllib.parse import urlsplit


def host_port(address: str, default_port: int) -> Optional[Tuple[str, int]]:
    """``(host, port)`` of ``ray://h:p``, ``http://h:p``, ``h:p`` or ``h``; None for ``auto`` / ``local``
    (Ray finds those itself) or an address this cannot parse (the client then reports it)."""
    if address in ("auto", "local", ""):
        return None
    url = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = url.port
    except ValueError:
        return None
    if not url.hostname:
        return None
    default = 443 if url.scheme == "https" else 80 if url.scheme == "http" else default_port
    return url.hostname, port or default


def check_reachable(address: str, what: str, default_port: int, error, timeout_s: float = 3.0) -> None:
    """Raise ``error`` naming ``address`` when no TCP connection to it opens within ``timeout_s``."""
    hp = host_port(address, default_port)
    if hp is None:
        return
    try:
        with socket.create_connection(hp, timeout=timeout_s):
            pass
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise error(f"cannot reach {what} at {address}: {reason} (nothing answered on {hp[0]}:{hp[1]} "
                    f"within {timeout_s:g} s)") from None

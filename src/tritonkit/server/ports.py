"""Free TCP ports on the loopback interface, for servers started by the toolkit."""

from __future__ import annotations

import socket
from contextlib import ExitStack

LOOPBACK = "127.0.0.1"


def pick_free_ports(count: int, *, host: str = LOOPBACK) -> tuple[int, ...]:
    """Return `count` distinct TCP ports that were free on `host` a moment ago.

    All sockets stay bound until every port is chosen, so the ports differ from one another.
    Another process can still take a port before the caller binds it; callers that chose
    ports this way should retry with new ones when the bind fails.
    """
    with ExitStack() as stack:
        ports: list[int] = []
        for _ in range(count):
            sock = stack.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((host, 0))
            ports.append(int(sock.getsockname()[1]))
    return tuple(ports)


def is_port_free(port: int, *, host: str = LOOPBACK) -> bool:
    """True when a TCP socket can bind `host:port` right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # Connections of a stopped server linger in TIME_WAIT for 60 s; they do not stop
        # Triton from binding again, so they must not make the port look taken.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True

"""Restart the server under retrying clients (gRPC and HTTP): nothing may be lost silently.

The restarted server must come back on the same ports. Connections the old server closed
linger in TIME_WAIT for 60 s; Triton binds through them (SO_REUSEADDR), and so must
`LocalTriton`'s `is_port_free` check.
"""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from harness.reliability.server_restart import StopMode, restart_under_load
from tritonkit.server.ports import is_port_free

pytestmark = pytest.mark.integration


def test_port_check_ignores_time_wait() -> None:
    """Leave a server-side TIME_WAIT connection on a port: `is_port_free` must see past it."""
    with socket.socket() as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)):
            accepted, _ = listener.accept()
            accepted.close()  # the server side closes first: TIME_WAIT on the server port
            time.sleep(0.05)
    assert is_port_free(port)


def test_sigkill_restart_loses_nothing(example_repository: Path, tmp_path: Path) -> None:
    result = restart_under_load(example_repository, log_dir=tmp_path, concurrency=4,
                                before_s=1.0, after_s=2.0, kill=True, exit_timeout_s=5,
                                images=16)
    assert result.mode is StopMode.SIGKILL
    assert (result.lost, result.wrong_answers, result.untranslated_errors) == (0, 0, 0), result
    # Connection errors are transient: every request the crash cut off was retried and served.
    assert result.explicit_failures == 0, result.failure_messages
    assert result.in_flight_at_stop > 0 and result.retried >= result.in_flight_at_stop
    assert result.succeeded == result.requests
    assert result.port_wait_s < 1.0 and result.first_success_after_restart_s is not None


def test_sigterm_restart_accounts_for_every_request(example_repository: Path,
                                                    tmp_path: Path) -> None:
    result = restart_under_load(example_repository, log_dir=tmp_path, concurrency=4,
                                before_s=1.0, after_s=2.0, kill=False, exit_timeout_s=3,
                                images=16)
    assert result.mode is StopMode.SIGTERM
    assert (result.lost, result.wrong_answers, result.untranslated_errors) == (0, 0, 0), result
    assert result.succeeded + result.explicit_failures == result.requests
    assert all(m.message.startswith("infer 'digits' at ") for m in result.failure_messages)
    assert result.first_success_after_restart_s is not None

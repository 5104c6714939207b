"""tritonkit_client.failover without a server: closed ports are real connection refusals."""

from __future__ import annotations

import numpy as np
import pytest
from tritonkit_client import (
    FailoverClient,
    FailoverPolicy,
    InvalidInputError,
    InvalidOptionError,
    ServerUnavailableError,
    connect_failover,
)
from tritonkit_client.failover import should_fail_over
from tritonkit_client.options import parse_url

from tritonkit.server.ports import pick_free_ports


def test_all_endpoints_down_raises_unavailable_after_every_round() -> None:
    ports = pick_free_ports(2)
    sleeps: list[float] = []
    client = FailoverClient(
        [parse_url(f"grpc://127.0.0.1:{p}") for p in ports],
        policy=FailoverPolicy(rounds=2, ejection_s=10, backoff_s=0.01),
        sleep=sleeps.append,
    )
    with client, pytest.raises(ServerUnavailableError, match="after 2 round"):
        client.infer("m", {"x": np.zeros((1, 1), np.float32)})
    stats = client.stats()
    assert stats.calls == 1
    assert stats.attempts == 4  # 2 rounds x 2 endpoints (ejected ones retried when all are)
    assert sorted(stats.failures_by_endpoint.values()) == [2, 2]
    assert sleeps == [0.01]


def test_round_robin_moves_the_start_endpoint() -> None:
    ports = pick_free_ports(3)
    client = connect_failover([f"http://127.0.0.1:{p}" for p in ports], timeout_s=2,
                              ejection_s=0)
    assert [client._order()[0] for _ in range(4)] == [0, 1, 2, 0]
    client.close()


def test_only_unavailability_fails_over() -> None:
    assert should_fail_over(ServerUnavailableError("down"))
    assert not should_fail_over(InvalidInputError("bad shape"))


def test_mixed_protocols_and_empty_lists_are_refused() -> None:
    with pytest.raises(InvalidOptionError, match="one protocol"):
        connect_failover(["http://127.0.0.1:1", "grpc://127.0.0.1:2"])
    with pytest.raises(InvalidOptionError, match="at least one"):
        connect_failover([])
    with pytest.raises(InvalidOptionError, match="rounds"):
        FailoverPolicy(rounds=0)

"""Failover and the nginx gateway against the session's real Triton (plus dead endpoints)."""

from __future__ import annotations

import numpy as np
import pytest
from tritonkit_client import InvalidInputError, connect, connect_failover

from harness.scaleout.harness import sample_images
from harness.scaleout.nginx_gateway import NginxGateway, Upstream
from tritonkit.server.local_triton import ServerURLs
from tritonkit.server.ports import pick_free_ports

pytestmark = pytest.mark.integration
OUTPUT = "PROBABILITIES"
OUTPUTS = [OUTPUT]
CLASSES = 10


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return sample_images(4)


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_failover_skips_a_dead_endpoint(triton: ServerURLs, images: np.ndarray,
                                        scheme: str) -> None:
    dead = f"{scheme}://127.0.0.1:{pick_free_ports(1)[0]}"
    live = triton.http if scheme == "http" else triton.grpc
    with connect_failover([dead, live], timeout_s=30, ejection_s=60) as client:
        first = client.infer("digits", {"IMAGE": images}, outputs=OUTPUTS)
        second = client.infer("digits", {"IMAGE": images}, outputs=OUTPUTS)
        top = client.infer("digits", {"IMAGE": images}, class_counts={OUTPUT: 2},
                           outputs=OUTPUTS)
        stats = client.stats()
    assert first[OUTPUT].shape == (4, CLASSES)
    np.testing.assert_array_equal(first[OUTPUT], second[OUTPUT])
    # the classification extension through the failover client: best class first
    assert top[OUTPUT].shape == (4, 2)
    assert [int(row[0].split(b":")[1]) for row in top[OUTPUT]] == \
        np.argmax(first[OUTPUT], axis=1).tolist()
    assert stats.failovers == 1  # the dead endpoint is ejected after its first refusal
    assert stats.attempts == 4
    assert stats.failures_by_endpoint[dead] == 1


def test_invalid_argument_is_never_retried(triton: ServerURLs) -> None:
    dead = f"grpc://127.0.0.1:{pick_free_ports(1)[0]}"
    with connect_failover([triton.grpc, dead], timeout_s=30) as client:
        with pytest.raises(InvalidInputError):
            client.infer("digits", {"NOT_AN_INPUT": np.zeros((1, 1), np.float32)})
        assert client.stats().attempts == 1


def test_nginx_gateway_balances_http_and_grpc_past_a_dead_replica(
    triton: ServerURLs, images: np.ndarray,
) -> None:
    dead_http, dead_grpc = pick_free_ports(2)
    upstreams = [
        Upstream(http=f"127.0.0.1:{dead_http}", grpc=f"127.0.0.1:{dead_grpc}"),
        Upstream(http=triton.http_hostport, grpc=triton.grpc_hostport),
    ]
    with NginxGateway(upstreams) as gateway:
        for url in (gateway.http_url, gateway.grpc_url):
            with connect(url, timeout_s=30, retries=0) as client:
                for _ in range(4):  # round robin reaches the dead replica; nginx moves on
                    out = client.infer("digits", {"IMAGE": images}, outputs=OUTPUTS)
                    assert out[OUTPUT].shape == (4, CLASSES)

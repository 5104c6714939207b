"""A small typed client for Triton: `connect("http://host:8000")` or
`connect("grpc://host:8001")`, and the asyncio twin `connect_async`.

Every failure is a `ClientError`; results are `dict[str, np.ndarray]` or small frozen
dataclasses.
"""

from tritonkit_client.async_client import AsyncTritonClient, connect_async
from tritonkit_client.detection import BoundingBox, Detection, annotate, detect, detect_async
from tritonkit_client.embeddings import embed, embed_async
from tritonkit_client.errors import (
    ClientError,
    ClientTimeoutError,
    InvalidInputError,
    InvalidOptionError,
    InvalidURLError,
    ModelUnavailableError,
    ModelUnloadingError,
    ResourceExhaustedError,
    ServerError,
    ServerUnavailableError,
    SharedMemoryError,
)
from tritonkit_client.failover import (
    FailoverClient,
    FailoverPolicy,
    FailoverStats,
    connect_failover,
)
from tritonkit_client.options import ClientOptions, Endpoint, Protocol, RetryPolicy, parse_url
from tritonkit_client.results import (
    HealthReport,
    ModelConfig,
    ModelMetadata,
    ModelReadiness,
    ModelState,
    ModelStatus,
    TensorMetadata,
)
from tritonkit_client.sync_client import TritonClient, connect
from tritonkit_client.tasks import Classification, classify, classify_async
from tritonkit_client.upscale import UpscaledImage, upscale, upscale_async

__all__ = [
    "AsyncTritonClient",
    "BoundingBox",
    "Classification",
    "ClientError",
    "ClientOptions",
    "ClientTimeoutError",
    "Detection",
    "Endpoint",
    "FailoverClient",
    "FailoverPolicy",
    "FailoverStats",
    "HealthReport",
    "InvalidInputError",
    "InvalidOptionError",
    "InvalidURLError",
    "ModelConfig",
    "ModelMetadata",
    "ModelReadiness",
    "ModelState",
    "ModelStatus",
    "ModelUnavailableError",
    "ModelUnloadingError",
    "Protocol",
    "ResourceExhaustedError",
    "RetryPolicy",
    "ServerError",
    "ServerUnavailableError",
    "SharedMemoryError",
    "TensorMetadata",
    "TritonClient",
    "UpscaledImage",
    "annotate",
    "classify",
    "classify_async",
    "connect",
    "connect_async",
    "connect_failover",
    "detect",
    "detect_async",
    "embed",
    "embed_async",
    "parse_url",
    "upscale",
    "upscale_async",
]

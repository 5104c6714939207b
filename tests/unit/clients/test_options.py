"""URL parsing, option validation and the retry policy (with a fake operation, no server)."""

from __future__ import annotations

import asyncio

import pytest
from tritonclient.utils import InferenceServerException
from tritonkit_client.errors import (
    ClientError,
    ClientTimeoutError,
    InvalidInputError,
    InvalidOptionError,
    InvalidURLError,
    ModelUnavailableError,
    ResourceExhaustedError,
    ServerUnavailableError,
)
from tritonkit_client.options import (
    ClientOptions,
    Endpoint,
    Protocol,
    RetryPolicy,
    acall_with_retry,
    call_with_retry,
    make_options,
    parse_url,
)

# -- URLs -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "protocol", "host", "port"),
    [
        ("http://127.0.0.1:8000", Protocol.HTTP, "127.0.0.1", 8000),
        ("grpc://localhost:9001", Protocol.GRPC, "localhost", 9001),
        ("HTTP://Example.org:80/", Protocol.HTTP, "example.org", 80),
        ("http://triton", Protocol.HTTP, "triton", 8000),
        ("grpc://triton", Protocol.GRPC, "triton", 8001),
        ("grpc://[::1]:8001", Protocol.GRPC, "::1", 8001),
        ("  http://h:1  ", Protocol.HTTP, "h", 1),
    ],
)
def test_parse_url_accepts_http_and_grpc(
    url: str, protocol: Protocol, host: str, port: int
) -> None:
    assert parse_url(url) == Endpoint(protocol=protocol, host=host, port=port)


def test_endpoint_target_and_url() -> None:
    assert parse_url("grpc://h:7").target == "h:7"
    assert parse_url("grpc://h:7").url == "grpc://h:7"
    assert parse_url("grpc://[::1]:7").target == "[::1]:7"
    assert parse_url("http://H").url == "http://h:8000"


@pytest.mark.parametrize(
    ("url", "fragment"),
    [
        ("localhost:8000", "missing scheme"),
        ("127.0.0.1:8001", "missing scheme"),
        ("https://h:8000", "unsupported scheme 'https'"),
        ("grpcs://h:8001", "unsupported scheme 'grpcs'"),
        ("ftp://h", "unsupported scheme 'ftp'"),
        ("http://", "missing host"),
        ("http://h:notaport", "invalid port"),
        ("http://h:70000", "invalid port"),
        ("http://h:0", "port 0"),
        ("http://h:8000/v2", "path, query or fragment"),
        ("http://h:8000?x=1", "path, query or fragment"),
        ("http://user:pw@h:8000", "credentials"),
        ("", "empty URL"),
    ],
)
def test_parse_url_rejects_with_url_and_schemes(url: str, fragment: str) -> None:
    with pytest.raises(InvalidURLError) as info:
        parse_url(url)
    message = str(info.value)
    assert fragment in message
    assert repr(url) in message
    assert info.value.url == url
    assert isinstance(info.value, ClientError)


def test_scheme_errors_name_the_accepted_schemes() -> None:
    with pytest.raises(InvalidURLError, match=r"http://host:port or grpc://host:port"):
        parse_url("https://h:8000")


# -- options --------------------------------------------------------------------------------


def test_make_options_fills_the_policy() -> None:
    options = make_options(timeout_s=2.5, retries=4, backoff_s=0.2, max_message_mb=64)
    assert options.timeout_s == 2.5
    assert options.retry.retries == 4
    assert options.retry.attempts == 5
    assert options.retry.backoff_s == 0.2
    assert options.max_message_bytes == 64 * 1024 * 1024


def test_max_message_mb_upper_bound_stays_below_int32() -> None:
    assert ClientOptions(max_message_mb=2047).max_message_bytes == 2047 * 1024 * 1024
    assert ClientOptions(max_message_mb=2047).max_message_bytes < 2**31


@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout_s": 0},
        {"timeout_s": -1},
        {"retries": -1},
        {"backoff_s": -0.1},
        {"max_message_mb": 0},
        {"max_message_mb": 4096},
    ],
)
def test_invalid_options_raise(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidOptionError):
        make_options(**kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [{"multiplier": 0.5}, {"jitter": 1.5}, {"jitter": -0.1}, {"backoff_s": 2, "max_backoff_s": 1}],
)
def test_invalid_retry_policy_raises(kwargs: dict[str, float]) -> None:
    with pytest.raises(InvalidOptionError):
        RetryPolicy(**kwargs)  # type: ignore[arg-type]


# -- retry policy ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "retried"),
    [
        (ServerUnavailableError("x"), True),
        (ResourceExhaustedError("x"), True),
        (InvalidInputError("x"), False),
        (ModelUnavailableError("x"), False),
        (ClientTimeoutError("x"), False),
        (ClientError("x"), False),
    ],
)
def test_only_transient_errors_are_retried(error: ClientError, retried: bool) -> None:
    assert RetryPolicy().should_retry(error) is retried


def test_backoff_grows_exponentially_and_is_capped() -> None:
    policy = RetryPolicy(retries=10, backoff_s=0.1, max_backoff_s=1.0, multiplier=2.0)
    nominal = [policy.nominal_delay_s(i) for i in range(6)]
    assert nominal == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])
    assert policy.nominal_delay_s(10_000) == 1.0  # no overflow for absurd counts


def test_jitter_stays_within_its_band() -> None:
    policy = RetryPolicy(backoff_s=1.0, max_backoff_s=8.0, jitter=0.5)
    assert policy.delay_s(1, rng=lambda: 0.0) == pytest.approx(2.0)
    assert policy.delay_s(1, rng=lambda: 0.999999) == pytest.approx(1.0, abs=1e-5)
    assert RetryPolicy(jitter=0.0).delay_s(0, rng=lambda: 0.7) == pytest.approx(0.1)


class FlakyOperation:
    """A fake operation: raises the queued errors in order, then returns `value`."""

    def __init__(self, errors: list[BaseException], value: str = "done") -> None:
        self.errors = list(errors)
        self.value = value
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.value


def unavailable() -> InferenceServerException:
    return InferenceServerException("connection refused", status="StatusCode.UNAVAILABLE")


def test_transient_failures_are_retried_until_success() -> None:
    sleeps: list[float] = []
    operation = FlakyOperation([unavailable(), unavailable()])
    policy = RetryPolicy(retries=3, backoff_s=0.5, max_backoff_s=10, jitter=0.0)
    result = call_with_retry(operation, policy=policy, context="op", sleep=sleeps.append)
    assert result == "done"
    assert operation.calls == 3
    assert sleeps == pytest.approx([0.5, 1.0])


def test_retries_stop_after_the_last_attempt_with_the_translated_error() -> None:
    sleeps: list[float] = []
    failures: list[BaseException] = [unavailable() for _ in range(10)]
    operation = FlakyOperation(failures)
    policy = RetryPolicy(retries=2, backoff_s=0.1, jitter=0.0)
    with pytest.raises(ServerUnavailableError) as info:
        call_with_retry(operation, policy=policy, context="ping at grpc://h:1", sleep=sleeps.append)
    assert operation.calls == 3  # first attempt + 2 retries
    assert len(sleeps) == 2
    assert "ping at grpc://h:1" in str(info.value)
    assert "connection refused" in str(info.value)
    assert isinstance(info.value.__cause__, InferenceServerException)


def test_invalid_input_is_never_retried() -> None:
    sleeps: list[float] = []
    operation = FlakyOperation([InferenceServerException("bad shape", status="400")])
    with pytest.raises(InvalidInputError, match="bad shape"):
        call_with_retry(
            operation, policy=RetryPolicy(retries=5), context="infer", sleep=sleeps.append
        )
    assert operation.calls == 1
    assert sleeps == []


def test_resource_exhausted_http_429_is_retried() -> None:
    sleeps: list[float] = []
    operation = FlakyOperation([InferenceServerException("slow down", status="429")])
    assert (
        call_with_retry(
            operation, policy=RetryPolicy(retries=1), context="infer", sleep=sleeps.append
        )
        == "done"
    )
    assert operation.calls == 2


def test_zero_retries_means_one_attempt() -> None:
    operation = FlakyOperation([ConnectionRefusedError(111, "Connection refused")])
    with pytest.raises(ServerUnavailableError):
        call_with_retry(operation, policy=RetryPolicy(retries=0), context="x", sleep=lambda _: None)
    assert operation.calls == 1


def test_client_errors_pass_through_untouched() -> None:
    original = ModelUnavailableError("gone")
    operation = FlakyOperation([original])
    with pytest.raises(ModelUnavailableError) as info:
        call_with_retry(operation, policy=RetryPolicy(), context="x", sleep=lambda _: None)
    assert info.value is original


def test_unrelated_exceptions_propagate_unchanged() -> None:
    operation = FlakyOperation([KeyError("bug")])
    with pytest.raises(KeyError):
        call_with_retry(operation, policy=RetryPolicy(), context="x", sleep=lambda _: None)
    assert operation.calls == 1


def test_async_retry_shares_the_policy() -> None:
    sleeps: list[float] = []
    operation = FlakyOperation([unavailable(), InferenceServerException("full", status="429")])

    async def attempt() -> str:
        return operation()

    async def fake_sleep(delay: float) -> None:
        sleeps.append(delay)

    policy = RetryPolicy(retries=2, backoff_s=0.25, jitter=0.0)
    result = asyncio.run(acall_with_retry(attempt, policy=policy, context="x", sleep=fake_sleep))
    assert result == "done"
    assert operation.calls == 3
    assert sleeps == pytest.approx([0.25, 0.5])


def test_async_retry_gives_up_on_invalid_input() -> None:
    operation = FlakyOperation(
        [InferenceServerException("no", status="StatusCode.INVALID_ARGUMENT")]
    )

    async def attempt() -> str:
        return operation()

    async def fake_sleep(delay: float) -> None:
        raise AssertionError("must not sleep")

    with pytest.raises(InvalidInputError):
        asyncio.run(acall_with_retry(attempt, policy=RetryPolicy(), context="x", sleep=fake_sleep))
    assert operation.calls == 1

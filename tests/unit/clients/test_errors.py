"""The exception hierarchy: one root, transient flags for the retry policy."""

from __future__ import annotations

import pytest
from tritonkit_client import errors
from tritonkit_client.errors import ClientError, InvalidOptionError, InvalidURLError

ALL: list[type[ClientError]] = [
    errors.InvalidOptionError,
    errors.InvalidURLError,
    errors.ServerUnavailableError,
    errors.ResourceExhaustedError,
    errors.ClientTimeoutError,
    errors.InvalidInputError,
    errors.ModelUnavailableError,
    errors.ServerError,
    errors.SharedMemoryError,
]


@pytest.mark.parametrize("error_type", ALL)
def test_every_error_is_a_client_error(error_type: type[ClientError]) -> None:
    assert issubclass(error_type, ClientError)


def test_only_unavailable_and_exhausted_are_transient() -> None:
    transient = {t for t in ALL if t.transient}
    assert transient == {errors.ServerUnavailableError, errors.ResourceExhaustedError}
    assert ClientError.transient is False


def test_invalid_url_error_names_the_url() -> None:
    error = InvalidURLError("ftp://x", "unsupported scheme 'ftp'")
    assert str(error) == "'ftp://x': unsupported scheme 'ftp'"
    assert error.url == "ftp://x"
    assert isinstance(error, InvalidOptionError)

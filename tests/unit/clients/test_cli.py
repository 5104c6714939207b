"""`python -m tritonkit_client`: exit codes and the one-line error, against a real refusing
socket."""

from __future__ import annotations

import socket
import subprocess
import sys
from pathlib import Path

import pytest
from tritonkit_client.cli import ExitCode, build_parser, exit_code_for, main
from tritonkit_client.errors import (
    ClientError,
    ClientTimeoutError,
    InvalidInputError,
    InvalidURLError,
    ModelUnavailableError,
    ResourceExhaustedError,
    ServerError,
    ServerUnavailableError,
)

REPO_ROOT = Path(__file__).resolve().parents[3]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.parametrize("scheme", ["http", "grpc"])
def test_unreachable_server_exits_non_zero_with_one_line(scheme: str) -> None:
    url = f"{scheme}://127.0.0.1:{closed_port()}"
    completed = subprocess.run(
        [
            sys.executable,
            "-m",
            "tritonkit_client",
            "health",
            "--url",
            url,
            "--timeout-s",
            "1",
            "--retries",
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        cwd=REPO_ROOT,
    )
    assert completed.returncode == ExitCode.SERVER_UNAVAILABLE
    lines = completed.stderr.splitlines()
    assert len(lines) == 1, completed.stderr
    assert lines[0].startswith("ServerUnavailableError: ")
    assert url in lines[0]
    assert completed.stdout == ""


def test_models_command_in_process(capsys: pytest.CaptureFixture[str]) -> None:
    url = f"grpc://127.0.0.1:{closed_port()}"
    code = main(["models", "--url", url, "--timeout-s", "1", "--retries", "1"])
    captured = capsys.readouterr()
    assert code == ExitCode.SERVER_UNAVAILABLE
    assert len(captured.err.splitlines()) == 1  # retry warnings stay quiet without -v
    assert captured.err.startswith("ServerUnavailableError: list models at " + url)


def test_bad_url_exits_with_usage_code(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["health", "--url", "localhost:8000"])
    err = capsys.readouterr().err
    assert code == ExitCode.USAGE
    assert err.startswith("InvalidURLError: 'localhost:8000': missing scheme")
    assert len(err.splitlines()) == 1


def test_missing_image_is_invalid_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = tmp_path / "nope.png"
    code = main(
        [
            "classify",
            "--url",
            f"http://127.0.0.1:{closed_port()}",
            "--model",
            "digits",
            str(missing),
        ]
    )
    err = capsys.readouterr().err
    assert code == ExitCode.INVALID_INPUT
    assert err.startswith("InvalidInputError: cannot read image")
    assert str(missing) in err


def test_parser_reads_the_documented_options() -> None:
    args = build_parser().parse_args(
        [
            "classify",
            "--url",
            "grpc://h:1",
            "--model",
            "digits",
            "--top-k",
            "3",
            "--json",
            "--timeout-s",
            "2.5",
            "a.png",
            "b.png",
        ]
    )
    assert (args.command, args.model, args.top_k, args.json, args.timeout_s) == (
        "classify",
        "digits",
        3,
        True,
        2.5,
    )
    assert [str(p) for p in args.images] == ["a.png", "b.png"]
    health = build_parser().parse_args(["health", "--url", "u", "--model", "a", "--model", "b"])
    assert health.models == ["a", "b"]


def test_parser_rejects_missing_arguments() -> None:
    with pytest.raises(SystemExit) as info:
        build_parser().parse_args(["classify", "--url", "grpc://h:1", "--model", "m"])
    assert info.value.code == 2


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (ServerUnavailableError("x"), ExitCode.SERVER_UNAVAILABLE),
        (ClientTimeoutError("x"), ExitCode.TIMEOUT),
        (ModelUnavailableError("x"), ExitCode.MODEL_UNAVAILABLE),
        (InvalidInputError("x"), ExitCode.INVALID_INPUT),
        (ResourceExhaustedError("x"), ExitCode.RESOURCE_EXHAUSTED),
        (ServerError("x"), ExitCode.SERVER_ERROR),
        (InvalidURLError("u", "bad"), ExitCode.USAGE),
        (ClientError("x"), ExitCode.ERROR),
    ],
)
def test_each_error_class_has_its_exit_code(error: ClientError, code: ExitCode) -> None:
    assert exit_code_for(error) == code


def test_exit_codes_are_distinct() -> None:
    values = [c.value for c in ExitCode]
    assert len(values) == len(set(values))
    assert ExitCode.OK == 0

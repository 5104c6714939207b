"""An efficient load driver: pre-serialized gRPC requests kept `concurrency` in flight with
the gRPC C core's futures (closed loop), or sent at a fixed rate (open loop, for overload).

Every request is accounted for: it ends as a success (optionally checked against the
expected answer), an explicit error with its gRPC code, or a wrong answer. Nothing is
dropped silently; `LoadResult.unanswered` counts requests still in flight at the end.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import numpy as np
from tritonclient.grpc import service_pb2, service_pb2_grpc

from harness.reliability.payloads import raw_bytes
from harness.reliability.wire import MAX_MESSAGE_BYTES

log = logging.getLogger(__name__)

Check = Callable[[service_pb2.ModelInferResponse], bool]


@dataclass(frozen=True, kw_only=True)
class RequestRecord:
    sent_at: float  # time.monotonic()
    seconds: float
    status: str  # "OK" or the gRPC code name
    message: str = ""
    wrong_answer: bool = False

    @property
    def ok(self) -> bool:
        return self.status == "OK" and not self.wrong_answer


@dataclass(frozen=True, kw_only=True)
class LoadResult:
    records: tuple[RequestRecord, ...]
    seconds: float
    unanswered: int = 0

    @property
    def sent(self) -> int:
        return len(self.records) + self.unanswered

    @property
    def succeeded(self) -> int:
        return sum(r.ok for r in self.records)

    @property
    def errors(self) -> int:
        return sum(not r.ok for r in self.records) + self.unanswered

    @property
    def wrong_answers(self) -> int:
        return sum(r.wrong_answer for r in self.records)

    @property
    def throughput(self) -> float:
        return len(self.records) / self.seconds if self.seconds > 0 else 0.0

    def latency_ms(self, quantile: float, *, ok_only: bool = True) -> float:
        values = [r.seconds for r in self.records if r.ok or not ok_only]
        return float(np.quantile(values, quantile) * 1000) if values else 0.0

    def error_kinds(self) -> dict[str, int]:
        kinds: dict[str, int] = {}
        for r in self.records:
            if not r.ok:
                key = "WRONG_ANSWER" if r.wrong_answer else r.status
                kinds[key] = kinds.get(key, 0) + 1
        return kinds


def image_request(model: str, input_name: str, image: bytes, *, rows: int = 1,
                  output_names: tuple[str, ...] = ()) -> service_pb2.ModelInferRequest:
    """A ModelInferRequest for a BYTES [rows, 1] image input."""
    array = np.full((rows, 1), image, dtype=np.object_)
    request = service_pb2.ModelInferRequest(model_name=model)
    entry = request.inputs.add()
    entry.name = input_name
    entry.datatype = "BYTES"
    entry.shape.extend(array.shape)
    request.raw_input_contents.append(raw_bytes(array))
    for name in output_names:
        request.outputs.add().name = name
    return request


def output_check(expected: service_pb2.ModelInferResponse, name: str) -> Check:
    """Accept a response whose output `name` carries the same bytes as `expected`'s."""
    index = [o.name for o in expected.outputs].index(name)
    want = expected.raw_output_contents[index]

    def check(response: service_pb2.ModelInferResponse) -> bool:
        names = [o.name for o in response.outputs]
        return name in names and response.raw_output_contents[names.index(name)] == want

    return check


class LoadDriver:
    """Drives one gRPC endpoint; reusable for several runs."""

    def __init__(self, grpc_url: str, *, timeout_s: float = 60.0) -> None:
        self._channel = grpc.insecure_channel(
            grpc_url.split("://", 1)[-1],
            options=[("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
                     ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        self._stub = service_pb2_grpc.GRPCInferenceServiceStub(self._channel)
        self.timeout_s = timeout_s

    def close(self) -> None:
        self._channel.close()

    def infer(self, request: service_pb2.ModelInferRequest) -> service_pb2.ModelInferResponse:
        return self._stub.ModelInfer(request, timeout=self.timeout_s)

    def run(
        self, request: service_pb2.ModelInferRequest, *, concurrency: int,
        total: int | None = None, duration_s: float | None = None,
        rate_per_s: float | None = None, max_in_flight: int = 10_000,
        check: Check | None = None, stop: threading.Event | None = None,
    ) -> LoadResult:
        """Send until `total` requests, `duration_s` or `stop`, whichever comes first.

        Closed loop (default): `concurrency` requests in flight. Open loop (`rate_per_s`):
        requests leave at that rate whatever the answers, up to `max_in_flight`.
        """
        if total is None and duration_s is None and stop is None:
            raise ValueError("give total, duration_s or stop")
        lock = threading.Condition()
        records: list[RequestRecord] = []
        state = {"sent": 0, "in_flight": 0}
        started = time.monotonic()
        deadline = started + duration_s if duration_s is not None else None

        def more() -> bool:
            if total is not None and state["sent"] >= total:
                return False
            if deadline is not None and time.monotonic() >= deadline:
                return False
            return not (stop is not None and stop.is_set())

        def done(future: grpc.Future, sent_at: float) -> None:
            seconds = time.monotonic() - sent_at
            error = future.exception()
            if error is None:
                wrong = check is not None and not check(future.result())
                record = RequestRecord(sent_at=sent_at, seconds=seconds, status="OK",
                                       wrong_answer=wrong)
            else:
                code = error.code() if hasattr(error, "code") else None
                details = error.details() if hasattr(error, "details") else str(error)
                record = RequestRecord(sent_at=sent_at, seconds=seconds,
                                       status=getattr(code, "name", str(code)),
                                       message=str(details)[:300])
            with lock:
                records.append(record)
                state["in_flight"] -= 1
                lock.notify_all()

        def send_one() -> None:
            sent_at = time.monotonic()
            state["sent"] += 1
            state["in_flight"] += 1
            future = self._stub.ModelInfer.future(request, timeout=self.timeout_s)
            future.add_done_callback(lambda f, t=sent_at: done(f, t))

        if rate_per_s is None:
            with lock:
                while more():
                    while state["in_flight"] >= concurrency:
                        lock.wait(0.5)
                    if not more():
                        break
                    send_one()
        else:
            interval = 1.0 / rate_per_s
            next_at = time.monotonic()
            while more():
                now = time.monotonic()
                if now < next_at:
                    time.sleep(min(next_at - now, 0.01))
                    continue
                with lock:
                    while now >= next_at and more() and state["in_flight"] < max_in_flight:
                        send_one()
                        next_at += interval
                if state["in_flight"] >= max_in_flight:
                    next_at = time.monotonic()
        end_wait = time.monotonic() + self.timeout_s + 5
        with lock:
            while state["in_flight"] > 0 and time.monotonic() < end_wait:
                lock.wait(0.5)
            unanswered = state["in_flight"]
            return LoadResult(records=tuple(records), seconds=time.monotonic() - started,
                              unanswered=unanswered)

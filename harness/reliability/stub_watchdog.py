"""Bring a model back after its Python-backend stub died.

Triton 2.51's Python backend does not restart a dead stub: the instance answers every later
request with "Stub process '<model>_0_0' is not healthy" until the model is loaded again.
With explicit model control, `StubWatchdog` notices a model whose stub is gone and reloads
it through the repository API (which must be reachable to it: restricted-API header).
"""

from __future__ import annotations

import http.client
import json
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

from harness.reliability.server_processes import stub_pids
from tritonkit.server import LocalTriton

log = logging.getLogger(__name__)


@dataclass(frozen=True, kw_only=True)
class Reload:
    model: str
    at: float  # time.monotonic() when the reload was asked for
    status: int
    seconds: float


class StubWatchdog:
    def __init__(self, server: LocalTriton, models: Sequence[str], *, interval_s: float = 0.25,
                 headers: dict[str, str] | None = None) -> None:
        self._server = server
        self._models = tuple(models)
        self._interval_s = interval_s
        self._headers = dict(headers or {})
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stub-watchdog", daemon=True)
        self.reloads: list[Reload] = []
        self._expected: dict[str, int] = {}

    def __enter__(self) -> StubWatchdog:
        self._expected = {m: len(stub_pids(self._server, m)) for m in self._models}
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _reload(self, model: str) -> None:
        host, _, port = self._server.urls.http_hostport.rpartition(":")
        started = time.monotonic()
        connection = http.client.HTTPConnection(host, int(port), timeout=120)
        try:
            # An unchanged model is not reloaded; a changed (no-op) parameter forces a new instance.
            connection.request("GET", f"/v2/models/{model}/config", headers=self._headers)
            config = json.loads(connection.getresponse().read())
            parameters = config.setdefault("parameters", {})
            parameters["reload_generation"] = {"string_value": str(time.monotonic_ns())}
            body = json.dumps({"parameters": {"config": json.dumps(config)}}).encode()
            connection.request("POST", f"/v2/repository/models/{model}/load", body=body,
                               headers={"Content-Type": "application/json", **self._headers})
            response = connection.getresponse()
            response.read()
            status = response.status
        except OSError as e:
            log.warning("reloading %s failed: %s", model, e)
            status = 0
        finally:
            connection.close()
        self.reloads.append(Reload(model=model, at=started, status=status,
                                   seconds=time.monotonic() - started))
        log.info("reloaded %s after its stub died: HTTP %d in %.1f s", model, status,
                 time.monotonic() - started)

    def _loop(self) -> None:
        while not self._stop.wait(self._interval_s):
            for model in self._models:
                if len(stub_pids(self._server, model)) < self._expected[model]:
                    self._reload(model)  # one instance's stub died (of `count` instances)
                    self._stop.wait(2.0)  # let the new stub start before looking again

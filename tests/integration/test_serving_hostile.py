"""Hostile HTTP requests: body cap (413), short 422s that never echo the request, and
request-level refusal of non-finite or absurd prices and out-of-range timestamps.

One test runs the real ``cryptoforecast serve`` under uvicorn on 127.0.0.1; the rest use
FastAPI's TestClient on the same app.
"""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from cryptoforecast.data.sources import bundled_path, read_candle_file
from cryptoforecast.serving.app import MIN_BODY_BYTES, create_app, default_max_body_bytes
from cryptoforecast.serving.predictor import Predictor
from tests.unit.test_hostile_artefacts import tiny_bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_bundle(tmp_path_factory.mktemp("serve") / "bundle")


@pytest.fixture(scope="module")
def candles() -> list[dict[str, Any]]:
    """Ten real hourly candles (the tiny model needs five), ISO timestamps."""
    frame = read_candle_file(bundled_path("BTCUSDT")).tail(10).copy()
    frame["timestamp"] = frame["timestamp"].dt.strftime("%Y-%m-%dT%H:%M:%SZ")
    return list(frame.to_dict(orient="records"))


@pytest.fixture(scope="module")
def client(bundle: Path) -> TestClient:
    return TestClient(create_app(Predictor.from_bundle(bundle), max_body_bytes=30_000_000))


def _with(candles: list[dict[str, Any]], **last: Any) -> dict[str, Any]:
    return {"candles": [*candles[:-1], {**candles[-1], **last}]}


def test_valid_request_still_forecasts(client: TestClient, candles: list[dict[str, Any]]) -> None:
    response = client.post("/predict", json={"candles": candles})
    assert response.status_code == 200, response.text
    assert response.json()["forecasts"][0]["horizon"] == 1


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"close": 1e308}, "close"),
        ({"open": 1e308, "high": 1e308, "low": 1e308, "close": 1e308}, "open"),  # was a 200
        ({"high": -5.0}, "high"),
        ({"open": 0.0}, "open"),
        ({"volume": -1.0}, "volume"),
        ({"volume": 1e300}, "volume"),
        ({"timestamp": -1}, "timestamp"),
        ({"timestamp": 0}, "timestamp"),
        ({"timestamp": "0001-01-01"}, "timestamp"),
        ({"timestamp": "9999-12-31"}, "timestamp"),
        ({"timestamp": 1e20}, "timestamp"),
        ({"timestamp": "-1"}, "timestamp"),
        ({"timestamp": "not a time"}, "timestamp"),
    ],
)
def test_absurd_values_are_422_at_the_request_model(
    client: TestClient, candles: list[dict[str, Any]], change: dict[str, Any], field: str
) -> None:
    response = client.post("/predict", json=_with(candles, **change))
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["detail"][0]["loc"] == ["body", "candles", "9", field], body


@pytest.mark.parametrize("token", ["NaN", "Infinity", "-Infinity"])
def test_non_finite_json_numbers_are_422(
    client: TestClient, candles: list[dict[str, Any]], token: str
) -> None:
    text = json.dumps(_with(candles, close="@@")).replace('"@@"', token)
    response = client.post("/predict", content=text, headers={"content-type": "application/json"})
    assert response.status_code == 422, response.text
    assert len(response.content) < 2000


def test_422_never_echoes_the_request(client: TestClient, candles: list[dict[str, Any]]) -> None:
    huge = "A" * 10_000_000
    response = client.post("/predict", json=_with(candles, timestamp=huge, close=huge))
    assert response.status_code == 422
    assert len(response.content) < 2000 and b"AAAA" not in response.content
    broken = client.post("/predict", content=b'{"candles": [' + b"B" * 100_000)
    assert broken.status_code == 422 and len(broken.content) < 2000
    assert b"BBBB" not in broken.content


def test_default_body_cap_is_sized_for_the_model(bundle: Path) -> None:
    predictor = Predictor.from_bundle(bundle)
    assert default_max_body_bytes(predictor) == MIN_BODY_BYTES  # 5 candles: the 1 MiB floor
    predictor.min_history = 3021  # the default feature set: RSI-200 warm-up + lookback 64
    assert default_max_body_bytes(predictor) == 3021 * 256 * 4
    client = TestClient(create_app(predictor))
    response = client.post("/predict", content=b"x" * (3021 * 256 * 4 + 1))
    assert response.status_code == 413 and "max-body-bytes" in response.json()["detail"]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_server_caps_bodies_and_validates(
    bundle: Path, candles: list[dict[str, Any]]
) -> None:
    """``cryptoforecast serve`` under uvicorn on 127.0.0.1 with ``--max-body-bytes``."""
    port = _free_port()
    cmd = [sys.executable, "-m", "cryptoforecast.cli", "serve", "--bundle", str(bundle)]
    cmd += ["--port", str(port), "--max-body-bytes", "20000"]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env={**os.environ}
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", "/health")
                assert conn.getresponse().status == 200
                break
            except OSError:
                assert proc.poll() is None, proc.stderr.read().decode() if proc.stderr else ""
                assert time.monotonic() < deadline, "server did not start"
                time.sleep(0.2)

        def post(body: bytes) -> tuple[int, bytes]:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            headers = {"content-type": "application/json"}
            conn.request("POST", "/predict", body=body, headers=headers)
            response = conn.getresponse()
            return response.status, response.read()

        def raw(head: bytes, body: bytes = b"") -> bytes:
            """Send a request by hand and stop: the server must answer without the rest."""
            with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
                sock.sendall(head + body)
                chunks = []
                while chunk := sock.recv(65536):
                    chunks.append(chunk)
            return b"".join(chunks)

        ok = json.dumps({"candles": candles}).encode()
        assert post(ok)[0] == 200
        big = json.dumps({"candles": candles * 40}).encode()
        assert len(big) > 20000
        # Content-Length over the cap: 413 before a byte of the body is read
        head = b"POST /predict HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        answer = raw(head + b"Content-Length: %d\r\n\r\n" % len(big))
        assert answer.startswith(b"HTTP/1.1 413") and b"20000 bytes" in answer
        # chunked, no Content-Length: counted as it arrives, 413 once past the cap
        chunks = b"".join(
            b"%x\r\n%s\r\n" % (len(big[i : i + 4096]), big[i : i + 4096])
            for i in range(0, 24576, 4096)
        )
        answer = raw(head + b"Transfer-Encoding: chunked\r\n\r\n", chunks)
        assert answer.startswith(b"HTTP/1.1 413") and b"20000 bytes" in answer
        status, content = post(json.dumps(_with(candles, close=1e308)).encode())
        assert status == 422 and len(content) < 2000
        status, content = post(json.dumps(_with(candles, timestamp=-1)).encode())
        assert status == 422
        assert post(ok)[0] == 200  # still serving
    finally:
        proc.kill()
        proc.wait(timeout=30)

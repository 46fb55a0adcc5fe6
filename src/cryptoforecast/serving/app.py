"""HTTP serving (FastAPI): ``POST /predict`` with candles, ``GET /health``, ``GET /model``.

``create_app(predictor)`` is the app factory (``cryptoforecast serve`` runs it under uvicorn);
the predictor is loaded once at start-up, so a request costs features + one ONNX call. The
request's timestamps are parsed here, so clean candles take the Predictor's fast path (no
second parse, no pandas quality check; see ``serving/predictor.py``).

A request body is untrusted input:

- Bodies over ``max_body_bytes`` get a 413 before they are parsed (Content-Length is checked
  first, and a chunked body is counted as it arrives). The default is sized for the model:
  ``min_history`` candles at :data:`BYTES_PER_CANDLE` each, times :data:`BODY_MARGIN`, and at
  least :data:`MIN_BODY_BYTES`.
- Prices must be finite, ``> 0`` and ``< MAX_PRICE``; volume finite, ``>= 0`` and
  ``< MAX_VOLUME``; timestamps (ISO, or epoch s/ms/us as the file reader detects them) must lie
  in ``[MIN_TIME, MAX_TIME)``. Anything else is a 422 from the request model.
- Error bodies never echo the request: a 422 lists at most :data:`MAX_ERRORS` errors as
  ``{"loc", "msg"}`` with messages cut to :data:`MAX_MESSAGE` characters.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Awaitable, Callable, MutableMapping
from datetime import UTC, datetime
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field, field_validator

from cryptoforecast.data.schema import DataError
from cryptoforecast.data.sources import normalize_raw_frame
from cryptoforecast.serving.predictor import Predictor

#: Largest accepted open/high/low/close (any quote currency; 1e308 is not a price).
MAX_PRICE = 1e12
#: Largest accepted volume.
MAX_VOLUME = 1e18
#: Accepted candle open times: ``[MIN_TIME, MAX_TIME)`` UTC.
MIN_TIME = datetime(2000, 1, 1, tzinfo=UTC)
MAX_TIME = datetime(2100, 1, 1, tzinfo=UTC)
#: Request body budget per candle (a JSON candle with an ISO timestamp is ~130 bytes).
BYTES_PER_CANDLE = 256
#: Margin on ``min_history`` candles for the default body cap.
BODY_MARGIN = 4
#: The default body cap is never below this.
MIN_BODY_BYTES = 1 << 20
#: At most this many validation errors, each message at most this long, in a 422 body.
MAX_ERRORS = 5
MAX_MESSAGE = 200

_EPOCH_UNITS = ((1e11, 1.0), (1e14, 1e3), (1e17, 1e6))  # as data/sources.py: |n| < upper
_DIGITS = re.compile(r"-?\d+(\.\d+)?")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def _check_time(value: str | int | float) -> str | int | float:
    """Refuse a timestamp that is not finite, not parseable or outside ``[MIN_TIME, MAX_TIME)``."""
    if isinstance(value, str) and _DIGITS.fullmatch(value.strip()):
        number: float | None = float(value)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        number = float(value)
    else:
        number = None
    if number is not None:
        if not math.isfinite(number):
            raise ValueError("timestamp must be a finite number")
        scale = next((s for upper, s in _EPOCH_UNITS if abs(number) < upper), None)
        if scale is None:
            raise ValueError("timestamp is not a plausible epoch in s, ms or us")
        try:
            when = datetime.fromtimestamp(number / scale, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise ValueError("timestamp is out of range") from None
    else:
        try:
            when = datetime.fromisoformat(str(value).strip())
        except ValueError:
            raise ValueError("timestamp is not an ISO 8601 time or an epoch number") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
    if not MIN_TIME <= when < MAX_TIME:
        raise ValueError(
            f"timestamp is out of range: it must lie in [{MIN_TIME:%Y-%m-%d}, "
            f"{MAX_TIME:%Y-%m-%d}) UTC"
        )
    return value


class Candle(BaseModel):
    """One bar: ``timestamp`` is its open time (ISO string, naive = UTC, or epoch s/ms/us)."""

    timestamp: str | int | float
    open: float = Field(gt=0, lt=MAX_PRICE, allow_inf_nan=False)
    high: float = Field(gt=0, lt=MAX_PRICE, allow_inf_nan=False)
    low: float = Field(gt=0, lt=MAX_PRICE, allow_inf_nan=False)
    close: float = Field(gt=0, lt=MAX_PRICE, allow_inf_nan=False)
    volume: float = Field(ge=0, lt=MAX_VOLUME, allow_inf_nan=False)

    @field_validator("timestamp")
    @classmethod
    def _timestamp_in_range(cls, value: str | int | float) -> str | int | float:
        if isinstance(value, str) and len(value) > 64:
            raise ValueError("timestamp string is too long (at most 64 characters)")
        return _check_time(value)


class PredictRequest(BaseModel):
    """The newest candles, oldest first; at least the model's ``min_history`` of them."""

    candles: list[Candle] = Field(min_length=1)


def default_max_body_bytes(predictor: Predictor) -> int:
    """The default body cap for a model: ``min_history`` candles with a generous margin."""
    return max(MIN_BODY_BYTES, predictor.min_history * BYTES_PER_CANDLE * BODY_MARGIN)


class BodyLimit:
    """ASGI middleware: 413 for an HTTP request body over ``max_bytes`` (nothing is parsed).

    Args:
        app: the wrapped ASGI app.
        max_bytes: the largest accepted body.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, int(max_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Check Content-Length, then read the body up to the cap and replay it to the app."""
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
            except ValueError:
                await _short_response(send, 400, "bad Content-Length header")
                return
            if declared > self.max_bytes:
                await self._too_large(send)
                return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body = message.get("body", b"")
            size += len(body)
            if size > self.max_bytes:
                await self._too_large(send)
                return
            chunks.append(body)
            if not message.get("more_body", False):
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _too_large(self, send: Send) -> None:
        await _short_response(
            send,
            413,
            f"request body over {self.max_bytes} bytes (cryptoforecast serve --max-body-bytes)",
        )


async def _short_response(send: Send, status: int, detail: str) -> None:
    body = json.dumps({"detail": detail}).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"connection", b"close"),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


def _clip(text: str, limit: int = MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def create_app(predictor: Predictor, max_body_bytes: int | None = None) -> FastAPI:
    """The FastAPI app around one loaded :class:`Predictor`.

    Args:
        predictor: the loaded model.
        max_body_bytes: the request body cap (413 beyond it); default
            :func:`default_max_body_bytes`.
    """
    import pandas as pd

    limit = default_max_body_bytes(predictor) if max_body_bytes is None else int(max_body_bytes)
    if limit < 1:
        raise ValueError(f"max_body_bytes must be >= 1, got {limit}")
    app = FastAPI(title="cryptoforecast", version="1")
    app.state.max_body_bytes = limit
    app.add_middleware(BodyLimit, max_bytes=limit)

    @app.exception_handler(RequestValidationError)
    async def short_validation_error(
        _request: Request, exc: RequestValidationError
    ) -> JSONResponse:
        errors = exc.errors()
        detail = [
            {"loc": [str(p) for p in e.get("loc", ())][:6], "msg": _clip(str(e.get("msg", "")))}
            for e in errors[:MAX_ERRORS]
        ]
        return JSONResponse(status_code=422, content={"detail": detail, "errors": len(errors)})

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": predictor.source}

    @app.get("/model")
    def model() -> dict[str, Any]:
        return {**predictor.describe(), "max_body_bytes": limit}

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
        frame = pd.DataFrame([c.model_dump() for c in request.candles])
        try:
            return predictor.predict(normalize_raw_frame(frame, source="request"))
        except DataError as exc:  # bad or too few candles: the client's to fix
            raise HTTPException(status_code=422, detail=_clip(str(exc), 500)) from exc

    return app

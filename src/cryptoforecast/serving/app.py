"""HTTP serving (FastAPI): ``POST /predict`` with candles, ``GET /health``, ``GET /model``.

``create_app(predictor)`` is the app factory (``cryptoforecast serve`` runs it under uvicorn);
the predictor is loaded once at start-up, so a request costs features + one ONNX call. The
request's timestamps are parsed here, so clean candles take the Predictor's fast path (no
second parse, no pandas quality check; see ``serving/predictor.py``).
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, HTTPException
from pydantic import BaseModel, Field

from cryptoforecast.data.schema import DataError
from cryptoforecast.data.sources import normalize_raw_frame
from cryptoforecast.serving.predictor import Predictor


class Candle(BaseModel):
    """One bar: ``timestamp`` is its open time (ISO string, naive = UTC, or epoch s/ms/us)."""

    timestamp: str | int | float
    open: float
    high: float
    low: float
    close: float
    volume: float


class PredictRequest(BaseModel):
    """The newest candles, oldest first; at least the model's ``min_history`` of them."""

    candles: list[Candle] = Field(min_length=1)


def create_app(predictor: Predictor) -> FastAPI:
    """The FastAPI app around one loaded :class:`Predictor`."""
    import pandas as pd

    app = FastAPI(title="cryptoforecast", version="1")

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok", "model": predictor.source}

    @app.get("/model")
    def model() -> dict[str, Any]:
        return predictor.describe()

    @app.post("/predict")
    def predict(request: PredictRequest) -> dict[str, Any]:
        frame = pd.DataFrame([c.model_dump() for c in request.candles])
        try:
            return predictor.predict(normalize_raw_frame(frame, source="request"))
        except DataError as exc:  # bad or too few candles: the client's to fix
            raise HTTPException(status_code=422, detail=str(exc)) from exc

    return app

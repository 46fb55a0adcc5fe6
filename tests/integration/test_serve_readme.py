"""The README's serving example is true: the request it builds is answered as it shows, and the
candle count it quotes is what a model with the default features needs."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from hydra.utils import instantiate
from omegaconf import OmegaConf

from cryptoforecast.export.bundle import export_run
from cryptoforecast.features.pipeline import FeatureSet
from cryptoforecast.paths import CONF_DIR, PROJECT_ROOT
from cryptoforecast.serving.app import create_app
from cryptoforecast.serving.predictor import Predictor

from .test_export_runs import run_folder

README = (PROJECT_ROOT / "README.md").read_text()
SECTION = README[
    README.index("### Serving: request and response") : README.index("### Monitoring")
]


def _number(text: str) -> int:
    return int(text.replace(",", ""))


def test_readme_candle_count_is_the_default_features_need() -> None:
    feature_set: FeatureSet = instantiate(OmegaConf.load(CONF_DIR / "features" / "default.yaml"))
    need = re.search(r"\*\*([\d,]+)\*\* hourly candles", SECTION)
    warmup = re.search(r"feature warm-up of ([\d,]+) bars", SECTION)
    lookback = re.search(r"plus the lookback of (\d+)", SECTION)
    assert need and warmup and lookback
    assert _number(warmup.group(1)) == feature_set.warmup
    assert _number(lookback.group(1)) == feature_set.lookback
    assert _number(need.group(1)) == feature_set.min_history


@pytest.mark.slow
def test_readme_request_gets_the_documented_response(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    run = run_folder("lightgbm_default")  # default features: the same warm-up
    predictor = Predictor.from_bundle(export_run(run, tmp_path / "bundle"))
    client = TestClient(create_app(predictor))
    # the README's snippet, run as written: it writes outputs/request.json
    snippet = re.search(r"python - <<'PY'.*?\n(.*?)\nPY\n", SECTION, re.S)
    assert snippet
    monkeypatch.chdir(tmp_path)
    (tmp_path / "outputs").mkdir()
    exec(compile(snippet.group(1), "README.md", "exec"), {})  # noqa: S102 - our own README
    body = json.loads((tmp_path / "outputs" / "request.json").read_text())
    assert len(body["candles"]) == _number(re.search(r"([\d,]+) candles, ", SECTION).group(1))
    assert set(body["candles"][0]) == {"timestamp", "open", "high", "low", "close", "volume"}
    response = client.post("/predict", json=body)
    assert response.status_code == 200
    shown = re.search(r"Response \(200\):\n\n```json\n(.*?)\n```", SECTION, re.S)
    assert shown
    documented = json.loads(shown.group(1))
    got = response.json()
    assert set(got) == set(documented)
    assert set(got["forecasts"][0]) == set(documented["forecasts"][0])
    assert set(got["signal"]) == set(documented["signal"])
    assert got["timestamp"] == documented["timestamp"]  # the newest bundled candle
    assert got["close"] == documented["close"]
    short = client.post("/predict", json={"candles": body["candles"][-100:]})
    assert short.status_code == 422
    detail = short.json()["detail"]
    assert re.fullmatch(
        r"need at least \d+ candles \(feature warm-up 2957 \+ lookback \d+\), got 100", detail
    )

"""`cryptoforecast train`: the report's options map onto Hydra overrides."""

from __future__ import annotations

import pytest

from cryptoforecast.cli import _build_parser, main, train_overrides


def test_report_options_map_to_overrides() -> None:
    args = _build_parser().parse_args(
        [
            "train",
            "btcusdt",
            "--model-type",
            "tcn",
            "--days",
            "365",
            "--epochs",
            "100",
            "--task",
            "classification",
            "--horizon",
            "[1,4,24]",
            "--variant",
            "deep",
        ]
    )
    assert train_overrides(args) == [
        "data.symbol=BTCUSDT",
        "model=tcn",
        "model.variant=deep",
        "data.days=365",
        "trainer.max_epochs=100",
        "task=classification",
        "target.horizon=[1,4,24]",
    ]


def test_unknown_model_type_exits_1_listing_known(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["train", "BTCUSDT", "--model-type", "prophet"]) == 1
    assert "unknown model type 'prophet'; known: attention_lstm" in capsys.readouterr().err


def test_stray_options_are_refused_outside_train() -> None:
    with pytest.raises(SystemExit):
        main(["data", "check", "BTCUSDT", "features=minimal"])

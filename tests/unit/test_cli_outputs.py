"""Every command's default output lies under ``outputs/`` (git-ignored), and ``--help`` says
where each command writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryptoforecast.cli import _build_parser, main
from cryptoforecast.paths import PROJECT_ROOT


def test_output_defaults_are_under_outputs() -> None:
    parser = _build_parser()
    paper = parser.parse_args(
        ["paper-trade", "--bundle", "b", "--data", "BTCUSDT", "--start", "2026-03-01"]
    )
    assert paper.out == Path("outputs/paper_trade")
    mon = parser.parse_args(["monitor", "--bundle", "b", "--data", "BTCUSDT"])
    assert mon.out == Path("outputs/monitor")
    assert "outputs/" in (PROJECT_ROOT / ".gitignore").read_text().splitlines()


@pytest.mark.parametrize(
    ("argv", "where"),
    [
        (["train"], "outputs/train/runs/<time>_<model>/"),
        (["export"], "default: RUN_DIR/bundle"),
        (["paper-trade"], "default: outputs/paper_trade"),
        (["monitor"], "default: outputs/monitor"),
        (["retrain"], "default: outputs/retrain/runs/<time>_<name>"),
        (["compare"], "default: the first PATH"),
        (["registry"], "~/.cryptoforecast/registry"),
        (["data", "download"], "$CRYPTOFORECAST_CACHE"),
    ],
)
def test_help_says_where_output_goes(
    argv: list[str], where: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main([*argv, "--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert where in text


def test_readme_examples_write_under_outputs() -> None:
    """The README's commands name no output folder outside ``outputs/`` (bundles/, mon, ...)."""
    readme = (PROJECT_ROOT / "README.md").read_text()
    for stale in (" bundles/", "--out mon", " paper_trade/", "out.ipynb", "--out hourly.csv"):
        assert stale not in readme, stale
    for name in ("01_attention_weights", "02_compare_runs"):
        nb = (PROJECT_ROOT / "notebooks" / f"{name}.ipynb").read_text()
        assert "out.ipynb" not in nb and f"outputs/{name}.ipynb" in nb

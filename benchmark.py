"""Entry point: ``python benchmark.py`` (every model on identical walk-forward folds)."""

from cryptoforecast.pipelines.entry import benchmark_main

if __name__ == "__main__":
    benchmark_main()

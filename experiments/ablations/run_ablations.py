"""Run ablation studies on identical walk-forward folds and write their reports.

    cd experiments/ablations  # or give the paths from the repository root
    python run_ablations.py studies.yaml                      # every study
    python run_ablations.py studies.yaml --only wavelet_lightgbm
    python run_ablations.py studies.yaml --smoke              # tiny data, minutes

Options: ``--only STUDY`` (repeatable or comma-separated), ``--smoke`` (the file's tiny smoke
overrides; reports to outputs/ablations_smoke), ``--out DIR`` (reports; runs in DIR/runs),
``--runs DIR``, ``--force`` (retrain reusable runs). See cryptoforecast.pipelines.ablation
(studies, runs, evaluation) and cryptoforecast.pipelines.ablation_report (reports, driver).
"""

import sys

from cryptoforecast.pipelines.ablation_report import main

if __name__ == "__main__":
    sys.exit(main())

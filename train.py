"""Entry point: ``python train.py model=attention_lstm data.days=365`` (a Hydra app)."""

from cryptoforecast.pipelines.entry import train_main

if __name__ == "__main__":
    train_main()

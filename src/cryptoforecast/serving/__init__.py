"""Serving: predictor on raw candles, HTTP app, paper trading. Never imports torch."""

"""Experiment tracking: the W&B logger (online when logged in, else offline), run figures."""

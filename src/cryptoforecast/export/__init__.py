"""ONNX export of trained runs and the model bundle.

Nothing is imported here on purpose: ``export.bundle`` (manifest and checksums) is read by the
serving path, which must not import torch; ``export.onnx`` and ``export.lightgbm_onnx`` import
torch / LightGBM / onnxmltools and are only loaded by ``cryptoforecast export``.
"""

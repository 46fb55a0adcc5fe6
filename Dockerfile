# CPU serving image for an exported model bundle: `cryptoforecast serve` (FastAPI + onnxruntime).
#
# NOT BUILT OR RUN HERE: the development machines have no Docker daemon and no network beyond the
# package registries, so this file is untested as an image. What it runs is tested:
# tests/integration/test_serving.py exercises the same app, and checks that serving never imports
# torch or lightning, which is why the image installs the package with --no-deps and only the
# serving runtime below (no torch, no lightning, no LightGBM: trees are served as ONNX).
#
#   docker build -t cryptoforecast-serve .
#   docker run --rm -p 8000:8000 -v /path/to/bundle:/bundle:ro cryptoforecast-serve
#   # or a registry: -v ~/.cryptoforecast/registry:/registry:ro and
#   #   --model btc@production --registry /registry   (replaces the default command's --bundle)
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
WORKDIR /app

# Serving runtime only; keep these ranges in line with pyproject.toml (dependencies + [serve]).
RUN pip install \
    "numpy>=1.26,<3" "pandas>=2.2,<4" "pyarrow>=15,<30" "onnxruntime>=1.18,<2" \
    "ta-lib>=0.6.5,<0.9" "PyWavelets>=1.6,<2" "rich>=13,<16" \
    "fastapi>=0.110,<1" "uvicorn>=0.29,<1" "httpx>=0.27,<1"

COPY pyproject.toml README.md ./
COPY src ./src
RUN pip install --no-deps . && useradd --create-home --uid 10001 serve
USER serve

EXPOSE 8000
HEALTHCHECK --interval=30s --timeout=3s CMD python -c \
    "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
ENTRYPOINT ["cryptoforecast", "serve", "--host", "0.0.0.0", "--port", "8000"]
CMD ["--bundle", "/bundle"]

# repgeom's dashboard on CPU-only torch, served by gunicorn (repgeom/gunicorn_conf.py).
#   docker build -t repgeom .
#   docker run --rm -p 8050:8050 --stop-timeout 45 repgeom
# Settings are REPGEOM_* variables (README, "Deploy with Docker"); docker-compose.yml adds
# Redis and a Celery worker.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    REPGEOM_HOST=0.0.0.0 \
    REPGEOM_CACHE_DIR=/tmp/repgeom-cache \
    NUMBA_CACHE_DIR=/tmp/numba-cache

WORKDIR /app

# torch/torchvision: the CPU wheels, pinned as in requirements.txt; then the rest of
# requirements.txt without its torch lines, so pip never fetches the CUDA build.
COPY requirements.txt ./
RUN pip install --no-cache-dir --index-url https://download.pytorch.org/whl/cpu \
        torch==2.14.1 torchvision==0.29.1 \
    && grep -v -E '^(torch|torchvision)==' requirements.txt > /tmp/requirements-cpu.txt \
    && pip install --no-cache-dir -r /tmp/requirements-cpu.txt \
    && rm /tmp/requirements-cpu.txt

# The code and the checkpoints, owned by root; the models folder read-only even for root.
COPY app.py ./
COPY repgeom ./repgeom
COPY assets ./assets
COPY models ./models
# The numba kernels compiled now into NUMBA_CACHE_DIR (the server loads them in 0.3 s instead
# of compiling for 10 s), owned by the app's user, who recompiles there on another CPU model.
RUN python -m compileall -q app.py repgeom \
    && python -c "from repgeom.core.kernels import compile_kernels; compile_kernels()" \
    && chmod -R a-w /app/models \
    && groupadd --system --gid 10001 repgeom \
    && useradd --system --no-log-init --uid 10001 --gid 10001 --no-create-home \
        --home-dir /nonexistent --shell /usr/sbin/nologin repgeom \
    && chown -R 10001:10001 "$NUMBA_CACHE_DIR"

USER 10001:10001
EXPOSE 8050
# No curl in the slim image: python's urllib asks /healthz (200 once the models are loaded).
HEALTHCHECK --interval=30s --timeout=5s --start-period=90s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('REPGEOM_PORT', '8050') + '/healthz', timeout=4)"]
CMD ["gunicorn", "-c", "python:repgeom.gunicorn_conf", "app:server"]

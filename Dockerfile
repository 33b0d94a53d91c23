# examserver worker image: small (slim base, no build tools in the final stage), non-root, with a
# healthcheck on /readyz. Build: docker build -t examserver .
FROM python:3.11-slim AS build
ENV UV_COMPILE_BYTECODE=1 UV_LINK_MODE=copy UV_PYTHON_DOWNLOADS=never
RUN pip install --no-cache-dir uv
WORKDIR /app
COPY pyproject.toml uv.lock README.md ./
RUN uv sync --frozen --no-dev --no-install-project
COPY delivery_service delivery_service
COPY test_assembly test_assembly
COPY integrity integrity
RUN uv sync --frozen --no-dev

FROM python:3.11-slim
RUN useradd --system --uid 10001 --no-create-home examserver
WORKDIR /app
COPY --from=build --chown=examserver:examserver /app /app
ENV PATH="/app/.venv/bin:$PATH" \
    PYTHONUNBUFFERED=1 \
    EXAMSERVER_ENVIRONMENT=production \
    EXAMSERVER_LOG_FORMAT=json
USER examserver
EXPOSE 8000
# SIGTERM starts the drain (readyz 503, sockets told 1012); give it time before SIGKILL.
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["python", "-c", "import urllib.request,sys; sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:8000/healthz', timeout=2).status == 200 else 1)"]
CMD ["examserver", "serve", "--host", "0.0.0.0", "--port", "8000"]

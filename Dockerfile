# syntax=docker/dockerfile:1
# One image for the four Helpdesk services and the portal (and the migrate job in
# docker-compose.yml):
# the command picks the service, e.g. `python -m helpdesk.intake serve`.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    UV_PYTHON_DOWNLOADS=never \
    UV_PYTHON=/usr/local/bin/python3.11 \
    UV_PROJECT_ENVIRONMENT=/app/.venv \
    UV_COMPILE_BYTECODE=1 \
    UV_LINK_MODE=copy

# uv from PyPI, the same minor version as the developers' machines (see DESIGN.md).
RUN pip install --no-cache-dir "uv==0.13.9"

WORKDIR /app

# Third-party dependencies first, from the lock file and the members' pyproject.toml files
# only, so this layer is rebuilt only when dependencies change.
COPY pyproject.toml uv.lock ./
COPY shared/pyproject.toml shared/pyproject.toml
COPY deploy/pyproject.toml deploy/pyproject.toml
COPY services/intake/pyproject.toml services/intake/pyproject.toml
COPY services/sla-timer/pyproject.toml services/sla-timer/pyproject.toml
COPY services/billing/pyproject.toml services/billing/pyproject.toml
COPY services/notifier/pyproject.toml services/notifier/pyproject.toml
COPY services/portal/pyproject.toml services/portal/pyproject.toml
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev --no-install-workspace

# Then the workspace itself (see .dockerignore for what stays out).
COPY . .
RUN --mount=type=cache,target=/root/.cache/uv \
    uv sync --frozen --no-dev

RUN useradd --system --uid 10001 --user-group --no-create-home --home-dir /nonexistent helpdesk
USER helpdesk

ENV PATH="/app/.venv/bin:${PATH}"

# HTTP: intake 8000, sla-timer 8001, billing 8002, notifier 8003, portal 8004; intake's SMTP
# listener 2525.
EXPOSE 8000 8001 8002 8003 8004 2525

CMD ["python", "-m", "helpdesk.intake", "serve"]

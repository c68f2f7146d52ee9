# The one entry point. `make up` runs the whole stack; `make test` runs lint and every test tier.
SHELL := /bin/bash
.DEFAULT_GOAL := help
export UV_PYTHON_DOWNLOADS := never

# uv from PATH, else the one pip installs for this Python (`python3 -m uv`).
UV := $(shell command -v uv 2>/dev/null || echo "python3 -m uv")
RUN := $(UV) run --frozen
SERVICES := intake sla-timer billing notifier

.PHONY: help bootstrap up up-background down status lint format test test-unit test-integration test-e2e bench ops-report $(addprefix rebuild-,$(SERVICES)) $(addprefix retry-parked-,$(SERVICES)) $(addprefix dead-letters-,$(SERVICES))

help: ## list the targets
	@grep -E '^[a-z%-]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | sort

bootstrap: ## install uv (from PyPI) and the Python environment if missing
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 \
		|| python3 -m pip install --quiet --disable-pip-version-check uv
	@$(UV) sync --frozen --quiet
	@# The portal's browser tests drive Debian's chromium (Playwright never downloads one), as
	@# in .ci/run: apt-get installs it where missing if we may, else we say how.
	@command -v chromium >/dev/null 2>&1 || { \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
			apt-get update -qq && DEBIAN_FRONTEND=noninteractive \
				apt-get install -y -qq --no-install-recommends chromium; \
		else echo "chromium is missing (the browser tests need it): sudo apt-get install chromium"; fi; }

up: bootstrap ## run Kafka, PostgreSQL, the four services and the portal; Ctrl-C stops everything
	$(RUN) python -m helpdesk.deploy up

up-background: bootstrap ## the same, left running (stop it with `make down`)
	$(RUN) python -m helpdesk.deploy up --background

down: ## stop a background stack
	$(RUN) python -m helpdesk.deploy down

status: ## what of the local stack runs
	$(RUN) python -m helpdesk.deploy status

$(addprefix rebuild-,$(SERVICES)): rebuild-%: bootstrap ## replay the stream into a service's projection
	$(RUN) python -m helpdesk.deploy rebuild $(subst -,_,$*)

$(addprefix retry-parked-,$(SERVICES)): retry-parked-%: bootstrap ## apply a service's parked events again
	$(RUN) python -m helpdesk.deploy retry-parked $(subst -,_,$*)

lint: bootstrap ## ruff (lint + format check), mypy --strict, import-linter
	$(RUN) ruff check .
	$(RUN) ruff format --check .
	$(RUN) mypy conftest.py tests bench shared deploy services
	$(RUN) lint-imports

format: bootstrap ## apply ruff's fixes and formatting
	$(RUN) ruff check --fix .
	$(RUN) ruff format .

test: lint ## lint, then the unit, integration and e2e tiers against real Kafka and PostgreSQL
	$(RUN) pytest

test-unit: bootstrap
	$(RUN) pytest -m unit

test-integration: bootstrap
	$(RUN) pytest -m integration

test-e2e: bootstrap
	$(RUN) pytest -m e2e

$(addprefix dead-letters-,$(SERVICES)): dead-letters-%: bootstrap ## list a service's outbox rows that can never be published
	$(RUN) python -m helpdesk.deploy dead-letters $(subst -,_,$*)

bench: bootstrap ## throughput figures against a baseline measured in the same run
	$(RUN) python -m bench

ops-report: bootstrap ## draw the Service desk and Pipeline panels from the `make up` Prometheus to a PNG
	$(RUN) python -m helpdesk.deploy.ops_report

# Two commands matter: `make run` (the whole product on embedded defaults)
# and `make test` (the whole suite). Everything else supports them.
PYTHON ?= python3.11
# Settings come from the environment; a .env file (see .env.example) is read too.
-include .env
export
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint format install browser clean-venv

run: $(STAMP)
	$(BIN)/python manage.py serve

test: $(STAMP) browser
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/pytest

lint: $(STAMP)
	$(BIN)/ruff check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

install: $(STAMP)

# Browser tests drive Debian's Chromium with Playwright. Install it when we can (root
# on Debian/Ubuntu); elsewhere install chromium yourself or those tests are skipped.
CHROMIUM ?= $(shell command -v chromium || command -v chromium-browser)
browser:
	@if [ -z "$(CHROMIUM)" ]; then \
		if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
			echo "Installing Chromium for the browser tests (apt-get)..."; \
			apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
		else \
			echo "Chromium not found: browser tests will be skipped (install the chromium package to run them)."; \
		fi; \
	fi

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt requirements-dev.txt | $(BIN)/python
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r requirements-dev.txt
	touch $@

clean-venv:
	rm -rf $(VENV)

# Tidepool: `make run` runs the bot, `make test` runs every check. Both set up .venv themselves.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin

.PHONY: run sandbox test lint docs bench emulator clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip

# Reinstall whenever pyproject.toml changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -e ".[dev]"
	touch $@ $(VENV)/.installed

run: $(VENV)/.installed
	$(BIN)/tidepool run --sandbox-without-token

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The documentation (docs/, mkdocs.yml) in Chinese and English, into site/; a broken link, a page
# missing in one language or an undocumented SOP option fails it. `$(BIN)/mkdocs serve` shows it
# while you write.
docs: $(VENV)/.installed-dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# On SQLite alone the tests run in two processes (pytest-xdist): most of them wait on a bot process
# or a browser, and the suite takes about half as long. The PostgreSQL tests share one database
# (TIDEPOOL_TEST_POSTGRES_URL, as .ci/run sets it), so then they run in one.
PYTEST_WORKERS := $(if $(TIDEPOOL_TEST_POSTGRES_URL),,-n 2)

test: lint docs
	.ci/chromium
	$(BIN)/pytest $(PYTEST_WORKERS)

bench: $(VENV)/.installed-dev
	$(BIN)/python -m bench.ingest
	$(BIN)/python -m bench.delivery
	$(BIN)/python -m bench.sop
	$(BIN)/python -m bench.checkin
	$(BIN)/python -m bench.lottery
	$(BIN)/python -m bench.broadcast
	$(BIN)/python -m bench.stats
	$(BIN)/python -m bench.console
	$(BIN)/python -m bench.invites
	$(BIN)/python -m bench.moderation

sandbox: $(VENV)/.installed
	$(BIN)/tidepool sandbox

emulator: $(VENV)/.installed
	$(BIN)/tidepool emulator

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache *.egg-info site

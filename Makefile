# kbq: `make run` serves the API and the widget demo; `make test` runs the whole suite.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

.PHONY: setup test lint run index eval bench clean browser

setup: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $(STAMP)

browser:
	@command -v chromium >/dev/null 2>&1 || (apt-get update -qq && apt-get install -y -qq chromium >/dev/null)

index: setup
	$(BIN)/kbq ingest corpus  # incremental: embeds only what changed, rebuilds an index of an older format

test: setup browser
	$(BIN)/ruff check kb ingest service evals tests benchmarks
	$(BIN)/python -m pytest -q -p no:cacheprovider

lint: setup
	$(BIN)/ruff check kb ingest service evals tests benchmarks
	$(BIN)/ruff format --check kb ingest service evals tests benchmarks
	$(BIN)/mypy

run: index
	@echo "kbq: open http://$(HOST):$(PORT)/"
	$(BIN)/kbq serve --host $(HOST) --port $(PORT)

eval: index
	$(BIN)/kbq eval

bench: index
	$(BIN)/pip install -q -e '.[bench]'
	$(BIN)/python -m benchmarks.profile
	$(BIN)/python -m benchmarks.cold_ask
	$(BIN)/python -m benchmarks.warm
	$(BIN)/python -m benchmarks.minilm
	$(BIN)/python -m benchmarks.e5
	$(BIN)/python -m benchmarks.http_latency
	$(BIN)/python -m benchmarks.naive_langchain
	$(BIN)/python -m benchmarks.profiles

clean:
	rm -rf .kbq

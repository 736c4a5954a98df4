# pbf-headless — one command each for people and CI.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
HOST   ?= 127.0.0.1
PORT   ?= 8000
PG_DSN ?= postgresql://postgres@127.0.0.1:5432/test
# pytest-xdist workers (the suite is process-safe: every test has its own database copy).
JOBS   ?= 2
PYTEST := $(BIN)/python -m pytest -q -p no:cacheprovider -n $(JOBS)

.PHONY: run test test-sqlite test-postgres lint format openapi docs bench clean

$(BIN)/pbf-headless: pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

## run: create the environment, migrate, create a sandbox API key, serve on $(HOST):$(PORT)
run: export PBF_MODE = sandbox
run: export PBF_PUBLIC_BASE_URL ?= http://$(HOST):$(PORT)
run: $(BIN)/pbf-headless
	$(BIN)/pbf-headless migrate
	@echo "sandbox API key (use as 'Authorization: Bearer <key>'):"
	@$(BIN)/pbf-headless api-keys create --name sandbox --scope admin | tail -n 1
	$(BIN)/pbf-headless serve --sandbox --host $(HOST) --port $(PORT)

## test: lint, then the whole suite on SQLite and (when reachable) PostgreSQL
test: $(BIN)/pbf-headless lint test-sqlite test-postgres

test-sqlite: $(BIN)/pbf-headless
	PBF_TEST_DB=sqlite $(PYTEST) $(ARGS)

test-postgres: $(BIN)/pbf-headless
	@if $(BIN)/python -c "import asyncio, asyncpg; asyncio.run(asyncpg.connect('$(PG_DSN)', timeout=5))" 2>/dev/null; then \
		PBF_TEST_DB=postgresql PBF_TEST_PG_DSN=$(PG_DSN) $(PYTEST) $(ARGS); \
	elif [ -n "$$CI" ]; then echo "PostgreSQL not reachable at $(PG_DSN) (required in CI)"; exit 1; \
	else echo "SKIPPED: PostgreSQL not reachable at $(PG_DSN); ran SQLite only"; fi

lint: $(BIN)/pbf-headless
	$(BIN)/ruff format --check app tests migrations bench
	$(BIN)/ruff check app tests migrations bench
	$(BIN)/mypy

format: $(BIN)/pbf-headless
	$(BIN)/ruff format app tests migrations bench
	$(BIN)/ruff check --fix app tests migrations bench

openapi: $(BIN)/pbf-headless
	$(BIN)/pbf-headless openapi -o openapi/openapi.json

## docs: regenerate openapi/openapi.json and the README settings table
docs: openapi
	$(BIN)/python -m app.docs_writer README.md

## bench: every benchmark (real uvicorn processes, wrk), one table + bench/results.json
bench: $(BIN)/pbf-headless
	@command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python -m bench.run $(ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

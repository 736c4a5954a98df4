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

.PHONY: run test test-sqlite test-postgres lint format openapi docs bench clean reliability

# Two stamps in one venv: `make run` needs the runtime dependencies only (-e .); the other
# targets need the dev extras too. The dev stamp implies the run stamp.
RUN_DEPS := $(VENV)/.run-deps
DEV_DEPS := $(VENV)/.dev-deps

$(RUN_DEPS): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -e .
	touch $@

$(DEV_DEPS): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@ $(RUN_DEPS)

## run: sandbox on $(HOST):$(PORT) (runtime deps only; migrates; prints URLs and a reusable key)
run: export PBF_MODE = sandbox
run: $(RUN_DEPS)
	@$(BIN)/pbf-headless serve --sandbox --host $(HOST) --port $(PORT)

## test: lint, then the whole suite on SQLite and (when reachable) PostgreSQL
test: $(DEV_DEPS) lint test-sqlite test-postgres

test-sqlite: $(DEV_DEPS)
	PBF_TEST_DB=sqlite $(PYTEST) $(ARGS)

test-postgres: $(DEV_DEPS)
	@if $(BIN)/python -c "import asyncio, asyncpg; asyncio.run(asyncpg.connect('$(PG_DSN)', timeout=5))" 2>/dev/null; then \
		PBF_TEST_DB=postgresql PBF_TEST_PG_DSN=$(PG_DSN) $(PYTEST) $(ARGS); \
	elif [ -n "$$CI" ]; then echo "PostgreSQL not reachable at $(PG_DSN) (required in CI)"; exit 1; \
	else echo "SKIPPED: PostgreSQL not reachable at $(PG_DSN); ran SQLite only"; fi

lint: $(DEV_DEPS)
	$(BIN)/ruff format --check app tests migrations bench
	$(BIN)/ruff check app tests migrations bench
	$(BIN)/mypy
	$(BIN)/lint-imports

format: $(DEV_DEPS)
	$(BIN)/ruff format app tests migrations bench
	$(BIN)/ruff check --fix app tests migrations bench

openapi: $(DEV_DEPS)
	$(BIN)/pbf-headless openapi -o openapi/openapi.json

## docs: regenerate openapi/openapi.json and the README settings table
docs: openapi
	$(BIN)/python -m app.docs_writer README.md

## reliability: fault matrix (200 OAuth onboardings), SIGKILL crash tests, schemathesis and
## the hostile corpus on PostgreSQL; prints one table (every loss column must be 0)
RELIABILITY_FIGURES := var/reliability-figures.jsonl
reliability: $(DEV_DEPS)
	mkdir -p var && rm -f $(RELIABILITY_FIGURES)
	PBF_TEST_DB=postgresql PBF_TEST_PG_DSN=$(PG_DSN) PBF_RELIABILITY_ONBOARDINGS=200 \
	PBF_RELIABILITY_FULL=1 PBF_RELIABILITY_FIGURES=$(abspath $(RELIABILITY_FIGURES)) \
	$(BIN)/python -m pytest -q -p no:cacheprovider -n 2 --dist loadfile \
		-m "reliability or not reliability" \
		tests/reliability/test_fault_matrix.py tests/reliability/test_crash.py \
		tests/reliability/test_fuzz.py tests/reliability/test_hostile_corpus.py
	$(BIN)/python -m tests.reliability.figures $(RELIABILITY_FIGURES)

## bench: every benchmark (real uvicorn processes, wrk), one table + bench/results.json
bench: $(DEV_DEPS)
	@command -v wrk >/dev/null || apt-get install -y wrk
	$(BIN)/python -m bench.run $(ARGS)

clean:
	rm -rf $(VENV) var .pytest_cache .mypy_cache .ruff_cache

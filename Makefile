# segstream developer entry points. `make test` is the test command (CI runs it via .ci/run).
# Everything runs from the project virtualenv in .venv; the Kafka broker is a real Apache Kafka
# (3.9.1 by default, 4.x with KAFKA_VERSION) fetched by Maven and run by deploy/kafka/kafka.sh
# (settings: KAFKA_VERSION, KAFKA_PORT, KAFKA_DATA_DIR, ...).

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help
# Targets depend on each other in order (setup before lint before tests); keep them serial.
.NOTPARALLEL:

PYTHON ?= python3.11
# Go builds the Grafana dashboard schema check (deploy/grafana/check); /usr/local/go when not on PATH.
GO ?= $(or $(shell command -v go),/usr/local/go/bin/go)
VENV := .venv
BIN := $(VENV)/bin
GRAFANA_CHECK := $(BIN)/grafana-dashboard-check
KAFKA := deploy/kafka/kafka.sh
# Only paths that exist (empty folders are not in a fresh clone).
LINT_PATHS := $(wildcard service tests bench harness)
PYTEST_ARGS ?=
comma := ,
BENCH_ARGS ?=
# The Kafka 4.x release the suite is also run on (the broker_compat subset in `make test`, the
# whole suite in `make test-kafka4`), and the port of that run's broker (controller: the next).
KAFKA4_VERSION ?= 4.4.0
KAFKA4_TEST_PORT ?= 19492
KAFKA4_TEST_ENV := SEGSTREAM_TEST_KAFKA_VERSION=$(KAFKA4_VERSION) SEGSTREAM_TEST_KAFKA_PORT=$(KAFKA4_TEST_PORT)

.PHONY: help setup kafka-fetch kafka4-fetch test-kafka4 kafka-up kafka-down kafka-status kafka-logs \
	constraints wheel test-pythons lint format typecheck test-unit test-integration test demo bench bench-changes bench-quality soak quix-venv chaos chaos-cluster chaos-network chaos-upgrade cluster-up cluster-down clean distclean api-fuzz worker demo-stop

help: ## list the targets
	@grep -E '^[a-z][a-zA-Z0-9_-]+:.*## ' $(MAKEFILE_LIST) \
		| awk 'BEGIN {FS = ":.*## "} {printf "  make %-18s %s\n", $$1, $$2}'

# ---------------------------------------------------------------- environment

# Quick no-op when .venv exists and was installed from the current pyproject.toml.
setup: ## create .venv (python3.11) and install the project with dev extras, versions pinned by constraints.txt
	@stamp="$(VENV)/.segstream-setup-$$(cat pyproject.toml constraints.txt | sha256sum | cut -c1-16)"; \
	if [[ -x "$(BIN)/python" && -f "$$stamp" ]]; then \
		echo "setup: $(VENV) up to date with pyproject.toml"; \
	else \
		if [[ ! -x "$(BIN)/python" ]]; then \
			echo "setup: creating $(VENV) with $(PYTHON)"; \
			$(PYTHON) -m venv $(VENV); \
		fi; \
		echo "setup: installing the project into $(VENV) (pip install -c constraints.txt -e '.[dev]')"; \
		$(BIN)/python -m pip install --disable-pip-version-check -q -c constraints.txt -e '.[dev]'; \
		rm -f $(VENV)/.segstream-setup-*; \
		touch "$$stamp"; \
	fi
	@if [[ -x "$(GO)" ]]; then \
		$(MAKE) --no-print-directory -s $(GRAFANA_CHECK); \
	else \
		echo "setup: WARNING: no Go at $(GO): $(GRAFANA_CHECK) not built, so the dashboard's schema test fails (the demo runs without it)"; \
	fi

# The dashboard's schema check: Grafana's dashboard and panel schemas as compiled into the
# Grafana Foundation SDK, at the version pinned (with its checksum) in deploy/grafana/check/go.mod
# and go.sum. Rebuilt when those files change; the unit suite fails without it. Needs Go.
$(GRAFANA_CHECK): $(wildcard deploy/grafana/check/*.go deploy/grafana/check/go.*)
	@echo "setup: building $@ (deploy/grafana/check, with $(GO))"
	cd deploy/grafana/check && GOFLAGS=-mod=readonly $(GO) build -trimpath -o $(abspath $@) .

# ---------------------------------------------------------------- Kafka broker (dev: 127.0.0.1:9092)

kafka-fetch: ## fetch the Apache Kafka broker jars with Maven (no-op when present)
	$(KAFKA) fetch

kafka4-fetch: ## fetch the Kafka 4.x jars the suite also runs on (KAFKA4_VERSION)
	KAFKA_VERSION=$(KAFKA4_VERSION) $(KAFKA) fetch

kafka-up: ## start the dev broker on 127.0.0.1:$KAFKA_PORT (default 9092); idempotent
	$(KAFKA) start

kafka-down: ## stop the dev broker; idempotent
	$(KAFKA) stop

kafka-status: ## show whether the dev broker runs (fails when it does not)
	$(KAFKA) status

kafka-logs: ## show the tail of the dev broker log
	$(KAFKA) logs

cluster-up: setup kafka-fetch ## start a three-broker KRaft cluster on 127.0.0.1:39092,39094,39096 (RF 3, min ISR 2)
	$(BIN)/python -m harness.cluster up

cluster-down: ## stop the three-broker cluster
	$(BIN)/python -m harness.cluster down

# ---------------------------------------------------------------- checks

lint: setup ## ruff check + ruff format --check; gofmt and go vet on the dashboard check
	$(BIN)/ruff check $(LINT_PATHS)
	$(BIN)/ruff format --check $(LINT_PATHS)
	@unformatted="$$($(dir $(GO))gofmt -l deploy/grafana/check)"; \
	if [[ -n "$$unformatted" ]]; then echo "gofmt: not formatted: $$unformatted"; exit 1; fi
	cd deploy/grafana/check && $(GO) vet .

format: setup ## apply ruff fixes and formatting
	$(BIN)/ruff check --fix $(LINT_PATHS)
	$(BIN)/ruff format $(LINT_PATHS)

constraints: setup ## pin what .venv has installed for segstream[dev] into constraints.txt (after changing a dependency)
	$(BIN)/python deploy/constraints.py constraints.txt

wheel: setup ## build the sdist and the wheel into dist/ (uv build: the wheel is built from the sdist)
	$(BIN)/uv build -o dist .

# The wheel test (tests/integration/test_wheel.py) with every other interpreter found here.
TEST_PYTHONS ?= $(wildcard /root/.pyenv/versions/3.12*/bin/python3.12 /root/.pyenv/versions/3.13*/bin/python3.13 /usr/bin/python3.12 /usr/bin/python3.13)
test-pythons: setup kafka-fetch ## the installed-wheel test on Python 3.12 and 3.13 too (TEST_PYTHONS)
	SEGSTREAM_TEST_PYTHONS="$(BIN)/python,$(subst $(eval) ,$(comma),$(strip $(TEST_PYTHONS)))" $(BIN)/pytest tests/integration/test_wheel.py $(PYTEST_ARGS)

typecheck: setup ## mypy (strict, settings in pyproject.toml)
	$(BIN)/mypy

# The part of the suite without a broker (unit tests and every doctest outside
# tests/integration) runs on PYTEST_WORKERS processes (pytest-xdist), a test file each at a
# time (--dist loadfile: a module's fixtures are set up once); so do the integration tests,
# each process with a broker of its own (ports 1000 apart: tests/integration/conftest.py).
# Together the two runs are the whole suite, each test once.
PYTEST_WORKERS ?= 2
UNIT_PYTEST := $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile --ignore=tests/integration
INTEGRATION_PYTEST := $(BIN)/pytest -n $(PYTEST_WORKERS) --dist loadfile tests/integration

test-unit: setup ## unit tests and doctests (no broker), on PYTEST_WORKERS processes
	$(UNIT_PYTEST) $(PYTEST_ARGS)

# The integration conftest starts its own dedicated broker (127.0.0.1:19092 by default,
# SEGSTREAM_TEST_KAFKA_PORT; 20092 for the second process) with a fresh data dir, and stops
# it at the end.
test-integration: setup kafka-fetch ## integration tests against real Kafka brokers, on PYTEST_WORKERS processes
	$(INTEGRATION_PYTEST) $(PYTEST_ARGS)

# The whole suite (the part without a broker, then the integration tests, each in parallel) on
# Kafka 3.9.1; after it, the broker_compat subset (tests/integration/conftest.py)
# on Kafka 4.x, on a broker of its own.
test: setup lint typecheck kafka-fetch kafka4-fetch ## THE test command: setup, lint, typecheck, whole pytest suite (unit part in parallel), then its broker_compat subset on Kafka 4.x
	$(UNIT_PYTEST) $(PYTEST_ARGS)
	$(INTEGRATION_PYTEST) $(PYTEST_ARGS)
	$(KAFKA4_TEST_ENV) $(BIN)/pytest tests/integration -m broker_compat

test-kafka4: setup kafka4-fetch ## the whole integration suite on Kafka 4.x (KAFKA4_VERSION; ~25 min)
	$(KAFKA4_TEST_ENV) $(BIN)/pytest tests/integration $(PYTEST_ARGS)

# ---------------------------------------------------------------- demo
# Benchmarks: in-process pipeline micro-benchmark, then real workers on a dedicated broker
# (127.0.0.1:29192, started and stopped by the bench). Side-by-side tables; see bench/README.md.
bench: setup kafka-fetch quix-venv ## throughput: segstream beside bare Faust, aiokafka and quix-streams (~30 min)
	$(BIN)/python -m bench.throughput $(BENCH_ARGS)

bench-changes: setup ## segment changes per customer per 30 days, per model (in-process, ~1 min)
	$(BIN)/python -m bench.change_rates $(BENCH_ARGS)

bench-quality: setup ## churn risk, expected orders, clusters against CDNOW's holdout and the simulator (~1-2 min; BENCH_ARGS=--quick: ~20 s)
	$(BIN)/python -m bench.quality $(BENCH_ARGS)

SOAK_ARGS ?= --customers 100000 --days 30 --seconds 2100
soak: setup kafka-fetch ## memory plateau: one worker, 100,000 customers' events over 35 min, RSS sampled (~40 min; SOAK_ARGS="--seconds 600 --rate 40": the short one)
	$(BIN)/python -m bench.soak $(SOAK_ARGS)

# quix-streams pins older pydantic versions than segstream: its baseline gets a venv of its own.
quix-venv:
	@[[ -x .venv-quix/bin/python ]] || { $(PYTHON) -m venv .venv-quix && \
		.venv-quix/bin/python -m pip install --disable-pip-version-check -q quixstreams==3.28.1; }

demo: setup kafka-up ## THE demo: broker, worker, simulated shops, changes live; both keep running to explore
	deploy/demo.sh

worker: setup kafka-up ## a worker in the foreground on the dev broker (the demo's settings and token; Ctrl-C stops it)
	@source deploy/dev-env.sh; echo "worker on $$dev_url; token: $$dev_token"; exec .venv/bin/segstream worker

demo-stop: ## stop the demo's worker (waiting for it to exit) and the dev broker
	-@pid="$$(cat var/demo/worker.pid 2>/dev/null || true)"; \
	if [[ -n "$$pid" ]] && kill "$$pid" 2>/dev/null; then \
		for _ in $$(seq 1 60); do kill -0 "$$pid" 2>/dev/null || break; sleep 0.5; done; \
	fi; \
	rm -f var/demo/worker.pid
	-$(KAFKA) stop

# ---------------------------------------------------------------- cleanup

# Data dirs of brokers that still run (other ports, a test session) are left alone.
clean: ## stop the dev broker, remove stopped brokers' data dirs, the dev worker's state and tool caches (keeps .venv, jars, the dev token)
	-$(KAFKA) stop
	@for dir in deploy/kafka/.cache/broker-* deploy/kafka/.cache/*-broker-* deploy/kafka/.cache/*-cluster-*; do \
		[[ -d "$$dir" ]] || continue; \
		pid="$$(cat "$$dir/kafka.pid" 2>/dev/null || true)"; \
		if [[ -n "$$pid" ]] && kill -0 "$$pid" 2>/dev/null; then \
			echo "clean: keeping $$dir (broker pid $$pid is running)"; \
		else \
			echo "clean: removing $$dir"; rm -rf "$$dir"; \
		fi; \
	done
	@pid="$$(cat var/demo/worker.pid 2>/dev/null || true)"; \
	if { [[ -n "$$pid" ]] && kill -0 "$$pid" 2>/dev/null; } \
		|| curl -s -o /dev/null --max-time 2 http://127.0.0.1:6066/ready; then \
		echo "clean: keeping var/demo/worker (a dev worker answers or runs: make demo-stop, or stop make worker)"; \
	else \
		rm -rf var/demo/worker var/demo/worker.pid; \
	fi
	rm -rf .mypy_cache .ruff_cache .pytest_cache var/bench
	find . -path ./$(VENV) -prune -o -type d -name __pycache__ -exec rm -rf {} +

distclean: clean ## clean, and also remove .venv and the fetched broker jars
	rm -rf $(VENV) .venv-quix deploy/kafka/.cache

# ---------------------------------------------------------------- API property run
API_FUZZ_ARGS ?=
api-fuzz: setup kafka-fetch ## requests generated from deploy/openapi.json against a real worker, every check (~30 min)
	$(BIN)/python -m tests.api_fuzz $(API_FUZZ_ARGS)

# ---------------------------------------------------------------- chaos
CHAOS_ARGS ?=
chaos: setup kafka-fetch ## chaos run: kills, rebalances, a broker restart; checks nothing lost or doubled (~6 min)
	$(BIN)/python -m tests.chaos $(CHAOS_ARGS)

chaos-cluster: setup kafka-fetch ## the chaos run on three brokers (RF 3, min ISR 2), one SIGKILLed mid-stream (~8 min)
	$(BIN)/python -m tests.chaos --cluster $(CHAOS_ARGS)

chaos-network: setup kafka-fetch ## the chaos run with network faults: latency spikes, bandwidth limits, connection resets, workers cut off past their session (~7 min)
	$(BIN)/python -m tests.chaos --latency-spikes 4 --bandwidth-limits 3 --resets 4 --cutoffs 2 $(CHAOS_ARGS)

# The first release's code comes from the clone's history by its tag (git fetch --tags).
chaos-upgrade: setup kafka-fetch ## the chaos run with a rolling upgrade from v0.1.0 (old and new workers side by side, then only new) (~6 min)
	$(BIN)/python -m tests.chaos --upgrade-from v0.1.0 $(CHAOS_ARGS)

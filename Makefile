# recording-consumer developer commands. The broker comes from Maven Central's Kafka jars
# (consumer/devkit/broker/) unless KAFKA_BOOTSTRAP_SERVERS points at one you already run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEVKAFKA := $(BIN)/python -m consumer.devkit.broker
# The example third-party handler plugin: installed so the tests can prove discovery end to end.
EXAMPLE := examples/recording-consumer-audit
# Extras locked in requirements-dev.lock and installed by `make install`: all but bench, whose
# comparison libraries are installed by hand (docs/benchmarks.md).
LOCKED_EXTRAS = $(shell $(PYTHON) -c "import tomllib; extras = tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']; print(','.join(sorted(set(extras) - {'bench'})))")
UV_VERSION := 0.13.9

.PHONY: install lint format test test-unit compat run demo kafka-up kafka-down clean lock

install: $(BIN)/recording-consumer

# Exactly the locked versions: the runtime from requirements.lock (what the image ships), the dev
# tools from requirements-dev.lock (resolved against it), then the two packages themselves.
# pip check fails when pyproject.toml asks for something the locks lack: run `make lock`.
$(BIN)/recording-consumer: pyproject.toml requirements.lock requirements-dev.lock $(EXAMPLE)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements.lock
	$(BIN)/pip install --quiet --require-hashes --no-deps -r requirements-dev.lock
	$(BIN)/pip install --quiet --no-deps --no-build-isolation -e . -e $(EXAMPLE)
	$(BIN)/pip check || { echo "the locks do not satisfy pyproject.toml: run make lock" >&2; exit 1; }
	touch $@

# The last step builds the manual's site (mkdocs.yml, into .site/): a broken link or anchor,
# or a page left out of its nav, fails it.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy consumer tests bench $(EXAMPLE) examples/webhook-handler
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install
	$(BIN)/pytest

# The unit tests alone: no broker, no JVM, seconds. tests/integration/ needs the local broker
# (started by the tests), tests/drills/ takes worker processes through failures.
test-unit: install
	$(BIN)/pytest tests/unit

# Not part of `test`: the core round trip (produce, consume, commit, dead letter, a rebalance
# between worker processes) against each Apache Kafka release below, on a broker of that version
# started from its Maven jars (DEVKAFKA_VERSION; KAFKA_BOOTSTRAP_SERVERS is ignored here). Each
# version's test files and worker logs stay in .devkafka/compat/<version>/ for a look after.
COMPAT_VERSIONS ?= 3.7.2 3.8.1 3.9.2 4.0.2 4.1.2 4.2.2
COMPAT_TESTS := tests/integration/worker/test_worker.py::test_every_status_is_routed_and_committed \
	tests/integration/deadletters/test_deadletter.py::test_publish_creates_the_topic_and_the_dead_letter_round_trips \
	tests/integration/devkit/test_testing_kit.py::test_round_trip_result_has_outcomes_dead_letters_and_logs \
	tests/drills/test_resilience.py::test_workers_join_and_leave_while_events_flow
compat: install
	@mkdir -p .devkafka/compat; failed=""; for v in $(COMPAT_VERSIONS); do \
	  echo "== Apache Kafka $$v"; \
	  env -u KAFKA_BOOTSTRAP_SERVERS DEVKAFKA_VERSION=$$v $(BIN)/pytest -q --basetemp=.devkafka/compat/$$v \
	    $(COMPAT_TESTS) || failed="$$failed $$v"; \
	done; \
	if [ -n "$$failed" ]; then echo "compat: failed with Kafka$$failed"; exit 1; fi; \
	echo "compat: passed with Kafka $(COMPAT_VERSIONS)"

# The image and `make install` install from requirements.lock (the runtime, and the otel and
# msk extras, which the image includes) with --require-hashes: rerun after changing the
# dependencies (or the build-system requirements, locked too for the image's offline build).
# requirements-dev.lock adds the locked extras and the example plugin's dependencies, constrained
# to requirements.lock's versions. Pins that still fit are kept; to move everything to the newest
# versions, delete both locks first.
lock: $(BIN)/uv
	$(PYTHON) -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']))" \
	  | $(BIN)/uv pip compile pyproject.toml - --extra otel --extra msk --universal --python-version 3.11 --generate-hashes \
	    --custom-compile-command 'make lock' --quiet -o requirements.lock
	printf -- '-e .[%s]\n-e ./%s\n' '$(LOCKED_EXTRAS)' '$(EXAMPLE)' \
	  | $(BIN)/uv pip compile - -c requirements.lock --universal --python-version 3.11 \
	    --generate-hashes --no-emit-package recording-consumer \
	    --no-emit-package recording-consumer-audit --custom-compile-command 'make lock' --quiet \
	    -o requirements-dev.lock

# Only what `make lock` needs: it must work while `make install` fails on a stale lock.
$(BIN)/uv:
	[ -x $(BIN)/python ] || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet 'uv==$(UV_VERSION)'

kafka-up: install
	$(DEVKAFKA) up

kafka-down: install
	$(DEVKAFKA) down

run: install
	KAFKA_BOOTSTRAP_SERVERS=$$($(DEVKAFKA) bootstrap) $(BIN)/recording-consumer run

demo: install
	@export KAFKA_BOOTSTRAP_SERVERS=$$($(DEVKAFKA) bootstrap) \
	  RECORDING_CONSUMER__KAFKA__TOPIC=demo.source.$$$$ \
	  RECORDING_CONSUMER__KAFKA__GROUP_ID=demo.$$$$ && \
	$(BIN)/recording-consumer produce --config config/demo.toml --repeat 2 && \
	$(BIN)/recording-consumer run --config config/demo.toml --until-idle 2

clean:
	-[ -x $(BIN)/python ] && $(DEVKAFKA) down
	-[ -x $(BIN)/python ] && $(DEVKAFKA) down --nodes 3
	rm -rf $(VENV) .devkafka .site .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info

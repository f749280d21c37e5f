# recording-consumer developer commands. The broker comes from Maven Central's Kafka jars
# (consumer/devkit/devkafka.py) unless KAFKA_BOOTSTRAP_SERVERS points at one you already run.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEVKAFKA := $(BIN)/python -m consumer.devkit.devkafka
# The example third-party handler plugin: installed so the tests can prove discovery end to end.
EXAMPLE := examples/recording-consumer-audit

.PHONY: install lint format test run demo kafka-up kafka-down clean lock

install: $(BIN)/recording-consumer

$(BIN)/recording-consumer: pyproject.toml $(EXAMPLE)/pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	$(BIN)/pip install --quiet -e $(EXAMPLE)
	touch $@

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy consumer tests bench $(EXAMPLE)

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

test: install
	$(BIN)/pytest

# The image installs from requirements.lock with --require-hashes: rerun after changing the
# dependencies (or the build-system requirements, locked too for the image's offline build).
lock: install
	$(BIN)/pip install --quiet uv
	$(BIN)/python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['build-system']['requires']))" \
	  | $(BIN)/uv pip compile pyproject.toml - --extra otel --universal --python-version 3.11 --generate-hashes \
	    --custom-compile-command 'make lock' --quiet -o requirements.lock

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
	rm -rf $(VENV) .devkafka .mypy_cache .ruff_cache .pytest_cache .hypothesis *.egg-info

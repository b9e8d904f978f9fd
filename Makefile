# The two commands of the README: `make demo` (set up, then train and validate both GradNet stages on the CPU on
# scikit-image's bundled photos) and `make test` (set up, then the whole test suite). `make lint` is CI's linter.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python

.PHONY: install demo test lint format

$(VENV)/.installed: requirements.txt requirements-dev.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-dev.txt
	$(PY) -m pip install --quiet -e .
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m gradnet_arch.demo

test: install
	$(PY) -m pytest

lint: install
	$(PY) -m flake8 .
	$(PY) -m isort --check-only --diff .
	$(PY) -m yapf --diff --recursive --exclude '$(VENV)/*' --exclude 'build/*' gradnet_arch losses tests speed scripts setup.py gradnet_basicsr_autoload.py hubconf.py

format: install
	$(PY) -m isort .
	$(PY) -m yapf --in-place --recursive gradnet_arch losses tests speed scripts setup.py gradnet_basicsr_autoload.py hubconf.py

# The README's two commands are `make demo` (main job) and `make test`. Both create .venv first when needed.
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.hamwm-installed
export MUJOCO_GL ?= egl
export PYTHONUNBUFFERED := 1

.PHONY: venv demo test lint models bench clean

$(STAMP): setup.py requirements-ros.txt scripts/setup_venv.sh
	bash scripts/setup_venv.sh
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/hamwm demo

test: $(STAMP)
	$(PY) -m pytest -q test

lint: $(STAMP)
	$(VENV)/bin/ruff check .

models: $(STAMP)
	$(VENV)/bin/hamwm models

bench: $(STAMP)
	$(VENV)/bin/hamwm bench all

clean:
	rm -rf $(VENV) build install log *.egg-info reports

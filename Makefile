# dysink developer targets. PYTHON defaults to the repo's .venv when there is one.
PYTHON ?= $(if $(wildcard .venv/bin/python),.venv/bin/python,python3)

.PHONY: install test test-all test-gpu lint demo sz

install:  ## torch first (pinned CPU/CUDA wheel), then the project with dev tools
	$(PYTHON) -m pip install torch==2.13.0
	$(PYTHON) -m pip install -e '.[dev]'

test:  ## the fast loop (about a minute on 2 cores): everything but the slow end-to-end renders
	$(PYTHON) -m pytest -q -m "not slow and not gpu"

test-all:  ## the full CPU suite (the README's command, what CI runs)
	$(PYTHON) -m pytest -q

test-gpu:  ## tests that need CUDA (run through the device tool)
	$(PYTHON) -m pytest -q -m gpu

lint:
	$(PYTHON) -m ruff check dysink_cli tests

demo:  ## 5 s of the embedded tiny model (untrained weights) to demo.mp4
	$(PYTHON) -m dysink_cli render --prompt "a red fox running through snow" --seconds 5 -o demo.mp4 --overwrite

sz:  ## lines per module, largest last (house budget: 300, hard stop 500)
	@find dysink_cli -name '*.py' -print0 | xargs -0 wc -l | sort -n

# Every target sets up .venv itself, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-forecast clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench,plot]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m engine.apps.demo

# The suite, and the package as users install it (tests/check_wheel.py: the wheel in a fresh
# venv).  Both run at once: the check compiles its own copy of the kernels, and Numba compiles
# on one core, so it mostly takes the core that the suite's compiles leave idle.
test: $(STAMP)
	$(PY) tests/check_wheel.py > $(VENV)/check_wheel.log 2>&1 & wheel=$$!; \
	$(PY) -m pytest -q; suite=$$?; \
	wait $$wheel; checked=$$?; cat $(VENV)/check_wheel.log; \
	test $$suite -eq 0 && test $$checked -eq 0

bench: $(STAMP)
	$(PY) -m bench.run

# forecast's model against its baselines on 8 real series (about 10 minutes on 2 cores)
bench-forecast: $(STAMP)
	$(PY) -m bench.forecast_suite

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

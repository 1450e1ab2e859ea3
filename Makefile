# Every target sets up .venv itself, so a fresh clone needs only `make demo` or `make test`.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: demo test bench bench-forecast bench-forecast-heldout bench-speech bench-speech-heldout clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test,bench,plot]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) -m engine.apps.demo

# The suite in two processes (the applications and the distributed runs, which train, beside
# the rest), the package as users install it (tests/check_wheel.py: the wheel in a fresh venv)
# and the next narrower vector path (tests/test_isa_paths.py: the kernel tests compiled for
# another x86 target), all at once: from a fresh clone each mostly waits on Numba compiling on
# one core, so together they keep both cores busy.  The suite is the longest, so the other two
# run at a lower priority (nice) and give way when it wants both.  From a fresh clone on a
# 2-core Zen 4 this took 434 s; the suite in one process and two vector paths took 634 s.
test: $(STAMP)
	nice -n 10 $(PY) tests/check_wheel.py > $(VENV)/check_wheel.log 2>&1 & wheel=$$!; \
	nice -n 10 $(PY) -m pytest -q -p no:cacheprovider tests/test_isa_paths.py \
		> $(VENV)/isa_paths.log 2>&1 & paths=$$!; \
	$(PY) -m pytest -q -p no:cacheprovider tests/apps tests/distributed \
		> $(VENV)/apps.log 2>&1 & apps=$$!; \
	$(PY) -m pytest -q --ignore=tests/test_isa_paths.py --ignore=tests/apps \
		--ignore=tests/distributed; suite=$$?; \
	wait $$apps; applied=$$?; echo "tests/apps, tests/distributed:"; cat $(VENV)/apps.log; \
	wait $$wheel; checked=$$?; wait $$paths; isa=$$?; \
	cat $(VENV)/check_wheel.log; echo "tests/test_isa_paths.py:"; cat $(VENV)/isa_paths.log; \
	test $$suite -eq 0 && test $$applied -eq 0 && test $$checked -eq 0 && test $$isa -eq 0

bench: $(STAMP)
	$(PY) -m bench.run

# forecast's model against its baselines on 8 real series (about 10 minutes on 2 cores)
bench-forecast: $(STAMP)
	$(PY) -m bench.forecast_suite

# forecast on series kept out of the suite, to check a change on data it was not tuned on
# (about 6 minutes on 2 cores)
bench-forecast-heldout: $(STAMP)
	$(PY) -m bench.forecast_heldout

# the speech recognizer's training throughput against the same model in PyTorch
bench-speech: $(STAMP)
	$(PY) -m bench.speech

# the speech recognizer with each FSDD speaker held out of training in turn (about 25 minutes)
bench-speech-heldout: $(STAMP)
	$(PY) -m bench.speech_heldout

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +

# digitlite: `make demo` runs the pipeline end to end, `make test` runs the whole suite. Both idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS := edge,train,web,dev,bench
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test lint readme pi-check wheel-check system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Debian packages the tests use (.ci/apt-packages: MQTT broker, browser, shellcheck, aarch64 emulation), installed
# when run as root. Otherwise, or when apt cannot install them, one line says so and the tests that need them
# are skipped, each with its reason.
system-deps:
	@missing=$$(grep -v '^#' .ci/apt-packages | xargs -r -n1 sh -c 'dpkg -s "$$0" >/dev/null 2>&1 || echo "$$0"'); \
	missing=$$(echo $$missing); \
	if [ -z "$$missing" ]; then echo "system packages: all present"; \
	elif [ "$$(id -u)" != 0 ]; then echo "system packages missing: $$missing (not root: the tests that need them are skipped; sudo make system-deps installs them)"; \
	elif ! command -v apt-get >/dev/null; then echo "system packages missing: $$missing (no apt-get here: the tests that need them are skipped)"; \
	else echo "system packages: installing $$missing"; log=$$(mktemp); \
	  if ! { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; } >$$log 2>&1; then \
	    tail -n 3 $$log; echo "system packages: apt-get could not install $$missing; the tests that need them are skipped"; \
	  fi; rm -f $$log; fi

# The main job, end to end, in a few minutes: a short training run (the release used `digitlite train
# --out runs/release`, 15 epochs, then fine-tuned on other writers), its gated conversion, the check, reading
# sample photos and rendered `photo` scenes with the released reader, a quick benchmark.
DEMO := runs/demo
demo: install
	$(PY) -m digitlite data --eda $(DEMO)/eda.png
	$(PY) -m digitlite train --epochs 2 --subset 20000 --out $(DEMO)/train $(if $(wildcard $(DEMO)/train/checkpoint),--resume,)
	$(PY) -m digitlite convert $(DEMO)/train/model.keras --out $(DEMO)/models --min-accuracy 0.97 --min-real-accuracy 0.85 --report $(DEMO)/convert  # a 2-epoch MNIST run reads about 92 % of the real digits
	$(PY) -m digitlite check models/digits_int8.tflite
	$(PY) -m digitlite read tests/data/golden/
	$(PY) -m digitlite eval-scenes --mix photo --count 40 --seed 1   # what people photograph, rendered
	$(PY) -m digitlite bench --quick --no-append  # a smoke run: not a record for the history
	@echo
	@echo "demo done: $(DEMO)/ holds the short run's model, report and converted files."
	@echo "The released model: .venv/bin/digitlite train --out runs/release (15 epochs), then fine-tuned on other writers"
	@echo "(--real nsysu-digits --styled N): the commands are in models/digits.train.json and docs/results.md"

test: install system-deps
	$(PY) -m pytest -q

# The documents' tables (docs/results.md) are copied from the files the commands wrote (benchmarks/latest.md, ...).
readme: install
	$(PY) -m benchmarks.readme

lint: install
	$(VENV)/bin/ruff check .

# The device install as a Pi user gets it: the wheel built from this checkout, installed with only [edge] in a
# clean virtualenv (no TensorFlow there), reads tests/data/golden/ with the model it carries, from another folder.
wheel-check: install
	$(PY) -m tools.wheel_check

# Emulated Raspberry Pi OS (arm64 bookworm, Python 3.11) check of the [edge] install, `digitlite read` and the
# int8 model's outputs against this machine; root fs and wheels cached in ~/.cache/digitlite/pi-check.
pi-check: install system-deps
	$(PY) -m tools.pi_check

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

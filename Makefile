# digitlite: `make demo` runs the pipeline end to end, `make test` runs the whole suite. Both idempotent.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
EXTRAS := edge,train,web,dev,bench
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: install demo test lint readme pi-check system-deps clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	rm -f $(VENV)/.installed-*
	touch $@

install: $(STAMP)

# Debian packages the tests use (MQTT broker, browser, aarch64 emulation); needs root, skipped otherwise.
system-deps:
	@missing=$$(grep -v '^#' .ci/apt-packages | xargs -r -n1 sh -c 'dpkg -s "$$0" >/dev/null 2>&1 || echo "$$0"'); \
	if [ -z "$$missing" ]; then echo "system packages: all present"; \
	elif [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	else echo "system packages missing (install as root): $$missing"; fi

# The main job, end to end, in a few minutes: a short training run (the release used `digitlite train
# --out runs/release`, 15 epochs), its gated conversion, the check, reading sample photos, a quick benchmark.
DEMO := runs/demo
demo: install
	$(PY) -m digitlite data --eda $(DEMO)/eda.png
	$(PY) -m digitlite train --epochs 2 --subset 20000 --out $(DEMO)/train $(if $(wildcard $(DEMO)/train/checkpoint),--resume,)
	$(PY) -m digitlite convert $(DEMO)/train/model.keras --out $(DEMO)/models --min-accuracy 0.97
	$(PY) -m digitlite check models/digits_int8.tflite
	$(PY) -m digitlite read tests/data/golden/
	$(PY) -m digitlite bench --quick --no-append  # a smoke run: not a record for the history
	@echo
	@echo "demo done: $(DEMO)/ holds the short run's model, report and converted files."
	@echo "The released model was trained with:  .venv/bin/digitlite train --out runs/release  (15 epochs)"

test: install
	$(PY) -m pytest -q

# README's tables are copied from the files the commands wrote (benchmarks/latest.md, architectures.md, ...).
readme: install
	$(PY) -m benchmarks.readme

lint: install
	$(VENV)/bin/ruff check .

# Emulated Raspberry Pi OS (arm64 bookworm, Python 3.11) check of the [edge] install, `digitlite read` and the
# int8 model's outputs against this machine; root fs and wheels cached in ~/.cache/digitlite/pi-check.
.PHONY: pi-check
pi-check: install system-deps
	$(PY) -m edge_app.deploy.pi_check

clean:
	rm -rf $(VENV) runs .pytest_cache .ruff_cache

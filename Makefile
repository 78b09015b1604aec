# Every target sets up its own virtual environment in .venv, so a fresh clone needs only python3 (3.11+).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: setup test lint sanitize demo bench bench-quick clean

setup: $(STAMP)

# The editable install also builds the C reactor in place (setup.py); it is rebuilt when its source
# changes. Without a C compiler the build is skipped and the pure-asyncio sockets are used.
$(STAMP): pyproject.toml setup.py namewire/transport/_native.c namewire/transport/_native_msgpack.h
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@$(PY) -c "from namewire.transport._native_stream import available as a; \
	print('namewire: C reactor', 'built' if a() else 'NOT built: pure-asyncio sockets')"
	touch $(STAMP)

# The whole suite on the C reactor (the transport tests run on both socket implementations and
# both loops), then everything above the transport again on the stock asyncio path that macOS and
# Windows users get (NAMEWIRE_NATIVE=0). The etcd client's own tests (test_etcd.py) speak HTTP
# through httpx, not through namewire's sockets, so they run once.
test: setup
	$(PY) -m pytest
	NAMEWIRE_NATIVE=0 $(PY) -m pytest tests/node tests/registry --deselect tests/registry/test_etcd.py \
	    tests/sync tests/cli

lint: setup
	$(PY) -m ruff check namewire
	$(PY) -m mypy

# The transport tests on the C reactor built with AddressSanitizer and UBSan (Linux, gcc).
sanitize: setup
	tools/sanitize.sh

demo: setup
	$(PY) -m namewire demo

bench: setup
	$(PY) -m namewire bench

bench-quick: setup
	$(PY) -m namewire bench --quick

clean:
	rm -rf $(VENV) bench/build *.egg-info build
	find namewire -name '*.so' -delete

# Two commands on a fresh machine: `make demo` and `make test`. Both create or reuse .venv.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv test demo clean chromium

venv: $(STAMP)

# torch is pinned here (the CPU build on this machine); the package itself only asks torch>=2.4.
$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.13.0
	$(BIN)/python -m pip install -q -e '.[test]'
	touch $(STAMP)

# The viewer's browser test drives Debian's chromium (never a downloaded browser); installed here
# when missing and possible (root), otherwise that one test is skipped outside CI.
chromium:
	@command -v chromium >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null && \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null); } || \
	  echo "note: chromium is not installed; the viewer's browser test will be skipped"

test: $(STAMP) chromium
	$(BIN)/python -m pytest -q

demo: $(STAMP)
	$(BIN)/s3ta demo

clean:
	rm -rf $(VENV) runs/demo

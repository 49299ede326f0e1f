# edged: the two commands of the README's quick start are `make demo` and `make test`.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the tests talk to (real peers) or build with.
DEB_PACKAGES := mosquitto mosquitto-clients libcoap3-bin socat autoconf automake libtool \
                chromium python3-venv python3-dev gcc faketime prometheus

.PHONY: demo test check lint bench fuzz screenshots system-deps install-deps clean deb deb-check

demo: $(BIN)/edged
	$(BIN)/edged demo

test: system-deps install-deps lint
	$(BIN)/python -m pytest tests

check: lint
	$(BIN)/python -m pytest tests

lint:
	$(BIN)/ruff check .

# Property-based tests with a large budget (HYPOTHESIS_PROFILE=fuzz, see tests/conftest.py): every test file that uses hypothesis.
FUZZ_TESTS = $(shell grep -rl --include='test_*.py' 'from hypothesis' tests)

fuzz:
	HYPOTHESIS_PROFILE=fuzz $(BIN)/python -m pytest -p no:cacheprovider --timeout 0 -q $(FUZZ_TESTS)

screenshots:
	EDGED_SCREENSHOTS=docs/images $(BIN)/python -m pytest -p no:cacheprovider -q tests/status/test_page.py -k phone

bench: install-deps
	@for script in bench/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

system-deps:
	@missing=$$(for p in $(DEB_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing Debian packages:" $$missing; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(BIN)/python:
	@$(PYTHON) -c 'import ensurepip' 2>/dev/null || { echo "installing python3-venv"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# The demo needs every protocol but not the CoAP/DTLS extra, which compiles tinydtls.
$(BIN)/edged: $(BIN)/python pyproject.toml setup.py
	$(BIN)/pip install -q -e '.[modbus,opcua,zigbee,ble,mqtt,rules]'
	@touch $@

install-deps: $(BIN)/python
	$(BIN)/pip install -q -e '.[all,test]'

deb:
	packaging/build-deb.sh

deb-check: deb
	packaging/check-deb.sh build/edged_*.deb

clean:
	rm -rf $(VENV) state build *.egg-info

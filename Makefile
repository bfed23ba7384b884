# pbctl — every entry point. `make sim` and `make test` work on a fresh machine
# with only Python 3 and make: the first run creates .venv from requirements.txt.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MPY    := $(VENV)/bin/micropython
STAMP  := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
HTTP_PORT ?= 8080
PORT   ?= /dev/ttyUSB0
JOBS   ?= 2

.PHONY: all venv sim test unit e2e bench mpy deploy check flash clean

all: test

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

## The main job: firmware under MicroPython on the host against the simulated bus.
sim: $(STAMP)
	$(PY) tools/sim.py --http-port $(HTTP_PORT)

## Everything: CPython unit tests, the same suites under MicroPython, e2e,
## and the ESP32 API check.
test: $(STAMP) check
	$(PY) -m pytest

unit: $(STAMP)
	$(PY) -m pytest host_tests/unit host_tests/test_micropython_units.py

bench: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-bench.txt
	$(PY) tools/bench/run_all.py

## Only ESP32 APIs: type-check lib/, firmware/ and the board against MicroPython v1.29's
## ESP32 stubs (mypy and the stubs go into .venv-check on first use).
check:
	$(PYTHON) tools/check.py

## Flash stock MicroPython: make flash FIRMWARE=ESP32_GENERIC-v1.29.0.bin PORT=/dev/ttyUSB0
flash: $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check esptool==5.6.0
	$(VENV)/bin/esptool --chip esp32 --port $(PORT) erase-flash
	$(VENV)/bin/esptool --chip esp32 --port $(PORT) --baud 460800 write-flash -z 0x1000 $(FIRMWARE)

## Precompile lib/, firmware/ and the board for the ESP32 (fails on any compile error).
BOARD ?= ESP32_GENERIC
mpy: $(STAMP)
	rm -rf build/esp32
	$(PY) tools/mpybuild.py --march xtensawin --board $(BOARD) build/esp32

## Copy the .mpy files to a board running stock MicroPython, then reset it.
deploy: mpy
	$(VENV)/bin/mpremote connect $(PORT) cp -r build/esp32/. : + reset

clean:
	rm -rf build .pytest_cache .hypothesis

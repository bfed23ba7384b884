# pbctl — every entry point. `make sim` and `make test` work on a fresh machine
# with only Python 3 and make: the first run creates .venv from requirements.txt.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
MPY    := $(VENV)/bin/micropython
STAMP  := $(VENV)/.installed-$(shell cksum < requirements.txt | cut -d' ' -f1)
HTTP_PORT ?= 8080
MODBUS_TCP_PORT ?= 4701
PORT   ?= /dev/ttyUSB0
JOBS   ?= 2

.PHONY: all venv sim test unit e2e bench mpy romfs bundle deploy deploy-files check flash clean browser screenshots fuzz soak mqtt-broker

all: test

$(STAMP): requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

venv: $(STAMP)

## The main job: firmware under MicroPython on the host against the simulated bus.
sim: $(STAMP)
	$(PY) tools/sim.py --http-port $(HTTP_PORT) --modbus-tcp-port $(MODBUS_TCP_PORT)

## Everything: CPython unit tests, the same suites under MicroPython, e2e,
## and the ESP32 API check.
test: $(STAMP) check browser mqtt-broker
	$(PY) -m pytest

## Robustness campaign at full counts (issue 7; `make test` runs smaller ones):
## 10 000 random/malformed requests against the firmware, the CPython parser and
## dispatcher fuzz x10, a bus fault storm of 10 000 transactions, the power-cut test
## with 5 000 trials. PBCTL_HEAP sets the firmware's heap (default 128k).
FUZZ_COUNT ?= 10000
STORM_TRANSACTIONS ?= 10000
fuzz: $(STAMP)
	$(PY) tools/fuzz.py --count $(FUZZ_COUNT)
	HTTP_FUZZ_EXAMPLES=10 POWERLOSS_TRIALS=5000 $(PY) -m pytest -s host_tests/props/test_fuzz_http.py host_tests/props/test_store_powerloss.py
	$(PY) tools/soak.py --storm $(STORM_TRANSACTIONS)

## Soak (not in `make test`): cars coming and going and API traffic for SOAK_MINUTES
## (default 10), then heap, cycle-time jitter, request latency and error counts.
SOAK_MINUTES ?= 10
soak: $(STAMP)
	$(PY) tools/soak.py --minutes $(SOAK_MINUTES)

## The web UI's browser tests need Debian's headless Chromium and its driver (apt-get, as
## root) and selenium (requirements-browser.txt); without a browser they skip and say why.
BROWSER_STAMP := $(VENV)/.browser-$(shell cksum < requirements-browser.txt | cut -d' ' -f1)
$(BROWSER_STAMP): requirements-browser.txt $(STAMP)
	$(PY) -m pip install -q --disable-pip-version-check -r requirements-browser.txt
	rm -f $(VENV)/.browser-*
	touch $@

browser: $(BROWSER_STAMP)
	@if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      chromium chromium-driver) || echo "make browser: chromium could not be installed; browser tests skip"; \
	  else \
	    echo "make browser: no /usr/bin/chromium and not root with apt-get; browser tests skip"; \
	  fi; \
	fi

## The MQTT tests need Debian's mosquitto broker (apt-get, as root; the tests start their
## own on a free loopback port); without it they skip and say why. The other test peers
## (pymodbus, paho-mqtt, websockets, the `ocpp` library) come from requirements.txt.
mqtt-broker:
	@if [ ! -x /usr/sbin/mosquitto ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      mosquitto) || echo "make mqtt-broker: mosquitto could not be installed; MQTT broker tests skip"; \
	  else \
	    echo "make mqtt-broker: no /usr/sbin/mosquitto and not root with apt-get; MQTT broker tests skip"; \
	  fi; \
	fi

## docs/ui-phone.png and docs/ui-desktop.png: the web UI after a few minutes of a two-EVSE scenario.
screenshots: $(STAMP) browser
	PBCTL_SCREENSHOTS=1 $(PY) -m pytest host_tests/browser -k screenshots

unit: $(STAMP)
	$(PY) -m pytest host_tests/unit host_tests/mpy/test_micropython_units.py

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

## Precompile lib/, firmware/ and the board for the ESP32 (fails on any compile error):
## build/esp32/ holds the board's file system (modules in / and its packages).
BOARD ?= ESP32_GENERIC
mpy: $(STAMP)
	rm -rf build/esp32
	$(PY) tools/mpybuild.py --march xtensawin --board $(BOARD) --root / build/esp32

## The same as a ROMFS image, build/pbctl-$(BOARD).romfs (README "On the ESP32": boards
## whose MicroPython has a ROMFS partition run the firmware from flash in place).
romfs: $(STAMP)
	rm -rf build/esp32-rom
	$(PY) tools/mpybuild.py --march xtensawin --board $(BOARD) --root /rom/ --romfs build/pbctl-$(BOARD).romfs build/esp32-rom

## An update bundle for cmd=update / the settings page (README "Updates over HTTP"):
## build/pbctl-$(BUNDLE_BOARD).bundle; BUNDLE_BOARD=HOST (default: the simulation's, a ROMFS
## image) or ESP32_GENERIC (.mpy modules); VERSION= overrides app.VERSION+git.
BUNDLE_BOARD ?= HOST
bundle: $(STAMP)
	$(PY) tools/bundle.py --board $(BUNDLE_BOARD) $(if $(VERSION),--version $(VERSION)) build/pbctl-$(BUNDLE_BOARD).bundle

## A board with a ROMFS partition: the image into it, boot.py, main.py and pbslot.py to its
## file system; /fw.json goes (a version installed over HTTP no longer boots: the cable's does).
deploy: romfs
	$(VENV)/bin/mpremote connect $(PORT) romfs deploy build/pbctl-$(BOARD).romfs + \
	  cp build/esp32-rom/boot.py :boot.py + cp build/esp32-rom/main.py :main.py + \
	  cp build/esp32-rom/pbslot.py :pbslot.py + exec "import os; [os.remove(n) for n in os.listdir() if n == 'fw.json']" + reset

## A board without one (stock MicroPython): the .mpy files to its file system.
deploy-files: mpy
	$(VENV)/bin/mpremote connect $(PORT) cp -r build/esp32/. : + \
	  exec "import os; [os.remove(n) for n in os.listdir() if n == 'fw.json']" + reset

clean:
	rm -rf build .pytest_cache .hypothesis

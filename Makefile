# packrun: `make up` runs it, `make check` tests it.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
DATA ?= .packrun
LISTEN ?= 127.0.0.1:8080
PYTEST ?= /usr/bin/python3 -m pytest
JOBS ?= $(shell nproc)

.PHONY: all deps build up check lint unit e2e bench format clean

all: build

deps:
	@scripts/install-deps.sh

$(BUILD)/CMakeCache.txt:
	cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=$(BUILD_TYPE)

build: deps $(BUILD)/CMakeCache.txt
	cmake --build $(BUILD) -j$(JOBS)

up: build
	$(BUILD)/packrun up --data $(DATA) --listen $(LISTEN) --packs examples/packs

unit: build
	ctest --test-dir $(BUILD) --output-on-failure

e2e: build
	PACKRUN_BIN=$(CURDIR)/$(BUILD)/packrun $(PYTEST) -q tests/e2e

lint:
	@scripts/check-sql-params.py

check: lint unit e2e

bench: build
	PACKRUN_BIN=$(CURDIR)/$(BUILD)/packrun bench/run

format:
	clang-format -i $$(git ls-files 'src/*.[ch]' 'tests/*.[ch]')

clean:
	rm -rf $(BUILD)

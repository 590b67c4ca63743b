# packrun: `make up` runs it, `make check` tests it.
BUILD ?= build
BUILD_TYPE ?= RelWithDebInfo
# As root, actions run as the packrun user, who must reach the data
# folder: a checkout under /root would not do, so root's default is here.
DATA ?= $(if $(filter 0,$(shell id -u)),/var/lib/packrun,.packrun)
LISTEN ?= 127.0.0.1:8080
PYTEST ?= /usr/bin/python3 -m pytest
JOBS ?= $(shell nproc)

.PHONY: all deps build up check lint unit e2e asan fuzz analyze ci bench format clean

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

# The whole suite again on a build with AddressSanitizer and UBSan: any
# report aborts the process, which fails its test.
asan: deps
	cmake -S . -B build-asan -DPACKRUN_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-asan -j$(JOBS)
	ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --test-dir build-asan --output-on-failure
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 \
		PACKRUN_BIN=$(CURDIR)/build-asan/packrun $(PYTEST) -q tests/e2e

# Each libFuzzer target for FUZZ_SECONDS, starting from its seed corpus.
FUZZ_SECONDS ?= 60
fuzz: deps
	CC=clang cmake -S . -B build-fuzz -DPACKRUN_FUZZ=ON -DCMAKE_BUILD_TYPE=Debug
	cmake --build build-fuzz -j$(JOBS) --target fuzz_pack_yaml fuzz_params fuzz_bundle
	@for t in pack_yaml params bundle; do \
		mkdir -p build-fuzz/corpus/$$t build-fuzz/artifacts; \
		echo "fuzz_$$t: $(FUZZ_SECONDS) s"; \
		build-fuzz/fuzz_$$t -max_total_time=$(FUZZ_SECONDS) -max_len=65536 \
			-artifact_prefix=build-fuzz/artifacts/ -print_final_stats=0 \
			build-fuzz/corpus/$$t tests/fuzz/corpus/$$t 2>build-fuzz/fuzz_$$t.log \
			|| { tail -40 build-fuzz/fuzz_$$t.log; exit 1; }; \
	done

# Static analysis of src/ with the checked-in configuration.
analyze: deps
	cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
		--inline-suppr --suppressions-list=.cppcheck-suppressions -I src src

# What CI runs after `make check`.
ci: check analyze asan fuzz

bench: build
	PACKRUN_BIN=$(CURDIR)/$(BUILD)/packrun bench/run

format:
	clang-format -i $$(git ls-files 'src/*.[ch]' 'tests/*.[ch]')

clean:
	rm -rf $(BUILD)

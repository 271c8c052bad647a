# The README's two commands are `make run` and `make test`; both install missing Debian build
# packages first (scripts/deps.sh), then configure and build with CMake.
#
#   make run      build and start the broker on its embedded default (core benchmark until then)
#   make test     build three trees (plain, ASan+UBSan, TSan) and run the whole suite
#   make bench    benchmarks (tables in docs/benchmarks.md)
#   make bench-overload   the overload workloads (W1-W5) against sluice alone
#   make bench-peers      the same workloads against NATS, Redis, ZeroMQ, mosquitto and sluice
#   make soak     long tests (crash rounds, contention) that make test keeps short
#   make fuzz     run each libFuzzer target for FUZZ_SECONDS
#   make format / make lint / make install PREFIX=... / make clean

MAKEFLAGS   += --no-print-directory
BUILD       ?= build
JOBS        ?= $(shell nproc 2>/dev/null || echo 2)
PREFIX      ?= /usr/local
WERROR      ?= $(if $(CI),ON,OFF)
FUZZ_SECONDS ?= 60
CMAKE_FLAGS ?=

CONFIGURE = cmake -S . -B $(1) -DSL_WERROR=$(WERROR) $(CMAKE_FLAGS) $(2) >/dev/null
SOURCES   = $(shell git ls-files '*.c' '*.h' 2>/dev/null)

.PHONY: all deps build run test test-plain test-asan test-tsan bench bench-overload bench-peers \
        soak fuzz format lint \
        install clean

all: build

deps:
	@scripts/deps.sh

build: deps
	@$(call CONFIGURE,$(BUILD),-DCMAKE_BUILD_TYPE=RelWithDebInfo -DSL_BUILD_BENCH=ON)
	@cmake --build $(BUILD) -j $(JOBS)

run: build
	@scripts/run.sh $(BUILD) $(ARGS)

test: deps
	@scripts/test.sh

test-plain test-asan test-tsan: deps
	@scripts/test.sh $(patsubst test-%,%,$@)

bench: build
	@scripts/bench.sh $(BUILD)

bench-overload: build
	@scripts/bench-overload.sh $(BUILD) $(ARGS)

bench-peers: build
	@scripts/bench-peers.sh $(BUILD) $(ARGS)

soak: deps
	@SL_SOAK=1 scripts/test.sh soak

fuzz: deps
	@$(call CONFIGURE,build-fuzz,-DCMAKE_BUILD_TYPE=RelWithDebInfo -DCMAKE_C_COMPILER=clang \
	    -DSL_FUZZ=ON -DSL_SANITIZE=address$(,)undefined -DBUILD_TESTING=OFF -DSL_BUILD_BENCH=OFF)
	@cmake --build build-fuzz -j $(JOBS)
	@scripts/fuzz.sh build-fuzz $(FUZZ_SECONDS)

format:
	@clang-format -i $(SOURCES)

lint: deps
	@clang-format --dry-run --Werror $(SOURCES)
	@cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability \
	    --inline-suppr --suppress=missingIncludeSystem -I include -I src \
	    --std=c11 src include
	@echo "lint: clean"

install: build
	@cmake --install $(BUILD) --prefix $(PREFIX)

clean:
	@rm -rf build build-asan build-tsan build-fuzz

, := ,

# skipllama — build with `make`, test with `make test`, run the bundled model with `make run`.
# Sources are discovered by wildcard: src/<layer>/*.c form the library (docs/architecture.md), cli/*.c the
# `skipllama` binary, tests/test_*.c one test program each. Files named *_avx2.c / *_avx512.c are
# compiled with those instruction sets and chosen at run time, so one binary runs on any x86-64.

CC       ?= cc
PREFIX   ?= /usr/local
BUILD    ?= build
OPT      ?= -O2
CFLAGS_BASE := -std=c11 -Wall -Wextra -Wno-unused-parameter -D_GNU_SOURCE -Iinclude -Isrc -fPIC -pthread -DSKIPLLAMA_DATADIR=\"$(PREFIX)/share/skipllama\"
SAN_FLAGS :=
CFLAGS   ?=
ALL_CFLAGS = $(CFLAGS_BASE) $(OPT) $(SAN_FLAGS) $(CFLAGS)
LDLIBS   = -lm -pthread $(shell pkg-config --libs libpcre2-8 2>/dev/null || echo -lpcre2-8) \
           $(shell pkg-config --libs jansson 2>/dev/null || echo -ljansson) \
           $(shell pkg-config --libs libmicrohttpd 2>/dev/null || echo -lmicrohttpd)
PCRE_CFLAGS = $(shell pkg-config --cflags libpcre2-8 jansson libmicrohttpd 2>/dev/null)

ARCH := $(shell uname -m)
ifeq ($(ARCH),x86_64)
AVX2_FLAGS   := -mavx2 -mfma -mf16c
AVX512_FLAGS := -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512vnni -mavx512bf16 -mavx2 -mfma -mf16c
else
AVX2_FLAGS   :=
AVX512_FLAGS :=
endif

LIB_SRC  := $(sort $(wildcard src/*/*.c))
ifneq ($(ARCH),x86_64)
LIB_SRC  := $(filter-out %_avx2.c %_avx512.c,$(LIB_SRC))
endif
CLI_SRC  := $(sort $(wildcard cli/*.c))
TEST_SRC := $(sort $(wildcard tests/test_*.c))
TEST_COMMON := $(wildcard tests/testutil.c)

LIB_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(LIB_SRC))
CLI_OBJ  := $(patsubst %.c,$(BUILD)/obj/%.o,$(CLI_SRC))
TEST_BIN := $(patsubst tests/%.c,$(BUILD)/tests/%,$(TEST_SRC))
BENCH_BIN := $(patsubst bench/%.c,$(BUILD)/bench/%,$(sort $(wildcard bench/*.c)))

STATIC_LIB := $(BUILD)/libskipllama.a
SHARED_LIB := $(BUILD)/libskipllama.so
BIN        := $(BUILD)/skipllama

.PHONY: all lib test test-deps asan run install clean fuzz fuzz-smoke fuzz-bins bench python
all: $(BIN) $(SHARED_LIB)

# Build dependencies (PCRE2; scripts/deps.sh knows the list): checked once per build folder and
# installed when missing (apt-get as root or through sudo), or the build stops saying what to run.
DEPS_STAMP := $(BUILD)/.deps-ok
$(DEPS_STAMP): scripts/deps.sh
	@mkdir -p $(dir $@)
	@sh scripts/deps.sh build
	@touch $@

lib: $(STATIC_LIB) $(SHARED_LIB)

$(BUILD)/obj/%_avx2.o: %_avx2.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(AVX2_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%_avx512.o: %_avx512.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(AVX512_FLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) $(PCRE_CFLAGS) -MMD -MP -c $< -o $@

# the chat page is embedded into page.o (.incbin)
$(BUILD)/obj/src/server/page.o: src/server/page.html

$(STATIC_LIB): $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(SHARED_LIB): $(LIB_OBJ)
	$(CC) $(ALL_CFLAGS) -shared -o $@ $^ $(LDLIBS)

$(BIN): $(CLI_OBJ) $(STATIC_LIB)
	$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJ) $(STATIC_LIB) $(LDLIBS)

$(BUILD)/tests/%: tests/%.c $(TEST_COMMON) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -o $@ $< $(TEST_COMMON) $(STATIC_LIB) $(LDLIBS)

TOOLS := $(patsubst tests/tools/%.c,$(BUILD)/tools/%,$(wildcard tests/tools/*.c))
$(BUILD)/tools/%: tests/tools/%.c $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(STATIC_LIB) $(LDLIBS)

# Run every test program (and the CLI tests); prints "N passed, N failed, N skipped". Tools the
# tests use (numpy, valgrind, node) are installed first when possible; tests whose tools cannot
# be had report SKIPPED (scripts/deps.sh test; SKIPLLAMA_TEST_DEPS=none|full).
test: $(TEST_BIN) $(BIN) $(TOOLS) test-deps
	@BUILD=$(BUILD) sh tests/run_tests.sh $(TEST_BIN)

test-deps:
	@sh scripts/deps.sh test

# The same suite under AddressSanitizer + UndefinedBehaviorSanitizer, in its own build folder.
asan:
	$(MAKE) BUILD=build-asan OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN_FLAGS="-fsanitize=address,undefined -fno-sanitize-recover=all" test

run: $(BIN)
	$(BIN) run -p "It was a dark and stormy night" -n 48

install: $(BIN) $(STATIC_LIB) $(SHARED_LIB)
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	    $(DESTDIR)$(PREFIX)/share/skipllama
	install -m 755 $(BIN) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 tests/data/tiny-silu.gguf $(DESTDIR)$(PREFIX)/share/skipllama/   # the model `run` uses without -m
	install -m 644 $(STATIC_LIB) $(SHARED_LIB) $(DESTDIR)$(PREFIX)/lib/
	install -m 644 include/skipllama.h include/skipllama_sparse.h include/skipllama_server.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|' -e 's|@VERSION@|0.1.0|' skipllama.pc.in > $(DESTDIR)$(PREFIX)/lib/pkgconfig/skipllama.pc

# Micro-benchmarks (bench/*.c, one program each; not tests): `make bench`, then run them by hand.
bench: $(BENCH_BIN)

$(BUILD)/bench/%: bench/%.c $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -o $@ $< $(STATIC_LIB) $(LDLIBS)

# Fuzzing (fuzz/, docs/fuzzing.md): libFuzzer harnesses built with clang, the library and CLI
# helpers compiled with the same coverage + ASan/UBSan flags into $(FUZZ_BUILD). `make fuzz`
# builds them; `fuzz/run.sh SECONDS` runs each; `make fuzz-smoke` is the short CI-sized run.
FUZZ_CC    ?= clang
FUZZ_BUILD ?= build-fuzz
FUZZ_BIN   := $(patsubst fuzz/%.c,$(BUILD)/fuzz/%,$(sort $(wildcard fuzz/fuzz_*.c)))
CLI_LIB    := $(BUILD)/libskipllama-cli.a

fuzz:
	$(MAKE) BUILD=$(FUZZ_BUILD) CC=$(FUZZ_CC) OPT="-O1 -g -fno-omit-frame-pointer" \
	    SAN_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all -include fuzz/clang_compat.h" fuzz-bins

fuzz-smoke: fuzz
	FUZZ_BUILD=$(FUZZ_BUILD) sh fuzz/run.sh 15

fuzz-bins: $(FUZZ_BIN)

# the CLI's helpers and subcommands without main() (fuzz_cli_args and tests/test_regress call them)
$(CLI_LIB): $(filter-out %/main.o,$(CLI_OBJ))
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/fuzz/%: fuzz/%.c fuzz/fuzz_common.h $(CLI_LIB) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -fsanitize=fuzzer -Icli -o $@ $< $(CLI_LIB) $(STATIC_LIB) $(LDLIBS)

# replays tests/regress/<harness>/* through the harness sources it #includes (needs the CLI helpers)
$(BUILD)/tests/test_regress: tests/test_regress.c $(TEST_COMMON) $(wildcard fuzz/*.c fuzz/*.h) $(CLI_LIB) $(STATIC_LIB)
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Itests -Icli -o $@ $< $(TEST_COMMON) $(CLI_LIB) $(STATIC_LIB) $(LDLIBS)

clean:
	rm -rf build build-asan build-fuzz

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)

# Python binding (python/skipllama; docs/python.md). `make python` installs the package, with a
# copy of libskipllama.so inside it, into PYTHON_SITE: by default
# $(PREFIX)/lib/python3.X/dist-packages, which Debian's python3 searches (PREFIX /usr/local or
# /usr). Elsewhere, or for one user: make python PYTHON_SITE=$$(python3 -m site --user-site).
# `make install` installs it too when a python3 is found. `make test` runs its tests through
# tests/cli_python.sh, which needs the shared library built.
PYTHON ?= $(firstword $(wildcard /usr/bin/python3) python3)
PYTHON_SITE ?= $(shell $(PYTHON) -c 'import sys; print("$(PREFIX)/lib/python%d.%d/dist-packages" % sys.version_info[:2])' 2>/dev/null)
PY_SRC := $(wildcard python/skipllama/*.py)
define PYTHON_INSTALL
install -d $(DESTDIR)$(PYTHON_SITE)/skipllama && \
install -m 644 $(PY_SRC) $(DESTDIR)$(PYTHON_SITE)/skipllama/ && \
install -m 755 $(SHARED_LIB) $(DESTDIR)$(PYTHON_SITE)/skipllama/libskipllama.so && \
echo "installed the skipllama Python package in $(DESTDIR)$(PYTHON_SITE)/skipllama"
endef

.PHONY: install-python
python: $(SHARED_LIB)
	@test -n "$(PYTHON_SITE)" || { echo "make python: no python3 found (set PYTHON=... or PYTHON_SITE=...)"; exit 1; }
	@$(PYTHON_INSTALL)

install: install-python
install-python: $(SHARED_LIB)
	@if [ -n "$(PYTHON_SITE)" ]; then $(PYTHON_INSTALL); else echo "install: no python3 found; Python package not installed"; fi

test: $(SHARED_LIB)

# Proxy gateway: the one entry point.
#
#   make            build agent/gw-agent (installs missing Debian build packages)
#   make run        the whole gateway on this machine, proxy on localhost:8080
#   make test       unit tests (ASan+UBSan), a short fuzz run, integration tests,
#                   the compose stacks run for real; prints each suite's time
#   make unit       agent unit tests only: no HAProxy, PostgreSQL or Redis needed
#   make compose-test  compose/ stacks built and run with a container engine
#   make fuzz       libFuzzer targets, FUZZ_SECONDS each (default 60)
#   make bench      benchmarks (figures printed, nothing asserted)
#   make format     clang-format every C source in place
#
# Every target installs the Debian packages it needs when they are missing
# (root on Debian bookworm), running `apt-get update` at most once.

CC       ?= gcc
CLANG    ?= clang
CFLAGS   ?= -O2 -g
WARN     := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes
CPPFLAGS := -std=gnu11 -D_GNU_SOURCE -Iagent/common -Iagent/gw -Iagent/settle
PKGS     := hiredis msgpack libpq zlib
LIBS      = -lev -lcrypt -lpthread $(shell pkg-config --libs $(PKGS) 2>/dev/null)
PKG_CFLAGS = $(shell pkg-config --cflags $(PKGS) 2>/dev/null)
SAN      := -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
# `make V=1` shows the compiler command lines.
ifeq ($(V),1)
Q :=
else
Q := @
endif

BUILD_PKGS := gcc make pkg-config libev-dev libhiredis-dev libmsgpack-dev libpq-dev \
              libcrypt-dev libssl-dev zlib1g-dev
RUN_PKGS   := haproxy redis-server postgresql curl openssl procps iproute2 ca-certificates socat jq
TEST_PKGS  := $(RUN_PKGS) check clang libclang-rt-14-dev docker-compose python3-yaml prometheus
BENCH_PKGS := wrk squid apache2-utils gnuplot-nox
# the compose test: Debian's container engine and Compose v1, debootstrap for
# the base image; ss (iproute2) and flock (util-linux) for the harness
COMPOSE_PKGS := docker.io docker-compose debootstrap curl iproute2 procps util-linux

# Sources, by the folder that says who uses them:
#   agent/common/  the floor both daemons stand on (logging, options, PostgreSQL,
#                  Redis connection, sockets, text, clocks)
#   agent/gw/      gw-agent: SPOP codec and server, policy, snapshot, billing
#   agent/settle/  gw-settle: the settlement worker and the record reader
# Objects are named by file name alone (build/rel/<name>.o), so names are
# unique across the three folders; every folder is on the include path.
AGENT_DIRS  := agent/common agent/gw agent/settle
COMMON_SRC  := $(wildcard agent/common/*.c)
GW_SRC      := $(filter-out agent/gw/main.c,$(wildcard agent/gw/*.c))
SETTLE_SRC  := $(filter-out agent/settle/settle_main.c,$(wildcard agent/settle/*.c))
AGENT_SRC   := $(COMMON_SRC) $(GW_SRC) $(SETTLE_SRC)
AGENT_HDR   := $(wildcard $(AGENT_DIRS:%=%/*.h))
UNIT_SRC    := $(wildcard tests/unit/test_*.c)
FUZZ_SRC    := $(wildcard tests/fuzz/fuzz_*.c)
TOOLS       := tests/tools/spop-client tests/tools/spop-echo tests/tools/upstream \
               tests/tools/live-script \
               tests/tools/origin
vpath %.c $(AGENT_DIRS)
FUZZ_SECONDS ?= 60

# objects of a list of sources: $(call rel,$(SRC)), $(call asan,$(SRC))
rel       = $(patsubst %.c,build/rel/%.o,$(notdir $(1)))
asan      = $(patsubst %.c,build/asan/%.o,$(notdir $(1)))
ASAN_OBJ := $(call asan,$(AGENT_SRC))
SPOP_SRC := $(wildcard agent/gw/spop_*.c)
FUZZERS  := $(FUZZ_SRC:tests/fuzz/%.c=build/fuzz/%)

.PHONY: all deps run-deps test-deps bench-deps compose-deps run unit fuzz fuzz-short integration \
        compose-test test bench format format-check clean
.DEFAULT_GOAL := all

DAEMONS := agent/gw-agent agent/gw-settle

all: deps $(DAEMONS) $(TOOLS)

# --- Debian packages ---------------------------------------------------------
# $(call apt_ensure,pkgs): install the packages that dpkg does not report as
# installed; quiet, and `apt-get update` only once per checkout. Waits for
# another apt-get holding the dpkg lock (up to 10 minutes) instead of failing.
define apt_ensure
@missing=$$(for p in $(1); do \
	dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'install ok installed' || echo $$p; \
	done); \
if [ -n "$$missing" ]; then \
	echo "installing Debian packages:" $$missing; \
	if [ "$$(id -u)" != 0 ]; then echo "error: run as root to install:" $$missing >&2; exit 1; fi; \
	export DEBIAN_FRONTEND=noninteractive; \
	mkdir -p build; \
	if [ ! -e build/.apt-updated ]; then apt-get update -qq >/dev/null && touch build/.apt-updated; fi; \
	apt-get install -o DPkg::Lock::Timeout=600 -y -qq --no-install-recommends $$missing >build/apt.log 2>&1 \
		|| { cat build/apt.log >&2; exit 1; }; \
fi
endef

deps:
	$(call apt_ensure,$(BUILD_PKGS))
run-deps: deps
	$(call apt_ensure,$(RUN_PKGS))
test-deps: deps
	$(call apt_ensure,$(TEST_PKGS))
bench-deps: test-deps
	$(call apt_ensure,$(BENCH_PKGS))
compose-deps:
	$(call apt_ensure,$(COMPOSE_PKGS))

# --- the agent ----------------------------------------------------------------
build/rel/%.o: %.c $(AGENT_HDR) | deps
	@mkdir -p $(@D)
	@echo "  CC      $<"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) $(WARN) -c $< -o $@

build/asan/%.o: %.c $(AGENT_HDR) | deps
	@mkdir -p $(@D)
	@echo "  CC/SAN  $<"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) -O1 -g $(SAN) $(WARN) -c $< -o $@

# Each daemon links its own folder and the common one, nothing else.
agent/gw-agent: agent/gw/main.c $(call rel,$(COMMON_SRC) $(GW_SRC))
	@echo "  LD      $@"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) $(WARN) $^ -o $@ $(LIBS)

# The settlement worker: a second small daemon.
agent/gw-settle: agent/settle/settle_main.c $(call rel,$(COMMON_SRC) $(SETTLE_SRC))
	@echo "  LD      $@"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) $(WARN) $^ -o $@ $(LIBS)

# The same daemons under ASan+UBSan: what the integration tests run.
build/asan/gw-agent: agent/gw/main.c $(call asan,$(COMMON_SRC) $(GW_SRC))
	@echo "  LD/SAN  $@"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) -O1 -g $(SAN) $(WARN) $^ -o $@ $(LIBS)

build/asan/gw-settle: agent/settle/settle_main.c $(call asan,$(COMMON_SRC) $(SETTLE_SRC))
	@echo "  LD/SAN  $@"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) -O1 -g $(SAN) $(WARN) $^ -o $@ $(LIBS)

# The origin serves HTTPS too (test CA): it alone needs OpenSSL.
tests/tools/origin: tests/tools/origin.c | deps
	@echo "  LD      $@"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $^ -o $@ -lev -lssl -lcrypto

# The SPOP client and echo agent speak through the agent's own codec.
tests/tools/spop-client tests/tools/spop-echo: tests/tools/%: tests/tools/%.c $(call rel,$(SPOP_SRC))
	@echo "  LD      $@"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $^ -o $@ -lev

# Prints the live balance's Redis scripts (tests/integration/t_live.sh).
tests/tools/live-script: tests/tools/live-script.c agent/common/live_lua.h | deps
	@echo "  LD      $@"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $< -o $@

tests/tools/upstream: tests/tools/upstream.c | deps
	@echo "  LD      $@"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) $^ -o $@ -lev

# An LD_PRELOAD shim that makes chosen names slow to resolve
# (tests/integration/t_slow_dns.sh): test-only.
build/slow-dns.so: tests/tools/slow-dns.c | deps
	@mkdir -p $(@D)
	@echo "  LD      $@"
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS) $(WARN) -Wno-missing-prototypes -shared -fPIC $^ -o $@ -ldl

# The snapshot store driven from stdin (tests/integration/t_snapshot.sh under
# ASan+UBSan, tests/bench/snapshot.sh optimized): the snapshot module alone.
PROBE_SRC := $(wildcard agent/gw/snapshot*.c) agent/gw/iptrie.c agent/gw/template.c \
             agent/gw/country.c agent/gw/rendezvous.c $(COMMON_SRC)
build/rel/snapshot-probe: tests/tools/snapshot-probe.c $(call rel,$(PROBE_SRC))
	@echo "  LD      $@"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) $(CFLAGS) $(WARN) $^ -o $@ $(LIBS)
build/asan/snapshot-probe: tests/tools/snapshot-probe.c $(call asan,$(PROBE_SRC))
	@echo "  LD/SAN  $@"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) -O1 -g $(SAN) $(WARN) $^ -o $@ $(LIBS)

# --- unit tests (check) ---------------------------------------------------------
# Each tests/unit/test_*.c defines `Suite *<name>_suite(void)`; the runner's
# table is generated from those definitions so a new file needs no registration.
build/unit/suites.h: $(UNIT_SRC)
	@mkdir -p $(@D)
	@names=$$(sed -n 's/^Suite \*\([a-z0-9_]*_suite\)(void)$$/\1/p' $(UNIT_SRC) | sort); \
	{ echo '#ifndef UNIT_SUITES'; echo '#include <check.h>'; \
	  for n in $$names; do echo "Suite *$$n(void);"; done; \
	  printf '#define UNIT_SUITES'; for n in $$names; do printf ' %s,' $$n; done; echo; \
	  echo '#endif'; } > $@

build/unit/unit-tests: tests/unit/main.c $(UNIT_SRC) build/unit/suites.h $(ASAN_OBJ) \
                       $(wildcard tests/unit/*.h) | test-deps
	@echo "  LD/SAN  $@"
	$(Q)$(CC) $(CPPFLAGS) $(PKG_CFLAGS) -Ibuild/unit -Itests/unit -include suites.h -O1 -g $(SAN) $(WARN) \
		tests/unit/main.c $(UNIT_SRC) $(ASAN_OBJ) -o $@ $(LIBS) $(shell pkg-config --libs check)

unit: build/unit/unit-tests
	ASAN_OPTIONS=detect_leaks=1 UBSAN_OPTIONS=print_stacktrace=1 CK_FORK=yes build/unit/unit-tests

# --- fuzzing (libFuzzer, ASan+UBSan) ------------------------------------------------
build/fuzz/%: tests/fuzz/%.c $(AGENT_SRC) $(AGENT_HDR) | test-deps
	@mkdir -p $(@D)
	@echo "  FUZZ    $@"
	$(Q)$(CLANG) $(CPPFLAGS) $(PKG_CFLAGS) -O1 -g -fsanitize=fuzzer,address,undefined \
		-fno-sanitize-recover=all $(WARN) -Wno-missing-prototypes $< $(AGENT_SRC) \
		-o $@ $(LIBS)

# Each target runs FUZZ_SECONDS from its seed corpus (tests/fuzz/corpus/<name>);
# findings land in build/fuzz/ and fail the run.
fuzz: $(FUZZERS)
	@set -e; for f in $(FUZZERS); do n=$$(basename $$f); \
		mkdir -p build/fuzz/corpus-$$n; \
		seeds=tests/fuzz/corpus/$$n; [ -d $$seeds ] || seeds=; \
		echo "fuzz: $$n for $(FUZZ_SECONDS)s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -print_final_stats=0 -artifact_prefix=build/fuzz/$$n- \
			build/fuzz/corpus-$$n $$seeds 2>build/fuzz/$$n.log \
			|| { tail -40 build/fuzz/$$n.log; exit 1; }; \
		grep -h 'Done [0-9]* runs' build/fuzz/$$n.log | sed "s/^/fuzz: $$n: /"; \
	done

fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=$${FUZZ_SHORT_SECONDS:-10}

# --- integration tests (real HAProxy, PostgreSQL, Redis, curl) ----------------------
integration: all build/asan/gw-agent build/asan/gw-settle test-deps
	bash tests/integration/run.sh

# --- the compose stacks, run for real (tests/compose/run.sh) ---------------------------
# Starts a container engine when none runs (and stops it after); the images
# it builds are cached outside the checkout (GW_COMPOSE_CACHE, default
# /var/cache/gw-compose). Ends with `N passed, M failed`.
compose-test: compose-deps
	bash tests/compose/run.sh

# Each suite in turn, stopping at the first that fails; the time of each.
TEST_SUITES := unit fuzz-short integration compose-test
test:
	@times=; for s in $(TEST_SUITES); do \
		t0=$$(date +%s); \
		$(MAKE) --no-print-directory $$s; rc=$$?; \
		t=$$(( $$(date +%s) - t0 )); \
		times="$$times$$(printf '  %-14s %6ss' $$s $$t)\n"; \
		echo "make test: $$s took $${t}s"; \
		if [ $$rc != 0 ]; then printf "make test: suite times\n$$times"; echo "make test: $$s failed"; exit $$rc; fi; \
	done; printf "make test: suite times\n$$times"

# --- the local stack ------------------------------------------------------------------
run: all run-deps
	bash tests/run-stack.sh

# --- benchmarks -------------------------------------------------------------------
bench: all bench-deps
	bash tests/bench/run.sh

# --- housekeeping -------------------------------------------------------------------
C_FILES = $(wildcard $(AGENT_DIRS:%=%/*.c) $(AGENT_HDR) tests/*/*.c tests/*/*.h)
format:
	clang-format -i $(C_FILES)
format-check:
	clang-format --dry-run -Werror $(C_FILES)

clean:
	rm -rf build/rel build/asan build/unit build/fuzz build/slow-dns.so agent/gw-agent agent/gw-settle $(TOOLS)

# minilambda — GNU make only. `make` builds the four daemons into build/bin/.
# `make help` lists the targets.

BUILD   ?= build
CC      ?= cc
PKGS    := libmicrohttpd librabbitmq hiredis libpq libcurl libarchive libcjson libjwt openssl uuid libseccomp
OPT     ?= -O2
SAN     ?=

# Compiler flags of the libraries come from pkg-config, which exists only once `deps` has run:
# they live in a generated $(BUILD)/config.mk whose recipe installs what is missing first.
# Make remakes an included file before anything else and then reads itself again, so one
# `make test` on a pristine machine installs, configures and builds. Goals that build nothing
# skip it (no install for `make clean`).
NOBUILD_GOALS := clean help deps stop observe observe-stop lint check-includes
CONFIG_MK     := $(BUILD)/config.mk
ifneq ($(filter-out $(NOBUILD_GOALS),$(or $(MAKECMDGOALS),all)),)
include $(CONFIG_MK)
endif
$(CONFIG_MK): Makefile infrastructure/dev/deps.sh
	bash infrastructure/dev/deps.sh
	@mkdir -p $(@D)
	@c=$$(pkg-config --cflags $(PKGS)) && l=$$(pkg-config --libs $(PKGS)) && \
	 f=$$(pkg-config --cflags --libs libarchive openssl uuid libcjson) && \
	 printf 'PKG_CFLAGS := %s\nPKG_LIBS := %s\nFUZZ_LIBS := %s\n' "$$c" "$$l" "$$f" >$@.tmp
	@mv $@.tmp $@

CFLAGS  := -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -g $(OPT) $(SAN) \
           -MMD -MP -Ishared $(PKG_CFLAGS) $(EXTRA_CFLAGS)
LDFLAGS := $(SAN) $(EXTRA_LDFLAGS)
LDLIBS  := $(PKG_LIBS) -lpthread -lm

SERVICES := gateway build-master build-worker lambda-executor

obj = $(patsubst %.c,$(BUILD)/obj/%.o,$(1))

LIB        := $(BUILD)/lib/libml.a
LIB_OBJ    := $(call obj,$(wildcard shared/*.c))
BINS       := $(SERVICES:%=$(BUILD)/bin/%) $(BUILD)/bin/ml-migrate

# Unit and integration tests: tests/{unit,integration}/test_*.c link libml;
# tests/{unit,integration}/<service>/test_*.c also link that service's objects (all but main.c).
UNIT_SRC   := $(wildcard tests/unit/test_*.c) $(wildcard $(SERVICES:%=tests/unit/%/test_*.c))
UNIT_BINS  := $(patsubst tests/%.c,$(BUILD)/tests/%,$(UNIT_SRC))
INT_SRC    := $(wildcard tests/integration/test_*.c) $(wildcard $(SERVICES:%=tests/integration/%/test_*.c))
INT_BINS   := $(patsubst tests/%.c,$(BUILD)/tests/%,$(INT_SRC))
TEST_BINS  := $(UNIT_BINS) $(INT_BINS)

.PHONY: all build deps run stop test test-unit test-integration asan tsan clean help token bench fuzz fuzz-ci \
        observe observe-stop
all: build
build: $(BINS)

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(TEST_INC) -c $< -o $@

$(LIB): $(LIB_OBJ)
	@mkdir -p $(@D)
	rm -f $@ && ar rcs $@ $^

# Per-service archive of everything except main.c, so unit tests can link service modules.
define service_rules
$(BUILD)/lib/lib$(1).a: $(call obj,$(filter-out services/$(1)/main.c,$(wildcard services/$(1)/*.c)))
	@mkdir -p $$(@D)
	rm -f $$@ && ar rcs $$@ $$^
$(BUILD)/bin/$(1): $(call obj,services/$(1)/main.c) $(BUILD)/lib/lib$(1).a $(LIB)
	@mkdir -p $$(@D)
	$(CC) $(LDFLAGS) -o $$@ $$^ $(LDLIBS)
$(BUILD)/obj/tests/unit/$(1)/%.o: TEST_INC := -Iservices/$(1)
$(BUILD)/tests/unit/$(1)/%: $(BUILD)/obj/tests/unit/$(1)/%.o $(BUILD)/lib/lib$(1).a $(LIB)
	@mkdir -p $$(@D)
	$(CC) $(LDFLAGS) -o $$@ $$^ $(LDLIBS) -lcmocka
$(BUILD)/obj/tests/integration/$(1)/%.o: TEST_INC := -Iservices/$(1)
$(BUILD)/tests/integration/$(1)/%: $(BUILD)/obj/tests/integration/$(1)/%.o $(BUILD)/lib/lib$(1).a $(LIB)
	@mkdir -p $$(@D)
	$(CC) $(LDFLAGS) -o $$@ $$^ $(LDLIBS) -lcmocka
endef
$(foreach s,$(SERVICES),$(eval $(call service_rules,$(s))))

$(BUILD)/bin/ml-migrate: $(call obj,migrations/migrate.c) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/bench/%: $(BUILD)/obj/tests/bench/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/tests/bench/sandbox_bench.o: TEST_INC := -Iservices/lambda-executor
$(BUILD)/bench/sandbox_bench: $(BUILD)/obj/tests/bench/sandbox_bench.o $(BUILD)/lib/liblambda-executor.a $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/tests/bench/audit_bench.o: TEST_INC := -Iservices/lambda-executor
$(BUILD)/bench/audit_bench: $(BUILD)/obj/tests/bench/audit_bench.o $(BUILD)/lib/liblambda-executor.a $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

$(BUILD)/obj/tests/bench/proxy_floor.o: TEST_INC := -Iservices/gateway
$(BUILD)/bench/proxy_floor: $(BUILD)/obj/tests/bench/proxy_floor.o $(BUILD)/lib/libgateway.a $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)

# The open-loop load generator (docs/benchmarks-method.md) and its histogram's unit test.
$(BUILD)/bench/loadgen: $(BUILD)/obj/tests/bench/loadgen.o $(BUILD)/obj/tests/bench/hdr.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS)
$(BUILD)/obj/tests/unit/test_hdr.o: TEST_INC := -Itests/bench
$(BUILD)/tests/unit/test_hdr: $(BUILD)/obj/tests/unit/test_hdr.o $(BUILD)/obj/tests/bench/hdr.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

bench: build $(BUILD)/bench/httpd_bench $(BUILD)/bench/sandbox_bench $(BUILD)/bench/proxy_floor \
       $(BUILD)/bench/loadgen
	bash tests/bench/run.sh $(BUILD)
	/usr/bin/python3 tests/bench/build_deps_bench.py $(BUILD)/bin
	/usr/bin/python3 tests/bench/batching_bench.py $(BUILD)/bin
	/usr/bin/python3 tests/bench/latency.py $(BUILD)/bin

$(BUILD)/tests/unit/%: $(BUILD)/obj/tests/unit/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

$(BUILD)/tests/integration/%: $(BUILD)/obj/tests/integration/%.o $(LIB)
	@mkdir -p $(@D)
	$(CC) $(LDFLAGS) -o $@ $^ $(LDLIBS) -lcmocka

deps:
	bash infrastructure/dev/deps.sh

run: deps build
	bash infrastructure/dev/platform.sh start

stop:
	bash infrastructure/dev/observe.sh stop
	bash infrastructure/dev/platform.sh stop

# Prometheus (Debian's) scraping the `make run` daemons with observability/'s rules; see
# docs/observability.md. ML_PROMETHEUS_PORT (9090), ML_SCRAPE_INTERVAL (5s).
observe: deps
	bash infrastructure/dev/observe.sh start

observe-stop:
	bash infrastructure/dev/observe.sh stop

token: build
	@NS=$(NS) ADMIN=$(ADMIN) bash infrastructure/dev/platform.sh token

test-unit: deps $(UNIT_BINS)
	bash tests/run.sh unit $(BUILD)

test-integration: deps build $(INT_BINS)
	bash tests/run.sh integration $(BUILD)

# One runner for both suites so a single summary line covers everything.
test: deps build $(TEST_BINS)
	bash tests/run.sh all $(BUILD)

# The fault-injection suite (tests/chaos; docs/reliability.md): each scenario's exact counts and
# guarantees, on a private stack (.run/chaos-stack, ports 26000+) beside everything else.
# `make chaos CHAOS=redis_frozen` runs one scenario (several: CHAOS="a b").
CHAOS ?=
.PHONY: chaos
chaos: deps build
	ML_BUILD_DIR=$(BUILD) bash tests/chaos/run.sh $(CHAOS)

# Banned functions, raw snprintf, ignored truncation results (tests/lint/lint.py).
.PHONY: lint
lint:
	/usr/bin/python3 tests/lint/lint.py

# libFuzzer targets for the parsers of untrusted input (clang + libclang-rt-14-dev);
# `make fuzz` runs each for FUZZ_SECONDS, `make fuzz-ci` each for FUZZ_CI_SECONDS (CI).
# New inputs go to build/fuzz/<name>-corpus, crashes to build/fuzz/crash-*. See tests/fuzz/README.md.
FUZZ_SECONDS ?= 30
FUZZ_CI_SECONDS ?= 10
FUZZ_CFLAGS := -g -O1 -std=c11 -D_GNU_SOURCE -Wall -Wextra -Werror -Ishared \
               -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined
FUZZ_TARGETS := extract multipart jsoncheck fnspec sigv4 jwt proto ssrf cron audit_wal awsarn logs_query egress \
                fnurl invstream
build/fuzz/fuzz_extract: tests/fuzz/fuzz_extract.c services/build-worker/extract.c shared/buf.c shared/crypto.c shared/util.c shared/fnspec.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -Iservices/build-worker $^ $(FUZZ_LIBS) -o $@
build/fuzz/fuzz_multipart: tests/fuzz/fuzz_multipart.c services/build-master/multipart.c shared/util.c shared/jsoncheck.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -Iservices/build-master $^ $(FUZZ_LIBS) -o $@
build/fuzz/fuzz_jsoncheck: tests/fuzz/fuzz_jsoncheck.c shared/jsoncheck.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $^ $(FUZZ_LIBS) -o $@
build/fuzz/fuzz_fnspec: tests/fuzz/fuzz_fnspec.c shared/fnspec.c shared/util.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $^ $(FUZZ_LIBS) -o $@
# fuzz_sigv4.c includes sigv4.c (to sign with its canonicalisation), so it is not linked again.
build/fuzz/fuzz_sigv4: tests/fuzz/fuzz_sigv4.c services/gateway/sigv4.c shared/buf.c shared/crypto.c shared/util.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -Iservices/gateway $(filter-out services/gateway/sigv4.c,$^) $(FUZZ_LIBS) -o $@
build/fuzz/fuzz_jwt: tests/fuzz/fuzz_jwt.c services/gateway/auth.c services/gateway/routes.c shared/buf.c shared/crypto.c shared/util.c shared/fnspec.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -Iservices/gateway $^ $(FUZZ_LIBS) -ljwt -o $@
build/fuzz/fuzz_proto: tests/fuzz/fuzz_proto.c shared/proto.c shared/buf.c shared/util.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -Iservices/lambda-executor $^ $(FUZZ_LIBS) -o $@
# fuzz_ssrf.c includes ssrf.c (to call its URL parser without DNS).
build/fuzz/fuzz_ssrf: tests/fuzz/fuzz_ssrf.c shared/ssrf.c shared/util.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $(filter-out shared/ssrf.c,$^) $(FUZZ_LIBS) -o $@
build/fuzz/fuzz_cron: tests/fuzz/fuzz_cron.c services/lambda-executor/cron.c shared/util.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -Iservices/lambda-executor $^ $(FUZZ_LIBS) -o $@
build/fuzz/fuzz_awsarn: tests/fuzz/fuzz_awsarn.c services/gateway/awsarn.c shared/util.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -Iservices/gateway $^ $(FUZZ_LIBS) -o $@
# a 64-byte read chunk, so records cross the reader's refills
build/fuzz/fuzz_audit_wal: tests/fuzz/fuzz_audit_wal.c services/lambda-executor/audit_wal.c shared/buf.c shared/util.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -DAUDIT_WAL_READ_CHUNK=64 -Iservices/lambda-executor $^ $(FUZZ_LIBS) -o $@

# logs_query.c reaches libpq's header through audit-int.h (no libpq code is linked)
build/fuzz/fuzz_logs_query: tests/fuzz/fuzz_logs_query.c services/lambda-executor/logs_query.c services/lambda-executor/audit_encode.c shared/buf.c shared/crypto.c shared/util.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $(PKG_CFLAGS) -Iservices/lambda-executor $^ $(FUZZ_LIBS) -o $@

build/fuzz/fuzz_egress: tests/fuzz/fuzz_egress.c services/build-worker/egress_parse.c shared/util.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) -Iservices/build-worker $^ $(FUZZ_LIBS) -o $@

build/fuzz/fuzz_fnurl: tests/fuzz/fuzz_fnurl.c services/gateway/fnurl_resp.c shared/httpd.c shared/buf.c shared/crypto.c shared/util.c shared/metrics.c shared/log.c shared/jsoncheck.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $(PKG_CFLAGS) -Iservices/gateway $^ $(FUZZ_LIBS) -lmicrohttpd -o $@
build/fuzz/fuzz_invstream: tests/fuzz/fuzz_invstream.c shared/invstream.c shared/buf.c shared/util.c
	@mkdir -p $(@D)
	clang $(FUZZ_CFLAGS) $^ $(FUZZ_LIBS) -o $@

# Runs every target for $(1) seconds; extract's seeds come from its unit test.
define fuzz_run
	mkdir -p $(FUZZ_TARGETS:%=build/fuzz/%-corpus) build/fuzz/extract-seeds
	EXTRACT_SEED_DIR=$(CURDIR)/build/fuzz/extract-seeds $(BUILD)/tests/unit/build-worker/test_extract >/dev/null 2>&1
	find build/fuzz/extract-seeds -size +64k -delete
	TMPDIR=/dev/shm build/fuzz/fuzz_extract -max_total_time=$(1) -max_len=65536 \
	  -rss_limit_mb=2048 -artifact_prefix=build/fuzz/ -print_final_stats=1 \
	  build/fuzz/extract-corpus build/fuzz/extract-seeds
	build/fuzz/fuzz_multipart -max_total_time=$(1) -artifact_prefix=build/fuzz/ \
	  -print_final_stats=1 build/fuzz/multipart-corpus tests/fuzz/seeds/multipart
	build/fuzz/fuzz_jsoncheck -max_total_time=$(1) -max_len=4096 \
	  -artifact_prefix=build/fuzz/ -print_final_stats=1 build/fuzz/jsoncheck-corpus \
	  tests/fuzz/seeds/jsoncheck
	set -e; for t in fnspec sigv4 jwt proto ssrf cron audit_wal logs_query egress fnurl invstream; do \
	  build/fuzz/fuzz_$$t -max_total_time=$(1) -timeout=10 -artifact_prefix=build/fuzz/ \
	    -print_final_stats=1 build/fuzz/$$t-corpus tests/fuzz/seeds/$$t; \
	done
	build/fuzz/fuzz_awsarn -max_total_time=$(1) -timeout=10 -max_len=512 \
	  -artifact_prefix=build/fuzz/ -print_final_stats=1 build/fuzz/awsarn-corpus
endef
fuzz: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%) $(BUILD)/tests/unit/build-worker/test_extract
	$(call fuzz_run,$(FUZZ_SECONDS))
fuzz-ci: $(FUZZ_TARGETS:%=build/fuzz/fuzz_%) $(BUILD)/tests/unit/build-worker/test_extract
	$(call fuzz_run,$(FUZZ_CI_SECONDS))

asan:
	$(MAKE) BUILD=build/asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=all" test

# ThreadSanitizer build of everything into build/tsan, then the threaded tests: all unit tests
# and the C integration tests (test_mq, test_dispatch, test_httpc, ... against the test stack;
# hold /tmp/ml-e2e.lock). The shell/Python end-to-end scripts are left out (ML_TEST_SCRIPTS=0):
# they drive whole TSan-built daemons at 5-15x slowdown past their timeouts. TSAN_SCRIPTS=1
# runs them too; TSAN_SUITE=test-unit only the unit tests. Every report (tests and daemons)
# goes to build/tsan/tsan-reports/race.<pid>; any report fails the target. Suppressions are
# for third-party library internals only: tests/tsan.supp says why for each. die_after_fork=0:
# the executor's sandbox tests clone children while threads run, which TSan refuses by default.
TSAN_SUITE ?= test
TSAN_SCRIPTS ?= 0
TSAN_REPORTS := $(CURDIR)/build/tsan/tsan-reports
tsan:
	rm -rf $(TSAN_REPORTS) && mkdir -p $(TSAN_REPORTS)
	TSAN_OPTIONS="halt_on_error=0 exitcode=66 second_deadlock_stack=1 die_after_fork=0 \
	  suppressions=$(CURDIR)/tests/tsan.supp log_path=$(TSAN_REPORTS)/race" \
	  ML_TEST_SCRIPTS=$(TSAN_SCRIPTS) $(MAKE) BUILD=build/tsan OPT=-O1 \
	  SAN="-fsanitize=thread -fno-omit-frame-pointer" $(TSAN_SUITE); rc=$$?; \
	n=$$(ls $(TSAN_REPORTS) | wc -l); \
	echo "tsan: $$n report file(s) in $(TSAN_REPORTS)"; \
	for f in $(TSAN_REPORTS)/*; do [ -e "$$f" ] && grep -m1 -h 'WARNING: ThreadSanitizer' "$$f"; done; \
	[ $$rc -eq 0 ] && [ $$n -eq 0 ]

clean:
	rm -rf build

# The include graph's rules (tests/lint/include_graph.py): no service includes another's
# headers, nothing reaches back into a main.c, no include cycles.
.PHONY: check-includes
check-includes:
	/usr/bin/python3 tests/lint/include_graph.py

help:
	@echo "targets: build deps run stop token observe observe-stop test test-unit test-integration chaos asan tsan fuzz fuzz-ci bench lint check-includes clean"

.SECONDARY:
-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)

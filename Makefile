# kbridge: `make` builds bin/kbridge, bin/kbridged and bin/kbridge-agent.
# `make check` installs what is missing, builds, and runs every test.
# `make demo` installs, builds and shows connect, intercept and preview in the playground.

CC       ?= cc
BUILD    ?= build
BINDIR   ?= bin
CFLAGS   ?= -O2 -g
SANFLAGS ?=
# -Werror where the code is developed and tested (a git checkout, CI);
# a release tarball built with another compiler only warns. WERROR= turns it off.
WERROR   ?= $(if $(wildcard .git),-Werror)
WARN      = -Wall -Wextra -Wstrict-prototypes -Wmissing-prototypes -Wshadow $(WERROR)
LLHTTP    = /usr/share/llhttp
CPPFLAGS += -D_GNU_SOURCE -Iproto -I/usr/share/include/llhttp
ALLCFLAGS = -std=gnu11 $(WARN) $(CFLAGS) $(SANFLAGS) -MMD -MP
LDFLAGS  += $(SANFLAGS)

LIBS_EVENT = -levent_core -levent_extra -levent_openssl -lssl -lcrypto
LIBS_AGENT = $(LIBS_EVENT) -lcares -lcjson -luring
LIBS_DAEMON = $(LIBS_EVENT) -lcares -lcjson -lnftables
LIBS_CLI   = -lcurl -lcjson -lyaml -lssl -lcrypto
LIBS_TEST  = $(LIBS_EVENT) -lcares -lcjson -lcurl -lnftables -luring -lyaml

ifeq ($(V),1)
Q =
else
Q = @
endif

PROTO_SRC  = $(wildcard proto/*.c)
DAEMON_SRC = $(wildcard daemon/*.c)
AGENT_SRC  = $(wildcard agent/*.c)
CLI_SRC    = $(wildcard cli/*.c)
UNIT_SRC   = $(wildcard tests/unit/test_*.c)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))
LIBPROTO = $(BUILD)/libkbproto.a
LLHTTP_OBJ = $(BUILD)/llhttp/llhttp.o $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o
UNIT_BIN = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

PROGS = $(BINDIR)/kbridge $(BINDIR)/kbridged $(BINDIR)/kbridge-agent

all: $(PROGS)

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	@[ "$(Q)" ] && echo "  CC    $<" || true
	$(Q)$(CC) $(CPPFLAGS) $(ALLCFLAGS) -c $< -o $@

$(BUILD)/llhttp/%.o: $(LLHTTP)/%.c
	@mkdir -p $(dir $@)
	$(Q)$(CC) $(CPPFLAGS) -std=gnu11 $(CFLAGS) $(SANFLAGS) -w -c $< -o $@

$(LIBPROTO): $(call obj,$(PROTO_SRC))
	$(Q)rm -f $@ && ar rcs $@ $^

$(BINDIR)/kbridge: $(call obj,$(CLI_SRC)) $(LIBPROTO)
	@mkdir -p $(dir $@)
	@[ "$(Q)" ] && echo "  LD    $@" || true
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_CLI)

$(BINDIR)/kbridged: $(call obj,$(DAEMON_SRC)) $(LIBPROTO)
	@mkdir -p $(dir $@)
	@[ "$(Q)" ] && echo "  LD    $@" || true
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_DAEMON)

$(BINDIR)/kbridge-agent: $(call obj,$(AGENT_SRC)) $(LLHTTP_OBJ) $(LIBPROTO)
	@mkdir -p $(dir $@)
	@[ "$(Q)" ] && echo "  LD    $@" || true
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_AGENT)

# Unit tests include the .c files they test, so they can reach static functions.
$(BUILD)/tests/%: tests/unit/%.c $(LIBPROTO)
	@mkdir -p $(dir $@)
	@[ "$(Q)" ] && echo "  TEST  $@" || true
	$(Q)$(CC) $(CPPFLAGS) -Itests/unit $(ALLCFLAGS) -o $@ $< $(LIBPROTO) $(LDFLAGS) $(LIBS_TEST)

# llhttp's three sources cannot share one translation unit with a test.
$(BUILD)/tests/test_httpproxy: $(LLHTTP_OBJ)
$(BUILD)/tests/test_httpproxy: LIBS_TEST += $(LLHTTP_OBJ)
$(BUILD)/tests/test_preview: $(LLHTTP_OBJ)
$(BUILD)/tests/test_preview: LIBS_TEST += $(LLHTTP_OBJ)

unit: $(UNIT_BIN)

SAN_ARGS = BUILD=build/san BINDIR=build/san/bin CFLAGS="-O1 -g" \
	SANFLAGS="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined"

san:
	$(Q)$(MAKE) --no-print-directory $(SAN_ARGS) all unit

# Only the unit tests, plain and with the sanitizers (no root, no playground).
check-unit:
	$(Q)$(MAKE) --no-print-directory all unit
	$(Q)$(MAKE) --no-print-directory san
	tests/run unit unit-san

deps:
	scripts/install-deps

check: deps
	$(Q)$(MAKE) --no-print-directory all unit
	$(Q)$(MAKE) --no-print-directory san
	tests/run

demo: deps
	$(Q)$(MAKE) --no-print-directory all
	scripts/demo

FUZZ_SECONDS ?= 30
fuzz: deps
	@mkdir -p build/fuzz
	clang -g -O1 -D_GNU_SOURCE -Iproto -fsanitize=fuzzer,address,undefined \
		tests/fuzz/fuzz_frame.c -o build/fuzz/fuzz_frame $(LIBS_EVENT) -lcjson
	@mkdir -p build/fuzz/corpus
	build/fuzz/fuzz_frame -max_total_time=$(FUZZ_SECONDS) build/fuzz/corpus tests/fuzz/corpus
	clang -g -O1 -D_GNU_SOURCE -Iproto -I/usr/share/include/llhttp -fsanitize=fuzzer,address,undefined \
		tests/fuzz/fuzz_http.c proto/listener.c proto/log.c proto/util.c proto/sendmany.c $(addprefix $(LLHTTP)/,llhttp.c api.c http.c) \
		-o build/fuzz/fuzz_http $(LIBS_EVENT) -lcjson -luring
	@mkdir -p build/fuzz/corpus-http
	build/fuzz/fuzz_http -max_total_time=$(FUZZ_SECONDS) build/fuzz/corpus-http tests/fuzz/corpus-http

clean:
	rm -rf build bin

.PHONY: all unit san check-unit deps check demo fuzz clean
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

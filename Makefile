# kbridge: `make` builds bin/kbridge, bin/kbridged, bin/kbridge-agent and
# bin/kbridge-sidecar.
# `make install [PREFIX=/usr/local] [DESTDIR=]` installs them, the man pages
# kbridge(1), kbridged(8) and kbridge-agent(8) and the bash, zsh and fish
# completions.
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

# make install: kbridged goes beside kbridge in bin (the CLI looks for it
# there first, and the sudoers rule in README.md names PREFIX/bin/kbridged).
PREFIX   ?= /usr/local
DESTDIR  ?=
MANDIR   ?= $(PREFIX)/share/man
COMPDIR  ?= $(PREFIX)/share/bash-completion/completions
ZSHDIR   ?= $(PREFIX)/share/zsh/vendor-completions
FISHDIR  ?= $(PREFIX)/share/fish/vendor_completions.d
MAN1     = man/kbridge.1
MAN8     = man/kbridged.8 man/kbridge-agent.8

LIBS_EVENT = -levent_core -levent_extra -levent_openssl -lssl -lcrypto
# libnftables: `kbridge-agent redirect` only (agent/redirect.c); never kbridge-sidecar
# libnghttp2: the sidecar's HTTP/2 routing (agent/h2route.c)
# libcurl: not linked; agent/curlload.c opens it at the first use (the
# manager's Kubernetes API client), so that an idle manager without
# --in-cluster never maps it and the 28 libraries it brings
LIBS_AGENT = $(LIBS_EVENT) -lcares -lcjson -luring -lnftables -lnghttp2
LIBS_SIDECAR = $(LIBS_EVENT) -lcares -lcjson -luring -lnghttp2
LIBS_DAEMON = $(LIBS_EVENT) -lcares -lcjson -lnftables
# -lz: SPDY header compression (proto/spdy.c, kbridge port-forward)
LIBS_CLI   = -levent_core -lcurl -lcjson -lyaml -lssl -lcrypto -lz
LIBS_TEST  = $(LIBS_EVENT) -lcares -lcjson -lcurl -lnftables -luring -lyaml -lz -lnghttp2

ifeq ($(V),1)
Q =
else
Q = @
endif

PROTO_SRC  = $(wildcard proto/*.c)
DAEMON_SRC = $(wildcard daemon/*.c)
AGENT_SRC  = $(filter-out agent/sidecar_main.c,$(wildcard agent/*.c))
# kbridge-sidecar: the sidecar alone, without libcurl (agent/sidecar_main.c)
SIDECAR_SRC = agent/sidecar_main.c agent/sidecar.c agent/sidecar_enroll.c agent/httpproxy.c \
	agent/h2route.c agent/batch.c agent/applat.c agent/join.c agent/pace.c
CLI_SRC    = $(wildcard cli/*.c)
UNIT_SRC   = $(wildcard tests/unit/test_*.c)

obj = $(patsubst %.c,$(BUILD)/%.o,$(1))
LIBPROTO = $(BUILD)/libkbproto.a
LLHTTP_OBJ = $(BUILD)/llhttp/llhttp.o $(BUILD)/llhttp/api.o $(BUILD)/llhttp/http.o
UNIT_BIN = $(patsubst tests/unit/%.c,$(BUILD)/tests/%,$(UNIT_SRC))

PROGS = $(BINDIR)/kbridge $(BINDIR)/kbridged $(BINDIR)/kbridge-agent $(BINDIR)/kbridge-sidecar

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

$(BINDIR)/kbridge-sidecar: $(call obj,$(SIDECAR_SRC)) $(LLHTTP_OBJ) $(LIBPROTO)
	@mkdir -p $(dir $@)
	@[ "$(Q)" ] && echo "  LD    $@" || true
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_SIDECAR)

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
$(BUILD)/tests/test_store: $(LLHTTP_OBJ)
$(BUILD)/tests/test_store: LIBS_TEST += $(LLHTTP_OBJ)
$(BUILD)/tests/test_routes: $(LLHTTP_OBJ)
$(BUILD)/tests/test_routes: LIBS_TEST += $(LLHTTP_OBJ)
$(BUILD)/tests/test_h2route: $(LLHTTP_OBJ)
$(BUILD)/tests/test_h2route: LIBS_TEST += $(LLHTTP_OBJ)
$(BUILD)/tests/test_h1h2: $(LLHTTP_OBJ)
$(BUILD)/tests/test_h1h2: LIBS_TEST += $(LLHTTP_OBJ)

unit: $(UNIT_BIN)

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man8 \
		$(DESTDIR)$(COMPDIR) $(DESTDIR)$(ZSHDIR) $(DESTDIR)$(FISHDIR)
	install -m 0755 $(PROGS) $(DESTDIR)$(PREFIX)/bin/
	install -m 0644 $(MAN1) $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 $(MAN8) $(DESTDIR)$(MANDIR)/man8/
	$(BINDIR)/kbridge completion bash >$(DESTDIR)$(COMPDIR)/kbridge.tmp
	chmod 0644 $(DESTDIR)$(COMPDIR)/kbridge.tmp
	mv -f $(DESTDIR)$(COMPDIR)/kbridge.tmp $(DESTDIR)$(COMPDIR)/kbridge
	$(BINDIR)/kbridge completion zsh >$(DESTDIR)$(ZSHDIR)/_kbridge.tmp
	chmod 0644 $(DESTDIR)$(ZSHDIR)/_kbridge.tmp
	mv -f $(DESTDIR)$(ZSHDIR)/_kbridge.tmp $(DESTDIR)$(ZSHDIR)/_kbridge
	$(BINDIR)/kbridge completion fish >$(DESTDIR)$(FISHDIR)/kbridge.fish.tmp
	chmod 0644 $(DESTDIR)$(FISHDIR)/kbridge.fish.tmp
	mv -f $(DESTDIR)$(FISHDIR)/kbridge.fish.tmp $(DESTDIR)$(FISHDIR)/kbridge.fish

uninstall:
	rm -f $(patsubst $(BINDIR)/%,$(DESTDIR)$(PREFIX)/bin/%,$(PROGS)) \
		$(patsubst man/%,$(DESTDIR)$(MANDIR)/man1/%,$(MAN1)) \
		$(patsubst man/%,$(DESTDIR)$(MANDIR)/man8/%,$(MAN8)) \
		$(DESTDIR)$(COMPDIR)/kbridge $(DESTDIR)$(ZSHDIR)/_kbridge \
		$(DESTDIR)$(FISHDIR)/kbridge.fish

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

# libFuzzer targets (clang). Each runs FUZZ_SECONDS on its corpus; the
# newer ones FUZZ_NEW_SECONDS each, to keep `make fuzz` short.
FUZZ_SECONDS ?= 30
FUZZ_NEW_SECONDS ?= $(FUZZ_SECONDS)
FUZZ_CC     = clang
FUZZ_SAN    = -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS = -std=gnu11 -g -O1 -D_GNU_SOURCE -Iproto -I/usr/share/include/llhttp -Itests/unit \
	-Wall -Wno-unused-function $(FUZZ_SAN) -fsanitize=fuzzer-no-link
FUZZ_LDFLAGS = $(FUZZ_SAN) -fsanitize=fuzzer
FUZZ_OBJ    = $(BUILD)/fuzz/obj
fobj = $(patsubst %.c,$(FUZZ_OBJ)/%.o,$(1))
FUZZ_PROTO  = $(call fobj,$(PROTO_SRC))
FUZZ_LLHTTP = $(FUZZ_OBJ)/llhttp/llhttp.o $(FUZZ_OBJ)/llhttp/api.o $(FUZZ_OBJ)/llhttp/http.o
# What the control fuzzer includes (manager.c, preview.c, sidecar.c, tunnel.c) or stubs
# (the network and the OS: resolver, tun, firewall, routes, exec) is not linked.
FUZZ_AGENT  = $(call fobj,$(filter-out agent/main.c agent/manager.c agent/sidecar.c \
	agent/resolver.c agent/preview.c agent/redirect.c agent/curlload.c,$(AGENT_SRC)))
FUZZ_DAEMON = $(call fobj,$(filter-out daemon/main.c daemon/tunnel.c daemon/net.c daemon/tun.c \
	daemon/firewall.c daemon/exec.c,$(DAEMON_SRC)))
FUZZERS = frame http dns profile control api kubeconfig portforward webhook spdy h2

$(FUZZ_OBJ)/%.o: %.c
	@mkdir -p $(dir $@)
	@[ "$(Q)" ] && echo "  FZCC  $<" || true
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -MMD -MP -c $< -o $@

$(FUZZ_OBJ)/llhttp/%.o: $(LLHTTP)/%.c
	@mkdir -p $(dir $@)
	$(Q)$(FUZZ_CC) $(FUZZ_CFLAGS) -w -c $< -o $@

define fuzz_link
	@mkdir -p $(dir $@)
	@[ "$(Q)" ] && echo "  FZLD  $@" || true
	$(Q)$(FUZZ_CC) $(FUZZ_LDFLAGS) -o $@ $^ $(1)
endef

$(BUILD)/fuzz/fuzz_frame: $(call fobj,tests/fuzz/fuzz_frame.c)
	$(call fuzz_link,$(LIBS_EVENT) -lcjson)
$(BUILD)/fuzz/fuzz_http: $(call fobj,tests/fuzz/fuzz_http.c proto/listener.c proto/log.c proto/util.c \
    proto/sendmany.c proto/msg.c proto/htab.c) \
    $(FUZZ_LLHTTP)
	$(call fuzz_link,$(LIBS_EVENT) -lcjson -luring -lnghttp2)
$(BUILD)/fuzz/fuzz_h2: $(call fobj,tests/fuzz/fuzz_h2.c proto/listener.c proto/log.c proto/util.c \
    proto/sendmany.c proto/msg.c proto/htab.c) \
    $(FUZZ_LLHTTP)
	$(call fuzz_link,$(LIBS_EVENT) -lcjson -luring -lnghttp2)
$(BUILD)/fuzz/fuzz_dns: $(call fobj,tests/fuzz/fuzz_dns.c) $(FUZZ_PROTO)
	$(call fuzz_link,$(LIBS_TEST))
$(BUILD)/fuzz/fuzz_profile: $(call fobj,tests/fuzz/fuzz_profile.c) $(FUZZ_PROTO)
	$(call fuzz_link,$(LIBS_TEST))
$(BUILD)/fuzz/fuzz_control: $(call fobj,tests/fuzz/fuzz_control.c tests/fuzz/control_manager.c \
    tests/fuzz/control_sidecar.c tests/fuzz/control_daemon.c) $(FUZZ_AGENT) $(FUZZ_DAEMON) \
    $(FUZZ_PROTO) $(FUZZ_LLHTTP)
	$(call fuzz_link,$(LIBS_TEST))
$(BUILD)/fuzz/fuzz_api: $(call fobj,tests/fuzz/fuzz_api.c) $(FUZZ_DAEMON) $(FUZZ_PROTO)
	$(call fuzz_link,$(LIBS_TEST))
$(BUILD)/fuzz/fuzz_kubeconfig: $(call fobj,tests/fuzz/fuzz_kubeconfig.c proto/util.c proto/log.c)
	$(call fuzz_link,-lyaml -lcjson -lcurl -lssl -lcrypto)

$(BUILD)/fuzz/fuzz_portforward: $(call fobj,tests/fuzz/fuzz_portforward.c proto/kubeconfig.c proto/log.c \
    proto/util.c proto/spdy.c)
	$(call fuzz_link,$(LIBS_TEST))
$(BUILD)/fuzz/fuzz_spdy: $(call fobj,tests/fuzz/fuzz_spdy.c)
	$(call fuzz_link,-lz)

$(BUILD)/fuzz/fuzz_webhook: $(call fobj,tests/fuzz/fuzz_webhook.c proto/util.c proto/log.c)
	$(call fuzz_link,-lcjson -lssl -lcrypto)

fuzz-build: $(addprefix $(BUILD)/fuzz/fuzz_,$(FUZZERS))

# The first corpus directory collects what a run finds; tests/fuzz keeps the seeds.
# Two fuzzers at a time (libFuzzer runs one process each; the machines have
# two cores), each one's output kept together.
fuzz-run-%:
	@mkdir -p $(BUILD)/fuzz/found-$*
	$(BUILD)/fuzz/fuzz_$* -max_total_time=$(if $(filter frame http,$*),$(FUZZ_SECONDS),$(FUZZ_NEW_SECONDS)) \
		-timeout=10 $(if $(wildcard tests/fuzz/$*.dict),-dict=tests/fuzz/$*.dict) \
		$(BUILD)/fuzz/found-$* tests/fuzz/corpus-$*

fuzz: deps
	$(Q)$(MAKE) -j2 --no-print-directory fuzz-build
	$(Q)$(MAKE) -j2 --output-sync=target --no-print-directory $(addprefix fuzz-run-,$(FUZZERS))

clean:
	rm -rf build bin

.PHONY: all unit install uninstall san check-unit deps check demo fuzz fuzz-build clean
-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)

# webhook: PGXS build. libcurl and OpenSSL come through pkg-config.
EXTENSION  = webhook
# The version is written here only: the control file, the install script and
# the C code (WEBHOOK_VERSION) take it from this line.
EXTVERSION = 0.2.0
MODULE_big = webhook
OBJS = src/webhook.o src/worker.o src/queue.o src/http.o src/sign.o \
       src/destination.o src/endpoint.o src/capture.o src/api.o \
       src/publish.o src/redact.o src/wake.o src/launcher.o src/event.o
# webhook.sql is the current schema; each released version's install script
# (webhook--0.1.0.sql) and every upgrade script (webhook--A--B.sql) are
# shipped as released and never edited.
DATA_built = webhook--$(EXTVERSION).sql
DATA = webhook--0.1.0.sql $(wildcard webhook--*--*.sql)
EXTRA_CLEAN = webhook.control
PGFILEDESC = "webhook - transactional outbound webhooks"

REGRESS = setup endpoints destinations publish capture sign views operations privileges contracts hardening
REGRESS_OPTS = --temp-instance=tmp_check --temp-config=$(srcdir)/test/regress.conf \
               --load-extension=webhook
ISOLATION = claim lease races
ISOLATION_OPTS = --temp-instance=tmp_check_iso --temp-config=$(srcdir)/test/regress.conf \
               --load-extension=webhook
TAP_TESTS = 1

PKG_CONFIG ?= pkg-config
PG_CPPFLAGS = -DWEBHOOK_VERSION='"$(EXTVERSION)"' $(shell $(PKG_CONFIG) --cflags libcurl openssl) -Wall -Wextra -Wno-unused-parameter \
              -Wno-missing-field-initializers -Wno-clobbered -Wmissing-prototypes
SHLIB_LINK  = $(shell $(PKG_CONFIG) --libs libcurl openssl)

# No JIT bitcode: nothing here benefits from it, and it would need clang.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Every object depends on the project's headers (PGXS tracks no dependencies).
$(OBJS): src/webhook.h src/queue.h src/endpoint.h src/http.h src/compat.h

webhook.control: webhook.control.in Makefile
	sed 's/@EXTVERSION@/$(EXTVERSION)/' $< > $@

webhook--$(EXTVERSION).sql: webhook.sql Makefile
	cat $< > $@

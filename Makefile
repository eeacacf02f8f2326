# webhook: PGXS build. libcurl and OpenSSL come through pkg-config.
EXTENSION  = webhook
MODULE_big = webhook
OBJS = src/webhook.o src/worker.o src/queue.o src/http.o src/sign.o \
       src/destination.o src/message.o src/capture.o src/api.o
DATA = webhook--0.1.0.sql
PGFILEDESC = "webhook - transactional outbound webhooks"

REGRESS = setup endpoints publish capture sign views operations privileges contracts
REGRESS_OPTS = --temp-instance=tmp_check --temp-config=$(srcdir)/test/regress.conf \
               --load-extension=webhook
ISOLATION = claim lease races
ISOLATION_OPTS = --temp-instance=tmp_check_iso --temp-config=$(srcdir)/test/regress.conf \
               --load-extension=webhook
TAP_TESTS = 1

PKG_CONFIG ?= pkg-config
PG_CPPFLAGS = $(shell $(PKG_CONFIG) --cflags libcurl openssl) -Wall -Wextra -Wno-unused-parameter \
              -Wno-missing-field-initializers -Wno-clobbered -Wmissing-prototypes
SHLIB_LINK  = $(shell $(PKG_CONFIG) --libs libcurl openssl)

# No JIT bitcode: nothing here benefits from it, and it would need clang.
override with_llvm = no

PG_CONFIG ?= pg_config
PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Every object depends on the project's headers (PGXS tracks no dependencies).
$(OBJS): src/webhook.h src/queue.h src/http.h src/compat.h

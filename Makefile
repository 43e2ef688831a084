# PGXS build of edgeshard.so (C++ sources in extension/ and walsender_fanout/plugin/ plus the
# server-independent code of common/)
# and of the SQL scripts in sql/. `make installcheck` runs pg_regress on regress/ (schedule order).
PG_CONFIG ?= pg_config

MODULE_big = edgeshard
EXTENSION_SOURCES = $(sort $(wildcard extension/*.cpp walsender_fanout/plugin/*.cpp))
COMMON_SOURCES = $(sort $(wildcard common/*.cpp))
OBJS = $(EXTENSION_SOURCES:.cpp=.o) $(COMMON_SOURCES:.cpp=.o)

# sql/ holds the control file and the scripts; MODULEDIR sends both to share/extension.
MODULEDIR = extension
DATA = sql/edgeshard.control $(sort $(wildcard sql/edgeshard--*.sql))

REGRESS = $(shell sed -n 's/^test: *//p' regress/schedule)
REGRESS_OPTS = --inputdir=regress --outputdir=regress

PG_CXXFLAGS = -std=c++20 -Wno-register -Wall -Wextra -Werror -Wno-missing-field-initializers -MMD -MP
PG_CPPFLAGS = -I$(CURDIR)
SHLIB_LINK = -llz4 -lxxhash -lstdc++

PGXS := $(shell $(PG_CONFIG) --pgxs)
include $(PGXS)

# Server headers are not our code: include them as system headers so -Werror applies to ours only.
override CPPFLAGS := $(patsubst -I$(includedir_server),-isystem $(includedir_server),$(patsubst -I$(includedir_internal),-isystem $(includedir_internal),$(CPPFLAGS)))
# Debian's PostgreSQL also emits LLVM bitcode with clang-14, which defaults to C++14.
override BITCODE_CXXFLAGS += -std=c++20 -Wno-register -I$(CURDIR)

-include $(OBJS:.o=.d)
EXTRA_CLEAN = $(OBJS:.o=.d) regress/results regress/regression.diffs regress/regression.out

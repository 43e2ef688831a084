// Guard included by every common/ header: common/ code is shared with the daemons and client
// libraries, so it must compile without PostgreSQL and must never see its server headers (their
// macros, e.g. snprintf, Min, Max, would silently change what the C++ code means).
#pragma once

#if defined(POSTGRES_H)
#error \
    "common/ code must not see PostgreSQL server headers: include C++ and common/ headers before postgres.h"
#endif

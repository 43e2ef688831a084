/* libedgeshard_reader: read a tenant's edge replica (edge_apply/FORMAT.md) from C, C++ or any
 * language with a C FFI. Rows are looked up by primary key in microseconds from mmapped files,
 * never half of a transaction; freshness and read-your-writes bookmarks say how current they are.
 *
 *   es_replica *r;
 *   if (es_open("/var/lib/edgeshard/edge", "42", &r) != ES_OK) ...;      // data dir, tenant key
 *   const char *key[] = {"42", "1001"};                                   // PK values, as text
 *   es_row *row;
 *   if (es_get(r, "orders", key, 2, &row) == ES_OK) {
 *     int64_t amount_cents; es_row_int64(row, "amount_cents", &amount_cents);
 *     puts(es_row_json(row));                                             // {"tenant_id":42,...}
 *     es_row_free(row);
 *   }
 *   es_wait_for(r, bookmark_from_primary, 500);                          // read your writes
 *   es_close(r);
 *
 * Every function is noexcept: it returns a status and, on failure, es_last_error(r) says why.
 * A replica handle is not thread-safe: use one per thread (they share the OS page cache). Many
 * processes may read one replica while the apply daemon writes it; no lock is shared with it.
 */
#ifndef EDGESHARD_READER_H
#define EDGESHARD_READER_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library exports only these functions. */
#define ES_API __attribute__((visibility("default")))

/* Outcome of a call. */
typedef enum es_status {
  ES_OK = 0,
  ES_NOT_FOUND = 1,     /* no row with that key (or no such column) */
  ES_NO_TABLE = 2,      /* the replica has no such table */
  ES_NOT_PUBLISHED = 3, /* no replica of this tenant here, or its initial copy is not complete */
  ES_CORRUPT = 4,       /* a file fails its checksum or format checks: never returned as data */
  ES_IO = 5,            /* a file could not be read */
  ES_TIMEOUT = 6,       /* es_wait_for: not applied in time */
  ES_INVALID = 7,       /* a bad argument: key count or text, bookmark syntax, type mismatch */
  ES_NO_MEMORY = 8
} es_status;

typedef struct es_replica es_replica; /* one tenant's replica, as one reader sees it */
typedef struct es_row es_row;         /* a row returned by es_get or es_scan */

/* How current a replica is, for one shard it follows. */
typedef struct es_freshness {
  char shard[64];           /* shard name */
  uint64_t applied_lsn;     /* every transaction below it is readable */
  int64_t commit_time_us;   /* commit time of the newest applied transaction (Unix µs, 0: none) */
  uint64_t upstream_lsn;    /* the upstream's position as last reported */
  double seconds_behind;    /* upstream report time minus newest applied commit (0 when caught up) */
} es_freshness;

/* Opens tenant's replica under data_dir (the apply daemon's data directory). */
ES_API es_status es_open(const char *data_dir, const char *tenant, es_replica **out);
/* Closes it (NULL is fine). */
ES_API void es_close(es_replica *r);
/* Why the last failed call on r failed (empty after a success); valid until the next call. */
ES_API const char *es_last_error(const es_replica *r);
/* Bounds r's cache of decompressed blocks (default 64 MiB): size it to the tenant's working set
 * for lookups from memory; a rule of thumb: about twice the replica files' size. */
ES_API es_status es_set_cache_bytes(es_replica *r, size_t bytes);
/* Uses the newest data the apply daemon published (otherwise one atomic load). es_get and es_scan
 * call it first; a reader that wants a stable view calls es_pin(r, 1) to stop that. */
ES_API es_status es_refresh(es_replica *r);
/* pinned = 1: es_get/es_scan keep the current snapshot until es_pin(r, 0) or es_refresh(). */
ES_API void es_pin(es_replica *r, int pinned);

/* The row of table ("schema.name", or "name" when unique) whose primary key columns, in key
 * order, have these values in PostgreSQL's text form ("42", "t", a uuid, "2024-05-01 12:00:00+00"). */
ES_API es_status es_get(es_replica *r, const char *table, const char *const *key_text, size_t nkeys,
                 es_row **out);
/* Calls fn for each row of table whose key is >= from and < to (key prefixes as text values; NULL
 * and 0 for unbounded), in key order; fn returns 0 to stop. The row is valid during the call only. */
ES_API es_status es_scan(es_replica *r, const char *table, const char *const *from, size_t nfrom,
                  const char *const *to, size_t nto, int (*fn)(const es_row *row, void *ctx),
                  void *ctx);
/* Frees a row from es_get (NULL is fine). */
ES_API void es_row_free(es_row *row);

/* Columns of a row. */
ES_API size_t es_row_column_count(const es_row *row);
ES_API const char *es_row_column_name(const es_row *row, size_t i);
ES_API uint32_t es_row_column_type(const es_row *row, size_t i); /* PostgreSQL type oid */
/* Typed access by column name: ES_NOT_FOUND without that column, ES_INVALID on a type mismatch;
 * *is_null (may be NULL) tells SQL NULL apart (the value is then 0 / empty). */
ES_API es_status es_row_int64(const es_row *row, const char *column, int64_t *out, int *is_null);
ES_API es_status es_row_double(const es_row *row, const char *column, double *out, int *is_null);
ES_API es_status es_row_bool(const es_row *row, const char *column, int *out, int *is_null);
/* Text-like columns (text, varchar, char, name, json, jsonb): a view into the row. */
ES_API es_status es_row_text(const es_row *row, const char *column, const char **data, size_t *len,
                      int *is_null);
/* Any column in PostgreSQL's text form (copied into the row; valid while the row lives). */
ES_API es_status es_row_value_text(const es_row *row, const char *column, const char **text, int *is_null);
/* The raw value: PostgreSQL's binary send format of the column's type. */
ES_API es_status es_row_raw(const es_row *row, const char *column, const uint8_t **data, size_t *len,
                     int *is_null);
/* The whole row as a JSON object (valid while the row lives). */
ES_API const char *es_row_json(const es_row *row);

/* Freshness of the replica for each shard it follows: fills up to cap entries, returns how many. */
ES_API size_t es_freshness_get(es_replica *r, es_freshness *out, size_t cap);
/* Waits until the write behind bookmark (text of edgeshard.bookmark() on the primary) is readable
 * here, or timeout_ms passes (ES_TIMEOUT). Also on a handle whose es_open said ES_NOT_PUBLISHED:
 * a tenant not on this edge yet is waited for until it appears and reaches the bookmark. */
ES_API es_status es_wait_for(es_replica *r, const char *bookmark, int timeout_ms);
/* Checks every block and file checksum of the current snapshot (slow: reads everything). */
ES_API es_status es_verify(es_replica *r);

#ifdef __cplusplus
}
#endif

#endif /* EDGESHARD_READER_H */

/*
 * db: the thin SQL driver under the store.
 *
 * One struct db is one connection to SQLite or PostgreSQL, used by one
 * thread at a time. SQL is written once, portably, with $1, $2, ...
 * placeholders; parameters are bound from a format string:
 *
 *   'i'  int64_t
 *   't'  const char *, NULL binds SQL NULL
 *   'b'  const void *, size_t: bytes (BLOB / BYTEA)
 *
 * Result rows come back as a JSON array of objects keyed by column name:
 * integers as JSON integers, text and bytes as JSON strings (bytes may
 * be any octets: read them with json_string_length()), NULL as null.
 * Errors return ERR_FAIL, or ERR_CONFLICT for a unique-key violation,
 * with the driver's message.
 */
#ifndef PACKRUN_DB_H
#define PACKRUN_DB_H

#include <jansson.h>
#include <stdarg.h>

enum db_dialect { DB_SQLITE, DB_POSTGRES };

struct db;

/* Open url: "postgresql://..." or "postgres://..." for PostgreSQL,
 * anything else is a SQLite file path ("sqlite:" prefix optional). */
int db_open(const char *url, struct db **out);
void db_close(struct db *db);
enum db_dialect db_dialect(const struct db *db);

/* For SQLite: the database file's path; NULL for PostgreSQL. Borrowed. */
const char *db_path(const struct db *db);

/* Run a statement; returns the number of rows changed (>= 0). sql must be
 * a string that outlives the connection (a literal): it keys the cache of
 * prepared statements. */
int db_exec(struct db *db, const char *sql, const char *fmt, ...);

/* Run a query and set *rows (caller decrefs). Same rule for sql. */
int db_query(struct db *db, const char *sql, json_t **rows, const char *fmt, ...);

/* Run SQL text with no parameters and no results (schema scripts). */
int db_script(struct db *db, const char *sql);

/* Transactions. db_begin() takes the write lock at once (BEGIN IMMEDIATE
 * on SQLite), so that a transaction never fails half-way on a lock. */
int db_begin(struct db *db);
int db_commit(struct db *db);
void db_rollback(struct db *db);

#endif

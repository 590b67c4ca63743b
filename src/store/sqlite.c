/*
 * The SQLite driver: WAL mode, a busy timeout instead of lock errors, and
 * a per-connection cache of prepared statements keyed by the SQL's
 * address (statements are string literals).
 */
#include <fcntl.h>
#include <pthread.h>
#include <sqlite3.h>
#include <unistd.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/db_impl.h"
#include "util/buf.h"
#include "util/err.h"

#define SQLITE_CACHE_SLOTS 64
#define SQLITE_BUSY_MS     30000

/* Writers of this process take turns here rather than in SQLite's lock,
 * whose busy handler sleeps in milliseconds; only other processes meet
 * that lock, and busy_wait() retries them in microseconds. */
static pthread_mutex_t write_mu = PTHREAD_MUTEX_INITIALIZER;

static void sqlite_lock(struct db *db)
{
    (void)db;
    pthread_mutex_lock(&write_mu);
}

static void sqlite_unlock(struct db *db)
{
    (void)db;
    pthread_mutex_unlock(&write_mu);
}

/* SQLite's busy handler: short waits first, then 2 ms ones, for at most
 * SQLITE_BUSY_MS in all. */
static int busy_wait(void *arg, int count)
{
    static const int steps_us[] = {10, 20, 50, 100, 200, 500, 1000};
    const int nsteps = sizeof(steps_us) / sizeof(steps_us[0]);
    long waited_us = 0;

    (void)arg;
    for (int i = 0; i < count && i < nsteps; i++)
        waited_us += steps_us[i];
    if (count > nsteps)
        waited_us += (long)(count - nsteps) * 2000;
    if (waited_us > SQLITE_BUSY_MS * 1000L)
        return 0;
    usleep((useconds_t)(count < nsteps ? steps_us[count] : 2000));
    return 1;
}

struct stmt_cache {
    const char *sql[SQLITE_CACHE_SLOTS];
    sqlite3_stmt *stmt[SQLITE_CACHE_SLOTS];
    int used;
};

static int fail(struct db *db, int src)
{
    sqlite3 *conn = db->conn;
    int ext = sqlite3_extended_errcode(conn);
    int code = (ext == SQLITE_CONSTRAINT_UNIQUE || ext == SQLITE_CONSTRAINT_PRIMARYKEY)
                   ? ERR_CONFLICT
                   : ERR_FAIL;

    (void)src;
    return err_set(code, "sqlite %s: %s", db->path, sqlite3_errmsg(conn));
}

static int prepare(struct db *db, const char *sql, sqlite3_stmt **out)
{
    struct stmt_cache *cache = db->priv;
    sqlite3_stmt *stmt;

    for (int i = 0; i < cache->used; i++) {
        if (cache->sql[i] == sql) {
            *out = cache->stmt[i];
            return 0;
        }
    }
    if (sqlite3_prepare_v3(db->conn, sql, -1, SQLITE_PREPARE_PERSISTENT, &stmt, NULL) != SQLITE_OK)
        return fail(db, 0);
    if (cache->used < SQLITE_CACHE_SLOTS) {
        cache->sql[cache->used] = sql;
        cache->stmt[cache->used] = stmt;
        cache->used++;
    }
    *out = stmt;
    return 0;
}

static void release(struct db *db, sqlite3_stmt *stmt)
{
    struct stmt_cache *cache = db->priv;

    sqlite3_reset(stmt);
    sqlite3_clear_bindings(stmt);
    for (int i = 0; i < cache->used; i++) {
        if (cache->stmt[i] == stmt)
            return;
    }
    sqlite3_finalize(stmt);
}

static int bind(struct db *db, sqlite3_stmt *stmt, const char *fmt, va_list ap)
{
    int n = 0;

    for (const char *f = fmt ? fmt : ""; *f; f++) {
        char name[16];
        int rc, idx;

        /* SQLite numbers "$N" parameters in order of first use. */
        snprintf(name, sizeof(name), "$%d", ++n);
        idx = sqlite3_bind_parameter_index(stmt, name);
        if (*f == 'i') {
            rc = sqlite3_bind_int64(stmt, idx, va_arg(ap, int64_t));
        } else if (*f == 't') {
            const char *s = va_arg(ap, const char *);

            rc = s ? sqlite3_bind_text(stmt, idx, s, -1, SQLITE_TRANSIENT)
                   : sqlite3_bind_null(stmt, idx);
        } else if (*f == 'b') {
            const void *p = va_arg(ap, const void *);
            size_t len = va_arg(ap, size_t);

            rc = sqlite3_bind_blob64(stmt, idx, p ? p : "", len, SQLITE_TRANSIENT);
        } else {
            return err_set(ERR_FAIL, "db: unknown parameter type '%c'", *f);
        }
        if (rc != SQLITE_OK && idx > 0)
            return fail(db, rc);
    }
    return 0;
}

static json_t *column(sqlite3_stmt *stmt, int i)
{
    switch (sqlite3_column_type(stmt, i)) {
    case SQLITE_INTEGER:
        return json_integer(sqlite3_column_int64(stmt, i));
    case SQLITE_FLOAT:
        return json_real(sqlite3_column_double(stmt, i));
    case SQLITE_NULL:
        return json_null();
    default: {
        const void *p = sqlite3_column_blob(stmt, i);
        int len = sqlite3_column_bytes(stmt, i);

        return json_stringn_nocheck(p ? p : "", (size_t)len);
    }
    }
}

static int sqlite_run(struct db *db, const char *sql, json_t **rows, const char *fmt, va_list ap)
{
    sqlite3_stmt *stmt = NULL;
    json_t *out = rows ? json_array() : NULL;
    int rc, step, locked = 0;

    rc = prepare(db, sql, &stmt);
    if (rc < 0)
        goto fail;
    rc = bind(db, stmt, fmt, ap);
    if (rc < 0)
        goto done;
    locked = !db->in_tx && !sqlite3_stmt_readonly(stmt);
    if (locked)
        sqlite_lock(db);

    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        json_t *row;
        int ncol = sqlite3_column_count(stmt);

        if (!out)
            continue;
        row = json_object();
        for (int i = 0; i < ncol; i++)
            json_object_set_new(row, sqlite3_column_name(stmt, i), column(stmt, i));
        json_array_append_new(out, row);
    }
    if (step != SQLITE_DONE) {
        rc = fail(db, step);
        goto done;
    }
    rc = sqlite3_changes(db->conn);

done:
    release(db, stmt);
    if (locked)
        sqlite_unlock(db);
    if (rc >= 0) {
        if (rows)
            *rows = out;
        return rc;
    }
fail:
    json_decref(out);
    return rc;
}

static int sqlite_script(struct db *db, const char *sql)
{
    char *msg = NULL;
    int rc;

    if (sqlite3_exec(db->conn, sql, NULL, NULL, &msg) == SQLITE_OK)
        return 0;
    rc = err_set(ERR_FAIL, "sqlite %s: %s", db->path, msg ? msg : "error");
    sqlite3_free(msg);
    return rc;
}

static void sqlite_close(struct db *db)
{
    struct stmt_cache *cache = db->priv;

    for (int i = 0; i < cache->used; i++)
        sqlite3_finalize(cache->stmt[i]);
    free(cache);
    sqlite3_close(db->conn);
}

static const struct db_ops sqlite_ops = {sqlite_run, sqlite_script, sqlite_close, sqlite_lock,
                                         sqlite_unlock};

int sqlite_open(const char *path, struct db *db)
{
    sqlite3 *conn = NULL;
    int flags = SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_NOMUTEX;
    int fd;

    /* The database holds secrets in flight: only its owner may read it,
     * and SQLite gives its -wal and -shm files the same mode. O_EXCL: a
     * close(2) of a file this process already has open would drop every
     * lock its SQLite connections hold on it. */
    fd = open(path, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    if (sqlite3_open_v2(path, &conn, flags, NULL) != SQLITE_OK) {
        int rc =
            err_set(ERR_FAIL, "sqlite %s: %s", path, conn ? sqlite3_errmsg(conn) : "cannot open");

        sqlite3_close(conn);
        return rc;
    }
    db->conn = conn;
    db->ops = &sqlite_ops;
    db->priv = xcalloc(1, sizeof(struct stmt_cache));
    sqlite3_busy_handler(conn, busy_wait, NULL);

    /* WAL lets readers run beside the one writer; NORMAL syncs at
     * checkpoints, so a crash of the process loses nothing and a power
     * cut may lose the last transactions (see docs/operations.md). */
    if (sqlite_script(db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;"
                          "PRAGMA foreign_keys=ON; PRAGMA journal_size_limit=67108864;") < 0) {
        sqlite_close(db);
        return ERR_FAIL;
    }
    return 0;
}

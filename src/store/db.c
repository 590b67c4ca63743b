#include "store/db.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "store/db_impl.h"
#include "util/buf.h"
#include "util/err.h"

int db_open(const char *url, struct db **out)
{
    struct db *db = xcalloc(1, sizeof(*db));
    int rc;

    if (strncmp(url, "postgresql://", 13) == 0 || strncmp(url, "postgres://", 11) == 0) {
        free(db);
        return err_set(ERR_INVALID, "--db %s: PostgreSQL is not supported by this build yet", url);
    }
    if (strncmp(url, "sqlite:", 7) == 0)
        url += 7;
    db->dialect = DB_SQLITE;
    db->path = xstrdup(url);
    rc = sqlite_open(url, db);
    if (rc < 0) {
        free(db->path);
        free(db);
        return rc;
    }
    *out = db;
    return 0;
}

void db_close(struct db *db)
{
    if (!db)
        return;
    db->ops->close(db);
    free(db->path);
    free(db);
}

enum db_dialect db_dialect(const struct db *db)
{
    return db->dialect;
}

const char *db_path(const struct db *db)
{
    return db->path;
}

int db_exec(struct db *db, const char *sql, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = db->ops->run(db, sql, NULL, fmt, ap);
    va_end(ap);
    return rc;
}

int db_query(struct db *db, const char *sql, json_t **rows, const char *fmt, ...)
{
    va_list ap;
    int rc;

    va_start(ap, fmt);
    rc = db->ops->run(db, sql, rows, fmt, ap);
    va_end(ap);
    return rc;
}

int db_script(struct db *db, const char *sql)
{
    return db->ops->script(db, sql);
}

int db_begin(struct db *db)
{
    int rc;

    if (db->ops->lock)
        db->ops->lock(db);
    rc = db->ops->script(db, db->dialect == DB_SQLITE ? "BEGIN IMMEDIATE" : "BEGIN");
    if (rc == 0)
        db->in_tx = 1;
    else if (db->ops->unlock)
        db->ops->unlock(db);
    return rc;
}

int db_commit(struct db *db)
{
    int rc = db->ops->script(db, "COMMIT");

    if (rc < 0) {
        db_rollback(db);
        return rc;
    }
    db->in_tx = 0;
    if (db->ops->unlock)
        db->ops->unlock(db);
    return rc;
}

void db_rollback(struct db *db)
{
    char saved[1024];

    if (!db->in_tx)
        return;
    /* Keep the message of the failure that led here. */
    snprintf(saved, sizeof(saved), "%s", err_msg());
    (void)db->ops->script(db, "ROLLBACK");
    err_set(0, "%s", saved);
    db->in_tx = 0;
    if (db->ops->unlock)
        db->ops->unlock(db);
}

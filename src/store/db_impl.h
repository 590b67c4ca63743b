/*
 * db_impl: what a database driver provides to db.c. Private to src/store.
 */
#ifndef PACKRUN_DB_IMPL_H
#define PACKRUN_DB_IMPL_H

#include "store/db.h"

struct db_ops {
    int (*run)(struct db *db, const char *sql, json_t **rows, const char *fmt, va_list ap);
    int (*script)(struct db *db, const char *sql);
    void (*close)(struct db *db);
    void (*lock)(struct db *db); /* serialise writers in this process; may be NULL */
    void (*unlock)(struct db *db);
};

struct db {
    const struct db_ops *ops;
    enum db_dialect dialect;
    char *path; /* SQLite file, or NULL */
    void *conn; /* the driver's connection */
    void *priv; /* the driver's statement cache */
    int in_tx;
};

int sqlite_open(const char *path, struct db *db);

#endif

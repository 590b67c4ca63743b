/*
 * store_impl: what the files of src/store share about a connection.
 * Private to src/store.
 */
#ifndef PACKRUN_STORE_IMPL_H
#define PACKRUN_STORE_IMPL_H

#include "store/db.h"

struct store {
    struct db *db;
    char *events_dir; /* NULL where the database carries events itself */
};

#endif

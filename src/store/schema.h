/*
 * schema: the numbered migrations that create and upgrade the database.
 * Private to src/store. Each migration is SQL text with two markers that
 * store_migrate() fills in per dialect: @ID@ (an auto-increment 64-bit
 * primary key) and @BLOB@ (a byte string column).
 */
#ifndef PACKRUN_SCHEMA_H
#define PACKRUN_SCHEMA_H

struct schema_migration {
    int version;
    const char *sql;
};

extern const struct schema_migration schema_migrations[];
extern const int schema_migration_count;

#endif

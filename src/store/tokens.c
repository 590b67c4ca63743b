/*
 * The tokens table: API bearer tokens, kept as the SHA-256 of the token.
 * What a token may do is src/api/auth's business; this file only stores
 * and finds them.
 */
#include "store/store.h"

#include <stdlib.h>

#include "store/db.h"
#include "store/store_impl.h"
#include "util/clock.h"
#include "util/err.h"

int store_token_create(struct store *st, const char *name, const char *role, const char *hash)
{
    char now[32];
    int rc;

    clock_now(now, sizeof(now));
    rc =
        db_exec(st->db, "INSERT INTO tokens (name, role, hash, created_at) VALUES ($1, $2, $3, $4)",
                "tttt", name, role, hash, now);
    if (rc == ERR_CONFLICT)
        return err_set(ERR_CONFLICT,
                       "token '%s' exists already (a revoked token keeps its name): "
                       "choose another name",
                       name);
    return rc < 0 ? rc : 0;
}

int store_token_create_for_execution(struct store *st, int64_t id, const char *hash)
{
    char name[40], now[32];
    int rc;

    snprintf(name, sizeof(name), "execution-%lld", (long long)id);
    clock_now(now, sizeof(now));
    rc = db_exec(st->db,
                 "INSERT INTO tokens (name, role, hash, created_at, execution_id)"
                 " VALUES ($1, 'operator', $2, $3, $4)",
                 "ttti", name, hash, now, id);
    return rc < 0 ? rc : 0;
}

int store_token_revoke_ended(struct store *st)
{
    char now[32];

    clock_now(now, sizeof(now));
    return db_exec(st->db,
                   "UPDATE tokens SET revoked_at = $1 WHERE execution_id IS NOT NULL"
                   " AND revoked_at IS NULL AND execution_id IN (SELECT id FROM executions"
                   " WHERE status IN ('succeeded', 'failed', 'timeout', 'canceled', 'abandoned'))",
                   "t", now);
}

int store_token_find(struct store *st, const char *hash, json_t **out)
{
    json_t *rows = NULL;
    int rc;

    rc = db_query(st->db,
                  "SELECT id, name, role, hash, created_at, last_used_at, revoked_at"
                  " FROM tokens WHERE hash = $1",
                  &rows, "t", hash);
    if (rc < 0)
        return rc;
    if (json_array_size(rows) == 0) {
        json_decref(rows);
        return err_set(ERR_NOTFOUND, "no such token");
    }
    *out = json_incref(json_array_get(rows, 0));
    json_decref(rows);
    return 0;
}

int store_token_list(struct store *st, json_t **out)
{
    int rc = db_query(st->db,
                      "SELECT name, role, created_at, last_used_at, revoked_at"
                      " FROM tokens ORDER BY name",
                      out, "");

    return rc < 0 ? rc : 0;
}

int store_token_revoke(struct store *st, const char *name)
{
    json_t *rows = NULL;
    char now[32];
    int rc;

    clock_now(now, sizeof(now));
    rc = db_exec(st->db, "UPDATE tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL",
                 "tt", name, now);
    if (rc != 0)
        return rc < 0 ? rc : 0;

    /* Nothing changed: say why. */
    rc = db_query(st->db, "SELECT revoked_at FROM tokens WHERE name = $1", &rows, "t", name);
    if (rc < 0)
        return rc;
    if (json_array_size(rows) == 0)
        rc = err_set(ERR_NOTFOUND, "token '%s' not found", name);
    else
        rc = err_set(ERR_CONFLICT, "token '%s' was revoked already, at %s", name,
                     json_string_value(json_object_get(json_array_get(rows, 0), "revoked_at")));
    json_decref(rows);
    return rc;
}

int store_token_touch(struct store *st, int64_t id, const char *now, const char *stale_before)
{
    int rc = db_exec(st->db,
                     "UPDATE tokens SET last_used_at = $2"
                     " WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $3)",
                     "itt", id, now, stale_before);

    return rc < 0 ? rc : rc > 0;
}

int store_token_count(struct store *st)
{
    json_t *rows = NULL;
    int rc;

    rc = db_query(st->db, "SELECT COUNT(*) AS n FROM tokens", &rows, "");
    if (rc < 0)
        return rc;
    rc = (int)json_integer_value(json_object_get(json_array_get(rows, 0), "n"));
    json_decref(rows);
    return rc;
}

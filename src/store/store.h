/*
 * store: the only way to the database.
 *
 * A struct store is one connection, used by one thread at a time; a
 * daemon opens one per thread, or borrows one from a store_pool. Every
 * function returns 0 (or a count) on success and a negative ERR_* code
 * with a message on failure; ERR_NOTFOUND when the object asked for does
 * not exist. Objects come back as JSON in the form the API returns them
 * (caller decrefs what it gets through **out).
 *
 * Executions move requested -> scheduled -> running -> succeeded |
 * failed | timeout | canceled, with canceling between running and
 * canceled, and abandoned when their worker stops heartbeating. Every
 * status change is one statement guarded by the expected current
 * status, so that two workers never both own an execution.
 *
 * Events wake waiters without polling the database: store_notify()
 * announces a change on a channel to every process on the database, and
 * store_wait() sleeps until one arrives.
 */
#ifndef PACKRUN_STORE_H
#define PACKRUN_STORE_H

#include <jansson.h>
#include <stdint.h>

struct store;

int store_open(const char *url, struct store **out);
void store_close(struct store *st);

/* Create or upgrade the schema by its numbered migrations, in one
 * transaction each. Safe to call from several processes at once. */
int store_migrate(struct store *st);

/* 1 if the database answers a trivial query, for /health. */
int store_ping(struct store *st);

/* --- packs and actions ------------------------------------------------- */

/* Register pack (as pack_load() returns it) installed in dir, replacing
 * an earlier release of the same ref and its actions, and queue a setup
 * job for each runtime environment it declares, in one transaction. */
int store_pack_put(struct store *st, const json_t *pack, const char *dir);

/* {ref, label, description, version, digest, dir, runtimes, manifests,
 *  meta, actions: [refs], created_at, updated_at} */
int store_pack_get(struct store *st, const char *ref, json_t **out);
int store_pack_list(struct store *st, json_t **out);
int store_pack_delete(struct store *st, const char *ref);

/* The action (as pack_load() made it) plus "pack", "pack_dir",
 * "pack_digest" and "pack_manifests". */
int store_action_get(struct store *st, const char *ref, json_t **out);

/* All actions, or those of one pack when pack is not NULL. */
int store_action_list(struct store *st, const char *pack, json_t **out);

/* --- executions -------------------------------------------------------- */

enum store_status {
    ST_REQUESTED,
    ST_SCHEDULED,
    ST_RUNNING,
    ST_SUCCEEDED,
    ST_FAILED,
    ST_TIMEOUT,
    ST_CANCELING,
    ST_CANCELED,
    ST_ABANDONED,
};

const char *store_status_name(enum store_status s);
/* Returns the status, or -1 for an unknown name. */
int store_status_parse(const char *name);
int store_status_terminal(enum store_status s);

/*
 * Queue an execution. req holds "action", "pack", "parameters" (as they
 * may be shown: secrets redacted), "spec" (everything the worker needs
 * to run it: the action, its pack folder, the full parameters),
 * "timeout_seconds" and "needs_env" (true when a worker must prepare an
 * environment first). Sets *out (caller decrefs) to the new record.
 */
int store_execution_create(struct store *st, const json_t *req, json_t **out);

/* The execution as the API shows it (no spec). */
int store_execution_get(struct store *st, int64_t id, json_t **out);

struct store_filter {
    const char *status; /* or NULL */
    const char *action; /* or NULL */
    const char *pack;   /* or NULL */
    int64_t before_id;  /* 0, or only ids below this (paging) */
    int limit;          /* 1..1000 */
};

/* Newest first. */
int store_execution_list(struct store *st, const struct store_filter *f, json_t **out);

/* Claim the oldest requested execution for worker: requested ->
 * scheduled, or straight to running when it needs no environment (no
 * store_execution_start() then). Sets *out to {id, action, pack, spec,
 * timeout_seconds, status}; ERR_NOTFOUND when the queue is empty. */
int store_execution_claim(struct store *st, const char *worker, json_t **out);

/* scheduled -> running. ERR_CONFLICT if it is no longer scheduled (a
 * cancel came first). */
int store_execution_start(struct store *st, int64_t id);

/* Move a non-terminal execution to a terminal status with its result
 * (borrowed). Its spec, which may hold secrets, is cleared. */
int store_execution_finish(struct store *st, int64_t id, enum store_status status,
                           const json_t *result);

/* Cancel: requested or scheduled -> canceled at once (returns
 * ST_CANCELED), running -> canceling (returns ST_CANCELING). ERR_CONFLICT
 * when it has already ended. */
int store_execution_cancel(struct store *st, int64_t id);

/* The current status of one execution, or a negative ERR_*. */
int store_execution_status(struct store *st, int64_t id);

/* Mark abandoned every non-terminal, claimed execution whose worker's
 * heartbeat is older than stale_before (ISO 8601) or that belongs to
 * worker (when not NULL). Returns how many. */
int store_execution_abandon(struct store *st, const char *stale_before, const char *worker);

/* Count executions by status, into an object {status: n}. */
int store_execution_counts(struct store *st, json_t **out);

/* --- logs -------------------------------------------------------------- */

/* Append a chunk of an execution's stdout or stderr ("stdout"/"stderr"). */
int store_log_append(struct store *st, int64_t id, const char *stream, int seq, const void *data,
                     size_t len);

/* Read the chunks of a stream from chunk number *seq on, appending the
 * bytes to out and advancing *seq. */
struct buf;
int store_log_read(struct store *st, int64_t id, const char *stream, int *seq, struct buf *out);

/* --- workers ----------------------------------------------------------- */

/* Insert or refresh a worker row: {name, host, pid, runtimes, slots, busy}. */
int store_worker_heartbeat(struct store *st, const json_t *worker);
int store_worker_stop(struct store *st, const char *name);
int store_worker_list(struct store *st, json_t **out);

/* --- environments ------------------------------------------------------ */

/* Insert or replace what a worker's host knows of one environment:
 * {key, host, runtime, status (building|ready|failed), dir, size_bytes,
 *  built_at, build_ms, error, log}. */
int store_env_put(struct store *st, const json_t *env);

/* Record that a pack release's runtime uses environment key on host. */
int store_env_link(struct store *st, const char *pack, const char *digest, const char *runtime,
                   const char *host, const char *key);

/* Every environment, each with "packs": the installed packs using it. */
int store_env_list(struct store *st, json_t **out);

/* The environments whose key starts with prefix (at least 8 digits), with
 * their build logs; ERR_NOTFOUND if none, ERR_INVALID if the prefix is
 * too short or names several keys. */
int store_env_get(struct store *st, const char *prefix, json_t **out);

/* The keys on host that an installed pack release uses, as an array. */
int store_env_keys_in_use(struct store *st, const char *host, json_t **out);

/* Forget environments of host that are not in keep (removed by gc). */
int store_env_forget(struct store *st, const char *host, const char *key);

/* --- jobs: work for workers that is not an execution ---------------------- */

/* Queue a job: kind "setup" or "rebuild" (pack, runtime: build that
 * pack's environment for runtime on the first capable worker) or "gc"
 * (target: the worker that must run it). Sets *id. */
int store_job_create(struct store *st, const char *kind, const char *pack, const char *runtime,
                     const char *target, int64_t *id);

/* Claim the oldest job worker can do: its target is worker or none, and
 * its runtime is one of runtimes (a list such as ",python,node,"). */
int store_job_claim(struct store *st, const char *worker, const char *runtimes, json_t **out);

int store_job_finish(struct store *st, int64_t id, const char *status, const json_t *result);
int store_job_get(struct store *st, int64_t id, json_t **out);

/* Set the progress note of a running execution (NULL clears it). */
int store_execution_progress(struct store *st, int64_t id, const char *note);

/* --- tokens: API bearer tokens ------------------------------------------ */

/*
 * A token row holds the token's name (unique), its role ("admin",
 * "operator" or "viewer"; the store does not interpret it), the hex
 * SHA-256 of the token (the token itself is never stored), and
 * created_at, last_used_at and revoked_at (NULL until they happen).
 * A revoked token stays listed; its name cannot be reused.
 */

/* Add a token. ERR_CONFLICT naming the name when it is taken (also by a
 * revoked token). */
int store_token_create(struct store *st, const char *name, const char *role, const char *hash);

/* The token whose hash is hash (64 hex digits): {id, name, role, hash,
 * created_at, last_used_at, revoked_at}. ERR_NOTFOUND when there is none.
 * One lookup on a unique index: cheap enough for every request. */
int store_token_find(struct store *st, const char *hash, json_t **out);

/* Every token, by name, without its hash: [{name, role, created_at,
 * last_used_at, revoked_at}]. */
int store_token_list(struct store *st, json_t **out);

/* Revoke the token called name. ERR_NOTFOUND if there is none,
 * ERR_CONFLICT if it is already revoked. */
int store_token_revoke(struct store *st, const char *name);

/* Set last_used_at of token id to now (ISO 8601) unless it is already
 * at or after stale_before, so that busy tokens cost one write a minute
 * and not one per request. Returns 1 if it wrote, 0 if not. */
int store_token_touch(struct store *st, int64_t id, const char *now, const char *stale_before);

/* An operator token for the action of execution id, named
 * "execution-ID", valid until the execution ends. */
int store_token_create_for_execution(struct store *st, int64_t id, const char *hash);

/* Revoke the tokens of executions that have ended (and of those a dead
 * worker left). Returns how many. */
int store_token_revoke_ended(struct store *st);

/* How many tokens exist, revoked ones included. */
int store_token_count(struct store *st);

/* --- metrics ------------------------------------------------------------ */

#define STORE_DURATION_BUCKETS 14
extern const int store_duration_buckets_ms[STORE_DURATION_BUCKETS];

/* What /metrics reports, read from the database so that it covers every
 * worker: {executions: [{action, status, n}], duration_buckets: [counts at
 * or below each bound of store_duration_buckets_ms], duration_count,
 * duration_sum_ms, environments: {builds, failures, build_ms}, workers:
 * [{name, slots, busy}]}. The queue depth is the requested count. */
int store_metrics(struct store *st, json_t **out);

/* --- events ------------------------------------------------------------ */

enum store_channel {
    STORE_CH_QUEUE,    /* an execution was queued */
    STORE_CH_FINISHED, /* an execution changed status */
    STORE_CH_LOG,      /* a log chunk was appended */
    STORE_CH_JOBS,     /* an environment job was queued */
    STORE_CH_CANCEL,   /* a running execution was asked to cancel */
    STORE_CH_COUNT,
};

/* Tell every process on this database that ch changed. */
int store_notify(struct store *st, enum store_channel ch);

/* The current event count of ch, to pass to store_wait(). */
uint64_t store_seen(struct store *st, enum store_channel ch);

/* Sleep until ch has moved past *seen or timeout_ms passes; updates *seen.
 * Returns 1 on an event, 0 on timeout. */
int store_wait(struct store *st, enum store_channel ch, uint64_t *seen, int timeout_ms);

/* --- a pool of connections for threads that come and go ------------------ */

struct store_pool;

int store_pool_new(const char *url, struct store_pool **out);
void store_pool_free(struct store_pool *pool);
/* Borrow a connection; give it back with store_pool_put(). */
int store_pool_get(struct store_pool *pool, struct store **out);
void store_pool_put(struct store_pool *pool, struct store *st);

#endif

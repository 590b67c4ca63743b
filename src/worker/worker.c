#include "worker/worker.h"

#include <errno.h>
#include <pwd.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "env/env.h"
#include "runner/runner.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hash.h"
#include "util/log.h"

/* Output is written to the log store in chunks of at most this size, or
 * sooner when it has waited LOG_FLUSH_MS. */
#define LOG_CHUNK_BYTES (64 * 1024)
#define LOG_FLUSH_MS    50

struct slot {
    struct worker *w;
    int index;
    pthread_t thread;
    int cancel_fd;           /* eventfd: readable to end the running execution */
    _Atomic int64_t running; /* the execution id, or 0 */
    _Atomic int abandon;     /* ended by shutdown: store it as abandoned */
};

struct log_sink {
    struct store *st;
    int64_t id;
    int seq;
    struct buf pending[2];
    int64_t flushed_at;
};

struct worker {
    const struct config *cfg;
    struct runtime runtimes[RUNTIME_COUNT];
    struct runner_config rcfg;
    char *name;
    char *host;
    char *work_dir;
    char *envs_dir;
    char *runtime_list; /* ",python,shell,native," for job claims */
    int drop;           /* actions run as run_uid/run_gid */
    char **linked;      /* "digest/runtime/key" already recorded, under mu */
    size_t nlinked;
    uid_t run_uid;
    gid_t run_gid;
    char *run_home;
    atomic_int stopping;
    atomic_int busy;
    struct slot *slots;
    pthread_t heartbeat_thread;
    pthread_t cancel_thread;
    pthread_t setup_thread;
    pthread_mutex_t mu;
    pthread_cond_t cond; /* wakes the heartbeat thread at stop */
};

/* --- output to the log store ---------------------------------------- */

static void sink_flush(struct log_sink *s, int stream)
{
    struct buf *b = &s->pending[stream - 1];

    if (b->len == 0)
        return;
    if (store_log_append(s->st, s->id, stream == PROC_STDOUT ? "stdout" : "stderr", s->seq++,
                         b->data, b->len) < 0)
        log_warn("worker", "execution %lld: storing output failed: %s", (long long)s->id,
                 err_msg());
    buf_reset(b);
    s->flushed_at = clock_mono_ns() / 1000000;
}

static void sink_write(void *ctx, int stream, const char *data, size_t len)
{
    struct log_sink *s = ctx;
    struct buf *b;

    if (stream == 0) {
        /* Output paused: make what has come readable now. */
        sink_flush(s, PROC_STDOUT);
        sink_flush(s, PROC_STDERR);
        return;
    }
    b = &s->pending[stream - 1];

    buf_add(b, data, len);
    if (b->len >= LOG_CHUNK_BYTES || clock_mono_ns() / 1000000 - s->flushed_at >= LOG_FLUSH_MS)
        sink_flush(s, stream);
}

/* --- environments --------------------------------------------------- */

/* The runtime of an action whose pack declares a manifest for it, or -1
 * when the action needs no environment. */
static int env_runtime(const json_t *action, const json_t *manifests, const char **manifest)
{
    const char *type = json_string_value(json_object_get(action, "runner_type"));
    int kind = type ? runtime_kind_parse(type) : -1;

    if (kind != RUNTIME_PYTHON && kind != RUNTIME_NODE)
        return -1;
    *manifest = json_string_value(json_object_get(manifests, type));
    return *manifest ? kind : -1;
}

/* Record what was built (or failed) for operators: env list/show. */
static void env_record(struct worker *w, struct store *st, const struct env_result *res,
                       const char *runtime, const char *status, int built)
{
    int failed = strcmp(status, "failed") == 0;
    char *log_path = xasprintf("%s/%s/%s.log", w->envs_dir, runtime, res->key);
    struct buf log = BUF_INIT;
    long long size = 0;
    char built_at[32];
    json_t *row;

    (void)fs_read_file(log_path, 1024 * 1024, &log);
    if (!failed && res->dir)
        (void)fs_tree_size(res->dir, &size);
    clock_now(built_at, sizeof(built_at));
    row = json_pack("{s:s, s:s, s:s, s:s, s:s?, s:I, s:s?, s:I, s:s?, s:s%}", "key", res->key,
                    "host", w->host, "runtime", runtime, "status", status, "dir",
                    failed ? NULL : res->dir, "size_bytes", (json_int_t)size, "built_at",
                    failed ? NULL : built_at, "build_ms", (json_int_t)(res->seconds * 1000),
                    "error", res->error, "log", buf_str(&log), log.len);
    json_object_set_new(row, "built", json_boolean(built));
    if (!row || store_env_put(st, row) < 0)
        log_warn("worker", "environment %.12s: recording it failed: %s", res->key, err_msg());
    json_decref(row);
    buf_free(&log);
    free(log_path);
}

/* Record once per worker that a pack release uses an environment, so
 * that a warm execution writes nothing. */
static int env_link_once(struct worker *w, struct store *st, const char *pack, const char *digest,
                         const char *runtime, const char *key)
{
    char *entry = xasprintf("%s/%s/%s", digest, runtime, key);
    int known = 0, rc = 0;

    pthread_mutex_lock(&w->mu);
    for (size_t i = 0; i < w->nlinked && !known; i++)
        known = strcmp(w->linked[i], entry) == 0;
    pthread_mutex_unlock(&w->mu);
    if (!known)
        rc = store_env_link(st, pack, digest, runtime, w->host, key);
    if (!known && rc == 0) {
        pthread_mutex_lock(&w->mu);
        w->linked = xrealloc(w->linked, (w->nlinked + 1) * sizeof(*w->linked));
        w->linked[w->nlinked++] = entry;
        entry = NULL;
        pthread_mutex_unlock(&w->mu);
    }
    free(entry);
    return rc;
}

/*
 * Ensure the environment of a pack release (dir, digest) for runtime
 * kind, and record it. Returns what env_ensure() returned; res is filled
 * either way.
 */
static int env_prepare(struct worker *w, struct store *st, const char *pack, const char *dir,
                       const char *digest, int kind, const char *manifest, int ready_only,
                       struct env_result *res)
{
    const struct runtime *rt = &w->runtimes[kind];
    char *path = xasprintf("%s/%s", dir, manifest);
    struct env_spec spec = {
        .rt = rt,
        .manifest = path,
        .pack_dir = dir,
        .options = kind == RUNTIME_PYTHON ? w->cfg->pip_options : w->cfg->npm_options,
        .timeout_s = (int)(w->cfg->env_build_timeout_ms / 1000),
        .ready_only = 1,
    };
    int rc;

    memset(res, 0, sizeof(*res));
    if (!rt->path) {
        rc = err_set(ERR_FAIL, "runtime %s is not available on worker %s: %s", rt->name, w->name,
                     rt->error ? rt->error : "no interpreter");
        res->error = xstrdup(err_msg());
        free(path);
        return rc;
    }
    /* The fast path; then, if allowed, a build (or a wait for one). */
    rc = env_ensure(w->envs_dir, &spec, res);
    if (rc == ERR_NOTFOUND && !ready_only) {
        env_record(w, st, res, rt->name, "building", 0);
        env_result_free(res);
        spec.ready_only = 0;
        rc = env_ensure(w->envs_dir, &spec, res);
        if (rc < 0 && !res->error)
            res->error = xstrdup(err_msg());
        env_record(w, st, res, rt->name, rc < 0 ? "failed" : "ready", rc < 0 || res->created);
    } else if (rc == ERR_NOTFOUND) {
        free(path);
        return rc;
    }
    if (rc == 0 && res->created)
        log_info("worker", "environment %.12s (%s, pack %s) built in %.2f s", res->key, rt->name,
                 pack, res->seconds);
    else if (rc < 0)
        log_warn("worker", "environment %.12s (%s, pack %s) failed: %s", res->key, rt->name, pack,
                 res->error);
    if (rc == 0 && env_link_once(w, st, pack, digest, rt->name, res->key) < 0)
        log_warn("worker", "environment %.12s: linking pack %s failed: %s", res->key, pack,
                 err_msg());
    free(path);
    return rc;
}

/*
 * Before an execution: ensure its environment. Sets *env to the record
 * for its result. Returns 0 to run (on the environment, or on the system
 * interpreter as a fallback) or a negative ERR_* when on_failure is fail.
 */
static int execution_env(struct worker *w, struct store *st, int64_t id, const json_t *spec,
                         struct env_result *res, json_t **env)
{
    const json_t *action = json_object_get(spec, "action");
    const char *manifest = NULL, *pack = json_string_value(json_object_get(action, "pack"));
    const char *dir = json_string_value(json_object_get(spec, "pack_dir"));
    const char *digest = json_string_value(json_object_get(spec, "pack_digest"));
    int kind = env_runtime(action, json_object_get(spec, "manifests"), &manifest);
    int64_t t0 = clock_mono_ns();
    int fail, built, rc;
    char *note;

    memset(res, 0, sizeof(*res));
    if (kind < 0) {
        *env = json_pack("{s:n, s:s, s:f, s:n}", "key", "status", "none", "seconds", 0.0, "error");
        return 0;
    }

    /* The fast path first: only a build is worth a progress note. */
    rc = env_prepare(w, st, pack, dir, digest, kind, manifest, 1, res);
    built = rc == ERR_NOTFOUND;
    if (rc == ERR_NOTFOUND) {
        note = xasprintf("preparing the %s environment", w->runtimes[kind].name);
        (void)store_execution_progress(st, id, note);
        free(note);
        env_result_free(res);
        rc = env_prepare(w, st, pack, dir, digest, kind, manifest, 0, res);
        (void)store_execution_progress(st, id, NULL);
    }

    fail = rc < 0 && strcmp(w->cfg->env_on_failure, "fail") == 0;
    /* "created": built for this run, by this worker or one it waited for. */
    *env = json_pack("{s:s?, s:s, s:f, s:s?}", "key", res->key[0] ? res->key : NULL, "status",
                     rc < 0  ? (fail ? "failed" : "fallback")
                     : built ? "created"
                             : "ready",
                     "seconds", (double)(clock_mono_ns() - t0) / 1e9, "error", res->error);
    if (fail)
        return err_set(ERR_FAIL, "environment %.12s could not be built: %s", res->key,
                       res->error ? res->error : "unknown error");
    if (rc < 0) {
        /* Fall back to the system interpreter: no environment folder. */
        free(res->dir);
        res->dir = NULL;
    }
    return 0;
}

/* --- one execution ---------------------------------------------------- */

static enum store_status outcome_status(enum runner_outcome o)
{
    switch (o) {
    case RUN_SUCCEEDED:
        return ST_SUCCEEDED;
    case RUN_TIMEOUT:
        return ST_TIMEOUT;
    case RUN_CANCELED:
        return ST_CANCELED;
    default:
        return ST_FAILED;
    }
}

static void run_one(struct slot *slot, struct store *st, json_t *job)
{
    struct worker *w = slot->w;
    int64_t id = json_integer_value(json_object_get(job, "id"));
    json_t *spec = json_object_get(job, "spec");
    struct env_result envres;
    json_t *env = NULL;
    int hold = -1;
    char *api_token = NULL;
    struct log_sink sink = {.st = st, .id = id, .flushed_at = clock_mono_ns() / 1000000};
    struct runner_job rj = {
        .id = id,
        .action = json_object_get(spec, "action"),
        .pack_dir = json_string_value(json_object_get(spec, "pack_dir")),
        .parameters = json_object_get(spec, "parameters"),
        .timeout_seconds = json_integer_value(json_object_get(job, "timeout_seconds")),
        .cancel_fd = slot->cancel_fd,
        .sink = sink_write,
        .ctx = &sink,
    };
    enum store_status status;
    enum runner_outcome outcome;
    json_t *result = NULL;
    uint64_t drained;

    memset(&envres, 0, sizeof(envres));
    if (strcmp(json_string_value(json_object_get(job, "status")), "running") != 0 &&
        store_execution_start(st, id) < 0) {
        log_info("worker", "execution %lld: not started: %s", (long long)id, err_msg());
        goto out;
    }
    /* From here a cancel reaches this slot, even while the environment
     * is built; one left over from an earlier execution must not. */
    (void)!read(slot->cancel_fd, &drained, sizeof(drained));
    atomic_store(&slot->running, id);

    if (execution_env(w, st, id, spec, &envres, &env) < 0) {
        result =
            json_pack("{s:n, s:i, s:n, s:s, s:s, s:s, s:O}", "exit_code", "duration_ms", 0, "data",
                      "stdout", "", "stderr", "", "error", err_msg(), "environment", env);
        if (store_execution_finish(st, id, ST_FAILED, result) < 0)
            log_error("worker", "execution %lld: storing the result failed: %s", (long long)id,
                      err_msg());
        else
            log_info("worker", "execution %lld: failed: %s", (long long)id, err_msg());
        goto out;
    }
    if (envres.dir) {
        hold = env_hold(envres.dir);
        if (hold < 0)
            log_warn("worker", "execution %lld: %s", (long long)id, err_msg());
        rj.interpreter = envres.interpreter;
        rj.env_dir = envres.dir;
    }
    rj.environment = env;
    if (json_is_true(json_object_get(rj.action, "api_access"))) {
        char hash[HASH_HEX_LEN + 1];

        hash_token_new(&api_token, hash);
        if (store_token_create_for_execution(st, id, hash) < 0) {
            log_warn("worker", "execution %lld: no API token: %s", (long long)id, err_msg());
            free(api_token);
            api_token = NULL;
        }
        rj.api_token = api_token;
    }
    log_debug("worker", "execution %lld: %s started", (long long)id,
              json_string_value(json_object_get(job, "action")));

    outcome = runner_execute(&w->rcfg, &rj, &result);
    atomic_store(&slot->running, 0);
    sink_flush(&sink, PROC_STDOUT);
    sink_flush(&sink, PROC_STDERR);

    status = outcome_status(outcome);
    if (atomic_load(&slot->abandon)) {
        status = ST_ABANDONED;
        json_object_set_new(result, "error", json_string("abandoned: the worker stopped"));
    }
    if (store_execution_finish(st, id, status, result) < 0)
        log_error("worker", "execution %lld: storing the result failed: %s", (long long)id,
                  err_msg());
    else
        log_info("worker", "execution %lld: %s %s in %lld ms", (long long)id,
                 json_string_value(json_object_get(job, "action")), store_status_name(status),
                 (long long)json_integer_value(json_object_get(result, "duration_ms")));

out:
    atomic_store(&slot->running, 0);
    if (api_token) {
        sodium_memzero(api_token, strlen(api_token));
        free(api_token);
    }
    if (hold >= 0)
        env_release(hold);
    env_result_free(&envres);
    buf_free(&sink.pending[0]);
    buf_free(&sink.pending[1]);
    json_decref(result);
    json_decref(env);
}

static void *slot_main(void *arg)
{
    struct slot *slot = arg;
    struct worker *w = slot->w;
    struct store *st = NULL;
    uint64_t seen;

    if (store_open(w->cfg->db_url, &st) < 0) {
        log_error("worker", "slot %d: %s", slot->index, err_msg());
        return NULL;
    }
    seen = store_seen(st, STORE_CH_QUEUE);
    while (!atomic_load(&w->stopping)) {
        json_t *job = NULL;
        int rc = store_execution_claim(st, w->name, &job);

        if (rc == ERR_NOTFOUND) {
            store_wait(st, STORE_CH_QUEUE, &seen, 1000);
            continue;
        }
        if (rc < 0) {
            log_error("worker", "claim failed: %s", err_msg());
            store_wait(st, STORE_CH_QUEUE, &seen, 1000);
            continue;
        }
        atomic_fetch_add(&w->busy, 1);
        run_one(slot, st, job);
        atomic_fetch_sub(&w->busy, 1);
        json_decref(job);
    }
    store_close(st);
    return NULL;
}

/* --- heartbeat and cancel ------------------------------------------- */

static json_t *worker_row(struct worker *w)
{
    json_t *runtimes = json_array();
    char host[256] = "";

    gethostname(host, sizeof(host) - 1);
    for (int i = 0; i < RUNTIME_COUNT; i++) {
        if (w->runtimes[i].path || i == RUNTIME_NATIVE)
            json_array_append_new(runtimes, json_string(w->runtimes[i].name));
    }
    return json_pack("{s:s, s:s, s:i, s:o, s:i, s:i}", "name", w->name, "host", host, "pid",
                     (int)getpid(), "runtimes", runtimes, "slots", w->cfg->slots, "busy",
                     atomic_load(&w->busy));
}

static void heartbeat(struct worker *w, struct store *st)
{
    char stale[32];
    json_t *row = worker_row(w);
    int n;

    if (store_worker_heartbeat(st, row) < 0)
        log_warn("worker", "heartbeat failed: %s", err_msg());
    json_decref(row);
    clock_iso8601(clock_wall_ms() - w->cfg->worker_stale_ms, stale, sizeof(stale));
    n = store_execution_abandon(st, stale, NULL);
    if (n > 0)
        log_warn("worker", "marked %d executions abandoned: their workers stopped heartbeating", n);
    if (store_token_revoke_ended(st) < 0)
        log_warn("worker", "revoking the tokens of ended executions failed: %s", err_msg());
}

static void *heartbeat_main(void *arg)
{
    struct worker *w = arg;
    struct store *st = NULL;

    if (store_open(w->cfg->db_url, &st) < 0) {
        log_error("worker", "heartbeat: %s", err_msg());
        return NULL;
    }
    pthread_mutex_lock(&w->mu);
    while (!atomic_load(&w->stopping)) {
        struct timespec until;

        pthread_mutex_unlock(&w->mu);
        heartbeat(w, st);
        pthread_mutex_lock(&w->mu);
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += w->cfg->heartbeat_ms / 1000;
        until.tv_nsec += (w->cfg->heartbeat_ms % 1000) * 1000000;
        if (until.tv_nsec >= 1000000000) {
            until.tv_sec++;
            until.tv_nsec -= 1000000000;
        }
        if (!atomic_load(&w->stopping))
            pthread_cond_timedwait(&w->cond, &w->mu, &until);
    }
    pthread_mutex_unlock(&w->mu);
    store_close(st);
    return NULL;
}

static void signal_slot(struct slot *slot)
{
    uint64_t one = 1;

    (void)!write(slot->cancel_fd, &one, sizeof(one));
}

/* On each cancel event, look at what this worker runs. */
static void *cancel_main(void *arg)
{
    struct worker *w = arg;
    struct store *st = NULL;
    uint64_t seen;

    if (store_open(w->cfg->db_url, &st) < 0) {
        log_error("worker", "cancel watch: %s", err_msg());
        return NULL;
    }
    seen = store_seen(st, STORE_CH_CANCEL);
    while (!atomic_load(&w->stopping)) {
        for (int i = 0; i < w->cfg->slots; i++) {
            int64_t id = atomic_load(&w->slots[i].running);

            if (id && store_execution_status(st, id) == ST_CANCELING) {
                log_info("worker", "execution %lld: canceling", (long long)id);
                signal_slot(&w->slots[i]);
            }
        }
        store_wait(st, STORE_CH_CANCEL, &seen, 1000);
    }
    store_close(st);
    return NULL;
}

/* --- jobs: environment setup, rebuild and gc ------------------------ */

static json_t *job_setup(struct worker *w, struct store *st, const json_t *job, int rebuild)
{
    const char *ref = json_string_value(json_object_get(job, "pack"));
    const char *runtime = json_string_value(json_object_get(job, "runtime"));
    int kind = runtime ? runtime_kind_parse(runtime) : -1;
    json_t *pack = NULL, *out;
    struct env_result res;
    const char *manifest = NULL, *dir = NULL;
    int rc;

    memset(&res, 0, sizeof(res));
    rc = store_pack_get(st, ref, &pack);
    if (rc == 0) {
        manifest = json_string_value(json_object_get(json_object_get(pack, "manifests"), runtime));
        dir = json_string_value(json_object_get(pack, "dir"));
        if (kind < 0 || !manifest)
            rc = err_set(ERR_INVALID, "pack %s has no %s environment", ref, runtime);
    }
    if (rc == 0 && rebuild && w->runtimes[kind].path) {
        char *path = xasprintf("%s/%s", dir, manifest);
        struct env_spec spec = {
            .rt = &w->runtimes[kind],
            .manifest = path,
            .pack_dir = dir,
        };

        rc = env_key(&spec, res.key);
        if (rc == 0)
            rc = env_remove(w->envs_dir, res.key);
        if (rc == ERR_NOTFOUND)
            rc = 0;
        free(path);
    }
    if (rc == 0)
        rc = env_prepare(w, st, ref, dir, json_string_value(json_object_get(pack, "digest")), kind,
                         manifest, 0, &res);

    out = json_pack("{s:s?, s:s, s:b, s:f, s:s?}", "key", res.key[0] ? res.key : NULL, "status",
                    rc < 0        ? "failed"
                    : res.created ? "created"
                                  : "ready",
                    "created", res.created, "seconds", res.seconds, "error",
                    rc < 0 ? (res.error ? res.error : err_msg()) : NULL);
    env_result_free(&res);
    json_decref(pack);
    return out;
}

static json_t *job_gc(struct worker *w, struct store *st)
{
    json_t *keep = NULL, *removed = NULL, *key;
    size_t i;
    int rc;

    rc = store_env_keys_in_use(st, w->host, &keep);
    if (rc == 0)
        rc = env_gc(w->envs_dir, keep, &removed);
    json_array_foreach (removed, i, key) {
        (void)store_env_forget(st, w->host, json_string_value(key));
    }
    json_decref(keep);
    if (rc < 0)
        return json_pack("{s:s, s:s}", "status", "failed", "error", err_msg());
    log_info("worker", "environment gc removed %zu environments", json_array_size(removed));
    return json_pack("{s:s, s:o}", "status", "done", "removed", removed);
}

static void *setup_main(void *arg)
{
    struct worker *w = arg;
    struct store *st = NULL;
    uint64_t seen;

    if (store_open(w->cfg->db_url, &st) < 0) {
        log_error("worker", "setup jobs: %s", err_msg());
        return NULL;
    }
    seen = store_seen(st, STORE_CH_JOBS);
    while (!atomic_load(&w->stopping)) {
        json_t *job = NULL, *result;
        const char *kind, *status;
        int64_t id;

        if (store_job_claim(st, w->name, w->runtime_list, &job) < 0) {
            store_wait(st, STORE_CH_JOBS, &seen, 1000);
            continue;
        }
        id = json_integer_value(json_object_get(job, "id"));
        kind = json_string_value(json_object_get(job, "kind"));
        if (strcmp(kind, "gc") == 0)
            result = job_gc(w, st);
        else
            result = job_setup(w, st, job, strcmp(kind, "rebuild") == 0);
        status = json_string_value(json_object_get(result, "status"));
        if (store_job_finish(st, id, strcmp(status, "failed") == 0 ? "failed" : "succeeded",
                             result) < 0)
            log_error("worker", "job %lld: storing the result failed: %s", (long long)id,
                      err_msg());
        json_decref(result);
        json_decref(job);
    }
    store_close(st);
    return NULL;
}

/* --- start and stop ------------------------------------------------- */

/* Pip settings from the config reach builds through the environment,
 * where env_key() also reads them. */
static void env_settings(struct worker *w)
{
    const struct config *cfg = w->cfg;
    struct buf list = BUF_INIT;

    if (cfg->pip_index_url)
        setenv("PIP_INDEX_URL", cfg->pip_index_url, 1);
    if (cfg->pip_find_links)
        setenv("PIP_FIND_LINKS", cfg->pip_find_links, 1);
    if (cfg->pip_no_index)
        setenv("PIP_NO_INDEX", cfg->pip_no_index, 1);

    buf_adds(&list, ",");
    for (int i = 0; i < RUNTIME_COUNT; i++) {
        if (w->runtimes[i].path || i == RUNTIME_NATIVE)
            buf_addf(&list, "%s,", w->runtimes[i].name);
    }
    w->runtime_list = buf_detach(&list);
}

/* 1 if the run_as user can pass through dir (and every folder above). */
static int user_can_enter(struct worker *w, const char *dir)
{
    extern char **environ;
    char *test = NULL;
    struct proc_result res;
    int ok;

    if (runtime_which("test", &test) < 0)
        return 1;
    const char *argv[] = {test, "-x", dir, NULL};
    struct proc_opts opts = {
        .argv = argv,
        .envp = (const char *const *)environ,
        .cwd = "/",
        .timeout_ms = 10000,
        .grace_ms = 1000,
        .cancel_fd = -1,
        .drop_privileges = 1,
        .uid = w->run_uid,
        .gid = w->run_gid,
    };

    ok = proc_run(&opts, &res) == 0 && res.exit_code == 0;
    proc_result_free(&res);
    free(test);
    return ok;
}

/* Who actions run as: a root worker switches to cfg->run_as (unless it is
 * root itself, which the config must say); another worker runs them as
 * itself. */
static int run_as_setup(struct worker *w)
{
    const struct config *cfg = w->cfg;
    struct passwd *pw;

    if (geteuid() != 0) {
        if (cfg->run_as && strcmp(cfg->run_as, "packrun") != 0)
            log_warn("worker", "run_as %s ignored: the worker is not root, actions run as it",
                     cfg->run_as);
        return 0;
    }
    if (!cfg->run_as || strcmp(cfg->run_as, "root") == 0) {
        log_warn("worker", "actions run as root (run_as: root)");
        return 0;
    }
    pw = getpwnam(cfg->run_as);
    if (!pw)
        return err_set(ERR_INVALID,
                       "run_as: no user '%s' to run actions as: create it (useradd --system "
                       "--no-create-home --shell /usr/sbin/nologin %s) or set run_as",
                       cfg->run_as, cfg->run_as);
    if (pw->pw_uid == 0)
        return err_set(ERR_INVALID, "run_as: user '%s' is root; say run_as: root to mean it",
                       cfg->run_as);
    w->run_uid = pw->pw_uid;
    w->run_gid = pw->pw_gid;
    w->run_home = xstrdup(pw->pw_dir && *pw->pw_dir ? pw->pw_dir : "/");
    w->drop = 1;
    if (!user_can_enter(w, cfg->data_dir))
        return err_set(ERR_INVALID,
                       "run_as: user '%s' cannot reach the data folder %s (a folder above it "
                       "is private): use a data folder others may pass through, such as "
                       "/var/lib/packrun, or set run_as: root",
                       cfg->run_as, cfg->data_dir);
    log_info("worker", "actions run as %s (uid %d)", cfg->run_as, (int)pw->pw_uid);
    return 0;
}

static int worker_setup(struct worker *w)
{
    struct runtime_user user;
    const struct config *cfg = w->cfg;
    struct store *st = NULL;
    char host[256] = "";
    int rc;

    gethostname(host, sizeof(host) - 1);
    w->host = xstrdup(host);
    w->name = cfg->worker_name ? xstrdup(cfg->worker_name) : xstrdup(host);
    w->work_dir = xasprintf("%s/run", cfg->data_dir);
    w->envs_dir = xasprintf("%s/envs", cfg->data_dir);
    /* Parameter files in here belong to the action's user, mode 0400. */
    rc = fs_mkdirs(w->work_dir, 0711);
    if (rc == 0 && chmod(w->work_dir, 0711) < 0)
        rc = err_errno(ERR_FAIL, "chmod %s", w->work_dir);
    if (rc == 0)
        rc = fs_mkdirs(w->envs_dir, 0755);
    if (rc < 0)
        return rc;

    rc = run_as_setup(w);
    if (rc < 0)
        return rc;
    user = (struct runtime_user){w->drop, w->run_uid, w->run_gid};
    for (int i = 0; i < RUNTIME_COUNT; i++) {
        runtime_resolve(i, i < 3 ? cfg->interpreters[i] : NULL, &user, &w->runtimes[i]);
        if (w->runtimes[i].path)
            log_info("worker", "runtime %s: %s %s", w->runtimes[i].name, w->runtimes[i].path,
                     w->runtimes[i].version);
        else if (i != RUNTIME_NATIVE)
            log_warn("worker", "runtime %s unavailable: %s", w->runtimes[i].name,
                     w->runtimes[i].error);
    }
    env_settings(w);
    w->rcfg = (struct runner_config){
        .runtimes = w->runtimes,
        .output_cap = (size_t)cfg->output_cap_bytes,
        .grace_ms = cfg->kill_grace_ms,
        .default_timeout_s = cfg->default_timeout_seconds,
        .api_url = cfg->api_url,
        .work_dir = w->work_dir,
        .drop_privileges = w->drop,
        .uid = w->run_uid,
        .gid = w->run_gid,
        .user = cfg->run_as,
        .home = w->run_home,
        .limits = {cfg->limit_open_files, cfg->limit_processes, cfg->limit_address_space},
    };

    /* Executions this worker's name held before a restart cannot be running. */
    rc = store_open(cfg->db_url, &st);
    if (rc < 0)
        return rc;
    rc = store_execution_abandon(st, "", w->name);
    if (rc > 0)
        log_warn("worker", "marked %d executions of the previous %s abandoned", rc, w->name);
    heartbeat(w, st);
    store_close(st);
    return rc < 0 ? rc : 0;
}

int worker_start(const struct config *cfg, struct worker **out)
{
    struct worker *w = xcalloc(1, sizeof(*w));
    int rc;

    w->cfg = cfg;
    pthread_mutex_init(&w->mu, NULL);
    pthread_cond_init(&w->cond, NULL);
    rc = worker_setup(w);
    if (rc < 0)
        goto fail;

    w->slots = xcalloc((size_t)cfg->slots, sizeof(*w->slots));
    for (int i = 0; i < cfg->slots; i++) {
        struct slot *slot = &w->slots[i];

        slot->w = w;
        slot->index = i;
        slot->cancel_fd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
        if (slot->cancel_fd < 0) {
            rc = err_errno(ERR_FAIL, "eventfd");
            goto fail;
        }
        pthread_create(&slot->thread, NULL, slot_main, slot);
    }
    pthread_create(&w->heartbeat_thread, NULL, heartbeat_main, w);
    pthread_create(&w->cancel_thread, NULL, cancel_main, w);
    pthread_create(&w->setup_thread, NULL, setup_main, w);
    log_info("worker", "worker %s started with %d slots", w->name, cfg->slots);
    *out = w;
    return 0;

fail:
    for (int i = 0; i < RUNTIME_COUNT; i++)
        runtime_free(&w->runtimes[i]);
    free(w->slots);
    free(w->name);
    free(w->host);
    free(w->work_dir);
    free(w->envs_dir);
    free(w->runtime_list);
    free(w->run_home);
    for (size_t i = 0; i < w->nlinked; i++)
        free(w->linked[i]);
    free(w->linked);
    free(w);
    return rc;
}

static int wait_idle(struct worker *w, int64_t ms)
{
    int64_t until = clock_mono_ns() / 1000000 + ms;

    while (atomic_load(&w->busy) > 0 && clock_mono_ns() / 1000000 < until) {
        struct timespec pause = {0, 20 * 1000000};

        nanosleep(&pause, NULL);
    }
    return atomic_load(&w->busy) == 0;
}

void worker_stop(struct worker *w)
{
    struct store *st = NULL;

    if (!w)
        return;
    atomic_store(&w->stopping, 1);
    pthread_mutex_lock(&w->mu);
    pthread_cond_broadcast(&w->cond);
    pthread_mutex_unlock(&w->mu);
    if (store_open(w->cfg->db_url, &st) == 0) {
        store_notify(st, STORE_CH_QUEUE);
        store_notify(st, STORE_CH_JOBS);
        store_notify(st, STORE_CH_CANCEL);
    }

    if (atomic_load(&w->busy) > 0) {
        log_info("worker", "waiting up to %lld ms for %d running executions",
                 (long long)w->cfg->stop_grace_ms, atomic_load(&w->busy));
        if (!wait_idle(w, w->cfg->stop_grace_ms)) {
            for (int i = 0; i < w->cfg->slots; i++) {
                if (atomic_load(&w->slots[i].running)) {
                    atomic_store(&w->slots[i].abandon, 1);
                    signal_slot(&w->slots[i]);
                }
            }
        }
    }

    for (int i = 0; i < w->cfg->slots; i++) {
        pthread_join(w->slots[i].thread, NULL);
        close(w->slots[i].cancel_fd);
    }
    pthread_join(w->heartbeat_thread, NULL);
    pthread_join(w->cancel_thread, NULL);
    pthread_join(w->setup_thread, NULL);
    if (st) {
        store_worker_stop(st, w->name);
        store_close(st);
    }
    log_info("worker", "worker %s stopped", w->name);

    for (int i = 0; i < RUNTIME_COUNT; i++)
        runtime_free(&w->runtimes[i]);
    free(w->slots);
    free(w->name);
    free(w->host);
    free(w->work_dir);
    free(w->envs_dir);
    free(w->runtime_list);
    free(w->run_home);
    for (size_t i = 0; i < w->nlinked; i++)
        free(w->linked[i]);
    free(w->linked);
    pthread_mutex_destroy(&w->mu);
    pthread_cond_destroy(&w->cond);
    free(w);
}

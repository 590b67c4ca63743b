#include "api/api.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <microhttpd.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api/auth.h"
#include "api/metrics.h"
#include "api/openapi.h"
#include "pack/bundle.h"
#include "pack/pack.h"
#include "pack/params.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/log.h"

#define API_MAX_SEGMENTS  8
#define API_MAX_WAIT_S    300
#define API_MAX_TIMEOUT_S (7 * 86400)

struct api {
    const struct config *cfg;
    struct MHD_Daemon *mhd;
    struct store_pool *pool;
    struct auth *auth;
};

struct route;

/* What the dispatcher keeps for one request while its body arrives. The
 * route is found and the caller authorised as soon as the headers are
 * in, so that a refused request never has its body read. */
struct request {
    struct buf body;
    int too_big;
    const struct route *route; /* NULL: no route has this method and path */
    int path_ok;               /* some route has this path, with another method */
    int refused;               /* auth's error code, or 0 */
    int retry_after_s;         /* with ERR_LIMITED */
    int answered;              /* a reply is queued: ignore the rest */
    struct auth_caller who;
};

/* What a handler sees. */
struct call {
    struct api *api;
    struct MHD_Connection *conn;
    const char *method;
    const char *body;
    size_t body_len;
    struct store *st;
    const struct auth_caller *who; /* the token that made the request */
    char *seg[API_MAX_SEGMENTS];
    int nseg;
    json_t *problems;              /* attached to an error reply */
    struct MHD_Response *response; /* set by handlers that stream */
};

/* A handler returns an HTTP status and sets *reply, or returns a
 * negative ERR_* with the message set. */
typedef int (*handler_fn)(struct call *c, json_t **reply);

/* --- helpers ------------------------------------------------------------ */

static const char *query(struct call *c, const char *name)
{
    return MHD_lookup_connection_value(c->conn, MHD_GET_ARGUMENT_KIND, name);
}

static int parse_body(struct call *c, json_t **out)
{
    json_error_t jerr;

    if (c->body_len == 0)
        return err_set(ERR_INVALID, "request body: expected a JSON object");
    *out = json_loadb(c->body, c->body_len, 0, &jerr);
    if (!*out && strstr(jerr.text, "NUL"))
        return err_set(ERR_INVALID,
                       "request body: line %d, column %d: a string holds a NUL "
                       "character (\\u0000), which packrun does not accept",
                       jerr.line, jerr.column);
    if (!*out)
        return err_set(ERR_INVALID, "request body: malformed JSON at line %d, column %d: %s",
                       jerr.line, jerr.column, jerr.text);
    if (!json_is_object(*out)) {
        json_decref(*out);
        return err_set(ERR_INVALID, "request body: expected a JSON object");
    }
    return 0;
}

static int parse_id(const char *text, int64_t *id)
{
    char *end;

    errno = 0;
    *id = strtoll(text, &end, 10);
    if (errno || *end || end == text || *id <= 0)
        return err_set(ERR_NOTFOUND, "execution '%s' not found", text);
    return 0;
}

static int parse_int_arg(struct call *c, const char *name, long min, long max, long *out)
{
    const char *text = query(c, name);
    char *end;
    long v;

    if (!text)
        return 0;
    errno = 0;
    v = strtol(text, &end, 10);
    if (errno || *end || end == text || v < min || v > max)
        return err_set(ERR_INVALID, "query parameter '%s': expected an integer from %ld to %ld",
                       name, min, max);
    *out = v;
    return 1;
}

/* --- packs ------------------------------------------------------------ */

int api_register_pack(const struct config *cfg, struct store *st, const char *dir, json_t **pack,
                      json_t **problems)
{
    char *packs_root = xasprintf("%s/packs", cfg->data_dir);
    char *release = NULL;
    json_t *loaded = NULL;
    int rc;

    *pack = NULL;
    *problems = NULL;
    rc = pack_load(dir, &loaded, problems);
    if (rc < 0)
        goto out;
    rc = fs_mkdirs(packs_root, 0755);
    if (rc == 0)
        rc = pack_install(dir, loaded, packs_root, &release);
    if (rc == 0)
        rc = store_pack_put(st, loaded, release);
    if (rc == 0)
        rc = store_pack_get(st, json_string_value(json_object_get(loaded, "ref")), pack);
    if (rc == 0 && json_object_size(json_object_get(loaded, "manifests")) > 0)
        json_object_set_new(*pack, "environment", json_string("pending"));

out:
    json_decref(loaded);
    free(release);
    free(packs_root);
    return rc;
}

static int h_pack_register(struct call *c, json_t **reply)
{
    json_t *body = NULL;
    const char *path;
    int rc;

    rc = parse_body(c, &body);
    if (rc < 0)
        return rc;
    path = json_string_value(json_object_get(body, "path"));
    if (!path || path[0] != '/') {
        json_decref(body);
        return err_set(ERR_INVALID, "field 'path': expected an absolute path to a pack folder");
    }
    rc = api_register_pack(c->api->cfg, c->st, path, reply, &c->problems);
    if (rc == 0)
        log_info("api", "pack %s %s registered from %s (token '%s')",
                 json_string_value(json_object_get(*reply, "ref")),
                 json_string_value(json_object_get(*reply, "version")), path, c->who->name);
    json_decref(body);
    return rc < 0 ? rc : 201;
}

/* POST /api/v1/packs: a .tar.gz body, unpacked into a scratch folder and
 * registered from there like a folder. */
static int h_pack_upload(struct call *c, json_t **reply)
{
    char *scratch = xasprintf("%s/uploads/pack-XXXXXX", c->api->cfg->data_dir);
    char *parent = xasprintf("%s/uploads", c->api->cfg->data_dir);
    int rc;

    rc = fs_mkdirs(parent, 0700);
    if (rc == 0 && !mkdtemp(scratch))
        rc = err_errno(ERR_FAIL, "mkdtemp %s", scratch);
    if (rc < 0)
        goto out;
    rc = bundle_extract(c->body, c->body_len, scratch);
    if (rc == 0)
        rc = api_register_pack(c->api->cfg, c->st, scratch, reply, &c->problems);
    if (rc == 0)
        log_info("api", "pack %s %s installed from an upload of %zu bytes (token '%s')",
                 json_string_value(json_object_get(*reply, "ref")),
                 json_string_value(json_object_get(*reply, "version")), c->body_len, c->who->name);
    (void)fs_rmtree(scratch);

out:
    free(scratch);
    free(parent);
    return rc < 0 ? rc : 201;
}

static int h_pack_list(struct call *c, json_t **reply)
{
    json_t *list = NULL;
    int rc = store_pack_list(c->st, &list);

    if (rc < 0)
        return rc;
    *reply = json_pack("{s:o}", "packs", list);
    return 200;
}

static int h_pack_get(struct call *c, json_t **reply)
{
    int rc = store_pack_get(c->st, c->seg[3], reply);

    return rc < 0 ? rc : 200;
}

static int h_pack_delete(struct call *c, json_t **reply)
{
    int rc = store_pack_delete(c->st, c->seg[3]);

    if (rc < 0)
        return rc;
    log_info("api", "pack %s removed (token '%s')", c->seg[3], c->who->name);
    *reply = json_pack("{s:s}", "deleted", c->seg[3]);
    return 200;
}

/* --- actions ---------------------------------------------------------- */

static void action_public(json_t *action)
{
    json_object_del(action, "pack_dir");
    json_object_del(action, "pack_digest");
    json_object_del(action, "pack_manifests");
}

static int h_action_list(struct call *c, json_t **reply)
{
    json_t *list = NULL;
    int rc = store_action_list(c->st, query(c, "pack"), &list);

    if (rc < 0)
        return rc;
    *reply = json_pack("{s:o}", "actions", list);
    return 200;
}

static int h_action_get(struct call *c, json_t **reply)
{
    int rc = store_action_get(c->st, c->seg[3], reply);

    if (rc < 0)
        return rc;
    action_public(*reply);
    return 200;
}

/* --- executions ------------------------------------------------------- */

static int submit_timeout(json_t *body, const json_t *action, int64_t dflt, int64_t *out)
{
    json_t *t = json_object_get(body, "timeout_seconds");

    if (t && !json_is_null(t)) {
        if (!json_is_integer(t) || json_integer_value(t) < 1 ||
            json_integer_value(t) > API_MAX_TIMEOUT_S)
            return err_set(ERR_INVALID,
                           "field 'timeout_seconds': expected an integer from 1 "
                           "to %d",
                           API_MAX_TIMEOUT_S);
        *out = json_integer_value(t);
        return 0;
    }
    t = json_object_get(action, "timeout_seconds");
    *out = json_is_integer(t) && json_integer_value(t) > 0 ? json_integer_value(t) : dflt;
    return 0;
}

/* Whether a worker must prepare an environment before running action:
 * a python or node action whose pack declares a manifest for it. */
static int needs_env(const json_t *action)
{
    const char *type = json_string_value(json_object_get(action, "runner_type"));

    return type && (strcmp(type, "python") == 0 || strcmp(type, "node") == 0) &&
           json_object_get(json_object_get(action, "pack_manifests"), type);
}

static int h_execution_create(struct call *c, json_t **reply)
{
    json_t *body = NULL, *action = NULL, *params = NULL, *shown = NULL, *req = NULL;
    const char *ref;
    int64_t timeout = 0, id = 0;
    int rc;

    rc = parse_body(c, &body);
    if (rc < 0)
        return rc;
    ref = json_string_value(json_object_get(body, "action"));
    if (!ref) {
        rc = err_set(ERR_INVALID, "field 'action': required, a string such as 'pack.name'");
        goto out;
    }
    rc = store_action_get(c->st, ref, &action);
    if (rc < 0)
        goto out;
    if (json_is_false(json_object_get(action, "enabled"))) {
        rc = err_set(ERR_CONFLICT, "action '%s' is disabled", ref);
        goto out;
    }
    rc = params_check(json_object_get(action, "parameters"), json_object_get(body, "parameters"),
                      &params);
    if (rc == 0)
        rc = submit_timeout(body, action, c->api->cfg->default_timeout_seconds, &timeout);
    if (rc < 0)
        goto out;

    shown = params_redact(json_object_get(action, "parameters"), params);
    req = json_pack("{s:s, s:O, s:O, s:{s:O, s:O, s:O, s:O, s:O}, s:I}", "action", ref, "pack",
                    json_object_get(action, "pack"), "parameters", shown, "spec", "action", action,
                    "pack_dir", json_object_get(action, "pack_dir"), "pack_digest",
                    json_object_get(action, "pack_digest"), "manifests",
                    json_object_get(action, "pack_manifests"), "parameters", params,
                    "timeout_seconds", (json_int_t)timeout);
    json_object_set_new(req, "needs_env", json_boolean(needs_env(action)));
    rc = store_execution_create(c->st, req, reply);
    id = rc == 0 ? json_integer_value(json_object_get(*reply, "id")) : 0;
    if (rc == 0)
        log_debug("api", "execution %lld: %s requested", (long long)id, ref);

out:
    json_decref(body);
    json_decref(action);
    json_decref(params);
    json_decref(shown);
    json_decref(req);
    return rc < 0 ? rc : 201;
}

static int h_execution_list(struct call *c, json_t **reply)
{
    struct store_filter f = {
        .status = query(c, "status"), .action = query(c, "action"), .pack = query(c, "pack")};
    long limit = 100, before = 0;
    json_t *list = NULL;
    int rc;

    if (f.status && store_status_parse(f.status) < 0)
        return err_set(ERR_INVALID, "query parameter 'status': '%s' is not a status", f.status);
    rc = parse_int_arg(c, "limit", 1, 1000, &limit);
    if (rc >= 0)
        rc = parse_int_arg(c, "before", 1, 0x7fffffffffffffffL, &before);
    if (rc < 0)
        return rc;
    f.limit = (int)limit;
    f.before_id = before;
    rc = store_execution_list(c->st, &f, &list);
    if (rc < 0)
        return rc;
    *reply = json_pack("{s:o}", "executions", list);
    return 200;
}

/* Read one object; *done says whether it has ended. */
typedef int (*fetch_fn)(struct store *st, int64_t id, json_t **out, int *done);

static int fetch_execution(struct store *st, int64_t id, json_t **out, int *done)
{
    int rc = store_execution_get(st, id, out);

    if (rc == 0)
        *done = store_status_terminal(
            store_status_parse(json_string_value(json_object_get(*out, "status"))));
    return rc;
}

static int fetch_job(struct store *st, int64_t id, json_t **out, int *done)
{
    int rc = store_job_get(st, id, out);
    const char *status = rc == 0 ? json_string_value(json_object_get(*out, "status")) : NULL;

    if (rc == 0)
        *done = strcmp(status, "requested") != 0 && strcmp(status, "running") != 0;
    return rc;
}

/* GET .../{id}[?wait=S]: the object, as soon as it has ended or S seconds
 * have passed; woken by the store's events, not by polling. */
static int get_waiting(struct call *c, fetch_fn fetch, json_t **reply)
{
    long wait_s = 0;
    int64_t id, deadline;
    uint64_t seen;
    int rc;

    rc = parse_id(c->seg[3], &id);
    if (rc == 0)
        rc = parse_int_arg(c, "wait", 0, API_MAX_WAIT_S, &wait_s);
    if (rc < 0)
        return rc;

    seen = store_seen(c->st, STORE_CH_FINISHED);
    deadline = clock_mono_ns() / 1000000 + wait_s * 1000;
    for (;;) {
        int64_t left;
        int done = 0;

        rc = fetch(c->st, id, reply, &done);
        if (rc < 0)
            return rc;
        left = deadline - clock_mono_ns() / 1000000;
        if (done || left <= 0)
            return 200;
        json_decref(*reply);
        *reply = NULL;
        store_wait(c->st, STORE_CH_FINISHED, &seen, (int)(left < 1000 ? left : 1000));
    }
}

static int h_execution_get(struct call *c, json_t **reply)
{
    return get_waiting(c, fetch_execution, reply);
}

static int h_execution_cancel(struct call *c, json_t **reply)
{
    int64_t id;
    int rc;

    rc = parse_id(c->seg[3], &id);
    if (rc < 0)
        return rc;
    rc = store_execution_cancel(c->st, id);
    if (rc < 0)
        return rc;
    log_info("api", "execution %lld: cancel requested (%s) (token '%s')", (long long)id,
             store_status_name(rc), c->who->name);
    rc = store_execution_get(c->st, id, reply);
    return rc < 0 ? rc : 200;
}

/* --- logs ------------------------------------------------------------- */

struct log_stream {
    struct api *api;
    struct store *st;
    int64_t id;
    const char *stream;
    int seq;
    int follow;
    int ended;
    struct buf pending;
    size_t off;
    uint64_t seen;
};

static ssize_t log_reader(void *cls, uint64_t pos, char *out, size_t max)
{
    struct log_stream *ls = cls;

    (void)pos;
    while (ls->off >= ls->pending.len) {
        int status;

        buf_reset(&ls->pending);
        ls->off = 0;
        if (ls->ended)
            return MHD_CONTENT_READER_END_OF_STREAM;
        /* Read the status first: chunks stored before a terminal status
         * are all visible once it is. */
        status = store_execution_status(ls->st, ls->id);
        if (store_log_read(ls->st, ls->id, ls->stream, &ls->seq, &ls->pending) < 0 || status < 0)
            return MHD_CONTENT_READER_END_WITH_ERROR;
        if (ls->pending.len > 0)
            break;
        if (!ls->follow || store_status_terminal(status))
            ls->ended = 1;
        else
            store_wait(ls->st, STORE_CH_LOG, &ls->seen, 1000);
    }
    if (max > ls->pending.len - ls->off)
        max = ls->pending.len - ls->off;
    memcpy(out, ls->pending.data + ls->off, max);
    ls->off += max;
    return (ssize_t)max;
}

static void log_stream_free(void *cls)
{
    struct log_stream *ls = cls;

    store_close(ls->st);
    buf_free(&ls->pending);
    free(ls);
}

static int h_execution_logs(struct call *c, json_t **reply)
{
    struct log_stream *ls;
    const char *follow = query(c, "follow");
    int64_t id;
    int rc;

    rc = parse_id(c->seg[3], &id);
    if (rc < 0)
        return rc;
    if (strcmp(c->seg[5], "stdout") != 0 && strcmp(c->seg[5], "stderr") != 0)
        return err_set(ERR_NOTFOUND, "no log stream '%s' (stdout or stderr)", c->seg[5]);
    rc = store_execution_status(c->st, id);
    if (rc < 0)
        return rc;

    ls = xcalloc(1, sizeof(*ls));
    ls->api = c->api;
    ls->id = id;
    ls->stream = strcmp(c->seg[5], "stdout") == 0 ? "stdout" : "stderr";
    ls->follow = follow && strcmp(follow, "0") != 0 && strcmp(follow, "false") != 0;
    ls->seen = store_seen(c->st, STORE_CH_LOG);
    rc = store_open(c->api->cfg->db_url, &ls->st);
    if (rc < 0) {
        free(ls);
        return rc;
    }
    c->response = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 64 * 1024, log_reader, ls,
                                                    log_stream_free);
    MHD_add_response_header(c->response, "Content-Type", "text/plain; charset=utf-8");
    (void)reply;
    return 200;
}

/* --- environments and jobs ------------------------------------------ */

static int h_env_list(struct call *c, json_t **reply)
{
    json_t *list = NULL;
    int rc = store_env_list(c->st, &list);

    if (rc < 0)
        return rc;
    *reply = json_pack("{s:o}", "environments", list);
    return 200;
}

static int h_env_get(struct call *c, json_t **reply)
{
    json_t *rows = NULL;
    int rc = store_env_get(c->st, c->seg[3], &rows);

    if (rc < 0)
        return rc;
    *reply = json_pack("{s:O, s:o}", "key", json_object_get(json_array_get(rows, 0), "key"),
                       "environments", rows);
    return 200;
}

/* Queue a rebuild of each environment of one pack; adds job ids to jobs. */
static int rebuild_pack(struct call *c, const char *ref, json_t *jobs)
{
    json_t *pack = NULL;
    const char *runtime;
    json_t *file;
    int rc;

    rc = store_pack_get(c->st, ref, &pack);
    if (rc < 0)
        return rc;
    json_object_foreach (json_object_get(pack, "manifests"), runtime, file) {
        int64_t id;

        rc = store_job_create(c->st, "rebuild", ref, runtime, NULL, &id);
        if (rc < 0)
            break;
        json_array_append_new(jobs, json_integer(id));
    }
    json_decref(pack);
    return rc;
}

/* Queue rebuilds for every pack using the environments in rows. */
static int rebuild_packs_of(struct call *c, const json_t *rows, json_t *jobs)
{
    const json_t *row, *ref;
    size_t i, j;
    int rc = 0;

    json_array_foreach (rows, i, row) {
        json_array_foreach (json_object_get(row, "packs"), j, ref) {
            rc = rebuild_pack(c, json_string_value(ref), jobs);
            if (rc < 0)
                return rc;
        }
    }
    return rc;
}

/* POST /api/v1/environments/{key or pack}/rebuild */
static int h_env_rebuild(struct call *c, json_t **reply)
{
    json_t *jobs = json_array(), *rows = NULL;
    int rc;

    rc = store_env_get(c->st, c->seg[3], &rows);
    if (rc == ERR_NOTFOUND || rc == ERR_INVALID) {
        rc = rebuild_pack(c, c->seg[3], jobs);
        if (rc == ERR_NOTFOUND)
            rc = err_set(ERR_NOTFOUND, "no pack or environment '%s'", c->seg[3]);
    } else if (rc == 0) {
        rc = rebuild_packs_of(c, rows, jobs);
    }
    json_decref(rows);
    if (rc == 0 && json_array_size(jobs) == 0)
        rc = err_set(ERR_CONFLICT, "'%s' has no environment to rebuild", c->seg[3]);
    if (rc < 0) {
        json_decref(jobs);
        return rc;
    }
    log_info("api", "environment rebuild of %s queued (token '%s')", c->seg[3], c->who->name);
    *reply = json_pack("{s:o}", "jobs", jobs);
    return 202;
}

/* POST /api/v1/environments/gc: one gc job for each live worker. */
static int h_env_gc(struct call *c, json_t **reply)
{
    json_t *workers = NULL, *w, *jobs = json_array();
    size_t i;
    int rc;

    rc = store_worker_list(c->st, &workers);
    json_array_foreach (workers, i, w) {
        int64_t id;

        if (rc < 0 || strcmp(json_string_value(json_object_get(w, "status")), "running") != 0)
            continue;
        rc = store_job_create(c->st, "gc", NULL, NULL,
                              json_string_value(json_object_get(w, "name")), &id);
        if (rc == 0)
            json_array_append_new(jobs, json_integer(id));
    }
    json_decref(workers);
    if (rc < 0) {
        json_decref(jobs);
        return rc;
    }
    *reply = json_pack("{s:o}", "jobs", jobs);
    return 202;
}

static int h_job_get(struct call *c, json_t **reply)
{
    return get_waiting(c, fetch_job, reply);
}

/* --- metrics and the API's own description --------------------------- */

static int h_metrics(struct call *c, json_t **reply)
{
    struct buf text = BUF_INIT;
    json_t *m = NULL;
    size_t len;
    int rc;

    (void)reply;
    rc = store_metrics(c->st, &m);
    if (rc < 0)
        return rc;
    metrics_render(m, &text);
    json_decref(m);
    len = text.len;
    c->response = MHD_create_response_from_buffer(len, buf_detach(&text), MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(c->response, "Content-Type", "text/plain; version=0.0.4");
    return 200;
}

static int h_openapi(struct call *c, json_t **reply);

/* --- workers and health ---------------------------------------------- */

static int h_worker_list(struct call *c, json_t **reply)
{
    json_t *list = NULL;
    int rc = store_worker_list(c->st, &list);

    if (rc < 0)
        return rc;
    *reply = json_pack("{s:o}", "workers", list);
    return 200;
}

static int h_health(struct call *c, json_t **reply)
{
    int ok = store_ping(c->st);

    *reply = json_pack("{s:s, s:s}", "status", ok ? "ok" : "degraded", "database",
                       ok ? "ok" : err_msg());
    return ok ? 200 : 503;
}

/* --- dispatch ---------------------------------------------------------- */

/* Route flags. */
#define ROUTE_METRICS 1 /* public when the config's metrics_public is set */

struct route {
    const char *method;
    const char *pattern; /* segments; "{name}" matches any one */
    handler_fn fn;
    enum auth_role need; /* the least role a token needs; AUTH_PUBLIC: none */
    unsigned flags;
    const char *summary; /* for the OpenAPI document */
};

/* Viewers read; operators also run and cancel; admins also manage packs,
 * environments and tokens. A request that matches no route needs a
 * viewer's token before it learns that (404). */
static const struct route routes[] = {
    {"GET", "health", h_health, AUTH_PUBLIC, 0, "Liveness and database reachability"},
    {"GET", "metrics", h_metrics, AUTH_VIEWER, ROUTE_METRICS, "Prometheus metrics"},
    {"GET", "api/v1/openapi.json", h_openapi, AUTH_VIEWER, 0, "This API as OpenAPI 3"},
    {"POST", "api/v1/packs", h_pack_upload, AUTH_ADMIN, 0,
     "Install a pack from a .tar.gz body (application/gzip)"},
    {"POST", "api/v1/packs/register", h_pack_register, AUTH_ADMIN, 0,
     "Install a pack from a folder the server can read: {path}"},
    {"GET", "api/v1/packs", h_pack_list, AUTH_VIEWER, 0, "List the packs"},
    {"GET", "api/v1/packs/{ref}", h_pack_get, AUTH_VIEWER, 0, "One pack"},
    {"DELETE", "api/v1/packs/{ref}", h_pack_delete, AUTH_ADMIN, 0, "Remove a pack"},
    {"GET", "api/v1/actions", h_action_list, AUTH_VIEWER, 0, "List the actions (?pack=)"},
    {"GET", "api/v1/actions/{ref}", h_action_get, AUTH_VIEWER, 0, "One action"},
    {"POST", "api/v1/executions", h_execution_create, AUTH_OPERATOR, 0,
     "Run an action: {action, parameters, timeout_seconds}"},
    {"GET", "api/v1/executions", h_execution_list, AUTH_VIEWER, 0,
     "List executions, newest first (?status=&action=&pack=&limit=&before=)"},
    {"GET", "api/v1/executions/{id}", h_execution_get, AUTH_VIEWER, 0,
     "One execution (?wait=S waits for it to end)"},
    {"POST", "api/v1/executions/{id}/cancel", h_execution_cancel, AUTH_OPERATOR, 0,
     "Cancel an execution"},
    {"GET", "api/v1/executions/{id}/logs/{stream}", h_execution_logs, AUTH_VIEWER, 0,
     "stdout or stderr as text (?follow=1 streams until the end)"},
    {"GET", "api/v1/workers", h_worker_list, AUTH_VIEWER, 0, "List the workers"},
    {"GET", "api/v1/environments", h_env_list, AUTH_VIEWER, 0, "List the environments"},
    {"POST", "api/v1/environments/gc", h_env_gc, AUTH_ADMIN, 0,
     "Remove unused environments on every live worker"},
    {"GET", "api/v1/environments/{key}", h_env_get, AUTH_VIEWER, 0,
     "One environment with its build log"},
    {"POST", "api/v1/environments/{key}/rebuild", h_env_rebuild, AUTH_ADMIN, 0,
     "Rebuild an environment, or a pack's (give its ref)"},
    {"GET", "api/v1/jobs/{id}", h_job_get, AUTH_VIEWER, 0,
     "One environment job (?wait=S waits for it to end)"},
};

#define NROUTES (sizeof(routes) / sizeof(routes[0]))

/* The least role a request for r needs (r NULL: no route). */
static enum auth_role route_need(const struct api *api, const struct route *r)
{
    if (!r)
        return AUTH_VIEWER;
    if ((r->flags & ROUTE_METRICS) && api->cfg->metrics_public)
        return AUTH_PUBLIC;
    return r->need;
}

static int h_openapi(struct call *c, json_t **reply)
{
    struct openapi_route list[NROUTES];

    (void)c;
    for (size_t i = 0; i < NROUTES; i++) {
        const struct route *r = &routes[i];
        enum auth_role need = route_need(c->api, r);

        list[i] = (struct openapi_route){r->method, NULL, r->summary,
                                         need == AUTH_PUBLIC ? NULL : auth_role_name(need)};
        list[i].path = xasprintf("/%s", r->pattern);
    }
    *reply = openapi_document(list, NROUTES, PACKRUN_VERSION);
    for (size_t i = 0; i < NROUTES; i++)
        free((char *)list[i].path);
    return 200;
}

static int split_path(char *path, char **seg)
{
    char *save = NULL;
    int n = 0;

    for (char *s = strtok_r(path, "/", &save); s; s = strtok_r(NULL, "/", &save)) {
        if (n == API_MAX_SEGMENTS)
            return -1;
        seg[n++] = s;
    }
    return n;
}

static int route_matches(const struct route *r, char **seg, int nseg, const char *method,
                         int *path_ok)
{
    const char *p = r->pattern;
    int i;

    /* Walk the pattern's segments in place: this runs for every route on
     * every request. */
    for (i = 0; *p && i < nseg; i++) {
        size_t len = strcspn(p, "/");

        if (*p != '{' && (strlen(seg[i]) != len || strncmp(p, seg[i], len) != 0))
            return 0;
        p += len;
        if (*p == '/')
            p++;
    }
    if (*p || i != nseg)
        return 0;
    *path_ok = 1;
    return strcmp(r->method, method) == 0;
}

/* The route for method and url, or NULL; *path_ok as route_matches(). */
static const struct route *find_route(const char *url, const char *method, int *path_ok)
{
    char *path = xstrdup(url);
    char *seg[API_MAX_SEGMENTS];
    const struct route *found = NULL;
    int nseg = split_path(path, seg);

    *path_ok = 0;
    for (size_t i = 0; nseg >= 0 && i < NROUTES && !found; i++) {
        if (route_matches(&routes[i], seg, nseg, method, path_ok))
            found = &routes[i];
    }
    free(path);
    return found;
}

static const char *error_code(int rc, unsigned *status)
{
    switch (rc) {
    case ERR_INVALID:
        *status = MHD_HTTP_BAD_REQUEST;
        return "invalid";
    case ERR_NOTFOUND:
        *status = MHD_HTTP_NOT_FOUND;
        return "not_found";
    case ERR_CONFLICT:
        *status = MHD_HTTP_CONFLICT;
        return "conflict";
    case ERR_TOOBIG:
        *status = MHD_HTTP_CONTENT_TOO_LARGE;
        return "too_large";
    case ERR_FORBIDDEN:
        *status = MHD_HTTP_FORBIDDEN;
        return "forbidden";
    case ERR_UNAUTH:
        *status = MHD_HTTP_UNAUTHORIZED;
        return "unauthorized";
    case ERR_LIMITED:
        *status = MHD_HTTP_TOO_MANY_REQUESTS;
        return "rate_limited";
    default:
        *status = MHD_HTTP_INTERNAL_SERVER_ERROR;
        return "internal";
    }
}

static struct MHD_Response *json_response(json_t *body)
{
    char *text = json_dumps(body, JSON_COMPACT);
    size_t len = strlen(text);
    struct MHD_Response *resp;

    text = xrealloc(text, len + 2);
    text[len++] = '\n';
    resp = MHD_create_response_from_buffer(len, text, MHD_RESPMEM_MUST_FREE);
    MHD_add_response_header(resp, "Content-Type", "application/json");
    return resp;
}

static enum MHD_Result send_json(struct MHD_Connection *conn, unsigned status, json_t *body)
{
    struct MHD_Response *resp = json_response(body);
    enum MHD_Result ret = MHD_queue_response(conn, status, resp);

    MHD_destroy_response(resp);
    return ret;
}

/* The error reply for rc and the current message; retry_after_s goes
 * with ERR_LIMITED. */
static enum MHD_Result send_error(struct MHD_Connection *conn, int rc, json_t *problems,
                                  int retry_after_s)
{
    unsigned status;
    const char *code = error_code(rc, &status);
    json_t *err = json_pack("{s:s, s:s}", "code", code, "message", err_msg());
    struct MHD_Response *resp;
    json_t *body;
    enum MHD_Result ret;

    if (!err)
        err = json_pack("{s:s, s:s}", "code", code, "message", "(message is not valid UTF-8)");
    if (problems)
        json_object_set(err, "problems", problems);
    body = json_pack("{s:o}", "error", err);
    resp = json_response(body);
    if (rc == ERR_UNAUTH)
        MHD_add_response_header(resp, MHD_HTTP_HEADER_WWW_AUTHENTICATE, "Bearer realm=\"packrun\"");
    if (rc == ERR_LIMITED) {
        char secs[16];

        snprintf(secs, sizeof(secs), "%d", retry_after_s);
        MHD_add_response_header(resp, MHD_HTTP_HEADER_RETRY_AFTER, secs);
    }
    ret = MHD_queue_response(conn, status, resp);
    MHD_destroy_response(resp);
    json_decref(body);
    return ret;
}

/* The client's address as text, for limits and logs.
 * TODO(auth): behind a reverse proxy every client has the proxy's
 * address; trust X-Forwarded-For from a configured proxy address. */
static void client_address(struct MHD_Connection *conn, char *out, size_t cap)
{
    const union MHD_ConnectionInfo *info =
        MHD_get_connection_info(conn, MHD_CONNECTION_INFO_CLIENT_ADDRESS);
    const struct sockaddr *sa = info ? info->client_addr : NULL;

    snprintf(out, cap, "unknown");
    if (sa && sa->sa_family == AF_INET)
        inet_ntop(AF_INET, &((const struct sockaddr_in *)sa)->sin_addr, out, (socklen_t)cap);
    else if (sa && sa->sa_family == AF_INET6)
        inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)sa)->sin6_addr, out, (socklen_t)cap);
}

/* Find the route and check the caller's token, from the headers alone.
 * A refusal is kept in req for dispatch() to send. */
static void authorize(struct api *api, struct MHD_Connection *conn, const char *url,
                      const char *method, struct request *req)
{
    char client[INET6_ADDRSTRLEN + 1];
    struct auth_request ar = {.client = client, .method = method, .path = url};
    struct store *st = NULL;
    int rc;

    req->route = find_route(url, method, &req->path_ok);
    ar.need = route_need(api, req->route);
    if (ar.need == AUTH_PUBLIC)
        return;
    client_address(conn, client, sizeof(client));
    ar.authorization = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Authorization");
    rc = store_pool_get(api->pool, &st);
    if (rc == 0)
        rc = auth_check(api->auth, st, &ar, &req->who, &req->retry_after_s);
    store_pool_put(api->pool, st);
    if (rc < 0)
        req->refused = rc;
}

static enum MHD_Result dispatch(struct api *api, struct MHD_Connection *conn, const char *url,
                                const char *method, struct request *req)
{
    struct call c = {.api = api,
                     .conn = conn,
                     .method = method,
                     .who = &req->who,
                     .body = req->body.data,
                     .body_len = req->body.len};
    char *path = xstrdup(url);
    const struct route *found = req->route;
    json_t *reply = NULL;
    int rc;
    enum MHD_Result ret;

    c.nseg = split_path(path, c.seg);
    req->answered = 1;
    if (req->too_big) {
        rc = err_set(ERR_TOOBIG, "request body: larger than the limit of %lld bytes",
                     (long long)api->cfg->max_body_bytes);
    } else if (req->refused) {
        rc = req->refused; /* authorize() has just set the message */
    } else if (!found) {
        rc = req->path_ok ? err_set(ERR_NOTFOUND, "%s is not allowed on %s", method, url)
                          : err_set(ERR_NOTFOUND, "no route %s %s", method, url);
    } else {
        rc = store_pool_get(api->pool, &c.st);
        if (rc == 0)
            rc = found->fn(&c, &reply);
        store_pool_put(api->pool, c.st);
    }

    if (c.response) {
        ret = MHD_queue_response(conn, (unsigned)rc, c.response);
        MHD_destroy_response(c.response);
    } else if (rc < 0) {
        if (rc == ERR_FAIL)
            log_error("api", "%s %s: %s", method, url, err_msg());
        ret = send_error(conn, rc, c.problems, req->retry_after_s);
    } else {
        ret = send_json(conn, (unsigned)rc, reply ? reply : json_object());
    }
    json_decref(reply);
    json_decref(c.problems);
    free(path);
    return ret;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url,
                                  const char *method, const char *version, const char *upload_data,
                                  size_t *upload_size, void **con_cls)
{
    struct api *api = cls;
    struct request *req = *con_cls;

    (void)version;
    if (!req) {
        const char *len = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");

        req = xcalloc(1, sizeof(*req));
        *con_cls = req;
        if (len && strtoll(len, NULL, 10) > api->cfg->max_body_bytes)
            req->too_big = 1;
        else
            authorize(api, conn, url, method, req);
        if (req->too_big || req->refused)
            return dispatch(api, conn, url, method, req);
        return MHD_YES;
    }
    if (req->answered) {
        *upload_size = 0;
        return MHD_YES;
    }
    if (*upload_size > 0) {
        if (!req->too_big && req->body.len + *upload_size > (size_t)api->cfg->max_body_bytes) {
            req->too_big = 1;
            buf_free(&req->body);
        }
        if (!req->too_big)
            buf_add(&req->body, upload_data, *upload_size);
        *upload_size = 0;
        return MHD_YES;
    }
    return dispatch(api, conn, url, method, req);
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls,
                         enum MHD_RequestTerminationCode toe)
{
    struct request *req = *con_cls;

    (void)cls;
    (void)conn;
    (void)toe;
    if (!req)
        return;
    buf_free(&req->body);
    free(req);
    *con_cls = NULL;
}

/* --- start and stop ---------------------------------------------------- */

static int parse_listen(const char *listen, struct sockaddr_in *addr)
{
    const char *colon = strrchr(listen, ':');
    char host[64];
    long port;
    char *end;

    if (!colon || (size_t)(colon - listen) >= sizeof(host))
        return err_set(ERR_INVALID, "listen '%s': expected HOST:PORT", listen);
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    port = strtol(colon + 1, &end, 10);
    if (*end || port < 0 || port > 65535)
        return err_set(ERR_INVALID, "listen '%s': bad port", listen);

    memset(addr, 0, sizeof(*addr));
    addr->sin_family = AF_INET;
    addr->sin_port = htons((uint16_t)port);
    if (strcmp(host, "localhost") == 0)
        strcpy(host, "127.0.0.1");
    if (inet_pton(AF_INET, host, &addr->sin_addr) != 1)
        return err_set(ERR_INVALID, "listen '%s': '%s' is not an IPv4 address", listen, host);
    return 0;
}

int api_start(const struct config *cfg, struct api **out)
{
    struct api *api = xcalloc(1, sizeof(*api));
    struct sockaddr_in addr;
    int rc;

    api->cfg = cfg;
    rc = parse_listen(cfg->listen, &addr);
    if (rc == 0)
        rc = auth_listen_check(cfg->listen, cfg->allow_insecure_listen);
    if (rc < 0)
        goto fail;
    api->auth = auth_new();
    rc = store_pool_new(cfg->db_url, &api->pool);
    if (rc < 0)
        goto fail;

    api->mhd = MHD_start_daemon(
        MHD_USE_THREAD_PER_CONNECTION | MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG,
        ntohs(addr.sin_port), NULL, NULL, on_request, api, MHD_OPTION_SOCK_ADDR, &addr,
        MHD_OPTION_NOTIFY_COMPLETED, on_completed, api, MHD_OPTION_CONNECTION_TIMEOUT,
        (unsigned)(API_MAX_WAIT_S + 60), MHD_OPTION_END);
    if (!api->mhd) {
        rc = err_set(ERR_FAIL, "listen on %s failed (is another server running there?)",
                     cfg->listen);
        goto fail;
    }
    if (!auth_listen_is_loopback(cfg->listen))
        log_warn("api",
                 "listening on http://%s without TLS (allow_insecure_listen): bearer "
                 "tokens must reach it through a TLS-terminating proxy",
                 cfg->listen);
    else
        log_info("api", "listening on http://%s", cfg->listen);
    *out = api;
    return 0;

fail:
    store_pool_free(api->pool);
    auth_free(api->auth);
    free(api);
    return rc;
}

void api_stop(struct api *api)
{
    if (!api)
        return;
    MHD_stop_daemon(api->mhd);
    store_pool_free(api->pool);
    auth_free(api->auth);
    free(api);
}

#include "util/config.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/yaml.h"

/* K_LIST: strings, kept one per line (a YAML list in the file, blank-
 * separated words in the environment). */
enum kind { K_STR, K_INT, K_SECONDS, K_BOOL, K_LIST };

struct key {
    const char *name; /* dotted path in the file */
    enum kind kind;
    size_t offset;
};

#define STR(n, f)                                                                                  \
    {                                                                                              \
        n, K_STR, offsetof(struct config, f)                                                       \
    }
#define INT(n, f)                                                                                  \
    {                                                                                              \
        n, K_INT, offsetof(struct config, f)                                                       \
    }
#define BOOL(n, f)                                                                                 \
    {                                                                                              \
        n, K_BOOL, offsetof(struct config, f)                                                      \
    }
#define SECS(n, f)                                                                                 \
    {                                                                                              \
        n, K_SECONDS, offsetof(struct config, f)                                                   \
    }
#define LIST(n, f)                                                                                 \
    {                                                                                              \
        n, K_LIST, offsetof(struct config, f)                                                      \
    }

static const struct key keys[] = {
    STR("data", data_dir),
    STR("db", db_url),
    STR("listen", listen),
    STR("api_url", api_url),
    STR("worker_name", worker_name),
    INT("slots", slots),
    INT("default_timeout_seconds", default_timeout_seconds),
    SECS("kill_grace_seconds", kill_grace_ms),
    SECS("stop_grace_seconds", stop_grace_ms),
    INT("output_cap_bytes", output_cap_bytes),
    INT("max_body_bytes", max_body_bytes),
    SECS("heartbeat_seconds", heartbeat_ms),
    SECS("worker_stale_seconds", worker_stale_ms),
    STR("runtimes.python.interpreter", interpreters[0]),
    STR("runtimes.node.interpreter", interpreters[1]),
    STR("runtimes.shell.interpreter", interpreters[2]),
    STR("environments.on_failure", env_on_failure),
    SECS("environments.build_timeout_seconds", env_build_timeout_ms),
    STR("environments.pip_index_url", pip_index_url),
    STR("environments.pip_find_links", pip_find_links),
    STR("environments.pip_no_index", pip_no_index),
    LIST("environments.pip_options", pip_options),
    LIST("environments.npm_options", npm_options),
    BOOL("metrics_public", metrics_public),
    BOOL("allow_insecure_listen", allow_insecure_listen),
    STR("run_as", run_as),
    INT("limits.open_files", limit_open_files),
    INT("limits.processes", limit_processes),
    INT("limits.address_space_bytes", limit_address_space),
    STR("log_level", log_level),
    STR("log_format", log_format),
};
#define NKEYS (sizeof(keys) / sizeof(keys[0]))

void config_set(char **field, const char *value)
{
    free(*field);
    *field = value ? xstrdup(value) : NULL;
}

static void defaults(struct config *cfg)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);

    memset(cfg, 0, sizeof(*cfg));
    cfg->data_dir = xstrdup("./.packrun");
    cfg->listen = xstrdup("127.0.0.1:8080");
    cfg->slots = cores > 0 ? (int)cores : 2;
    cfg->default_timeout_seconds = 600;
    cfg->kill_grace_ms = 5000;
    cfg->stop_grace_ms = 10000;
    cfg->output_cap_bytes = 10L * 1024 * 1024;
    cfg->max_body_bytes = 64L * 1024 * 1024;
    cfg->heartbeat_ms = 2000;
    cfg->worker_stale_ms = 15000;
    cfg->env_on_failure = xstrdup("fallback");
    cfg->env_build_timeout_ms = 1800 * 1000;
    cfg->run_as = xstrdup("packrun");
    cfg->limit_open_files = 1024;
    cfg->limit_processes = 4096;
    cfg->log_level = xstrdup("info");
    cfg->log_format = xstrdup("logfmt");
}

/* Set one key from text (a file scalar or an environment variable). */
static int set_key(struct config *cfg, const struct key *k, const char *text, const char *where)
{
    char *field = (char *)cfg + k->offset;
    char *end;
    double d;
    long long v;

    if (k->kind == K_STR) {
        config_set((char **)field, text);
        return 0;
    }
    if (k->kind == K_LIST) {
        struct buf lines = BUF_INIT;
        char *copy = xstrdup(text), *save = NULL;

        for (char *w = strtok_r(copy, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save))
            buf_addf(&lines, "%s%s", lines.len ? "\n" : "", w);
        free(copy);
        free(*(char **)field);
        *(char **)field = lines.len ? buf_detach(&lines) : NULL;
        buf_free(&lines);
        return 0;
    }
    if (k->kind == K_BOOL) {
        static const char *const yes[] = {"true", "yes", "on", "1"};
        static const char *const no[] = {"false", "no", "off", "0"};

        for (size_t i = 0; i < 4; i++) {
            if (strcasecmp(text, yes[i]) == 0 || strcasecmp(text, no[i]) == 0) {
                *(int *)field = strcasecmp(text, yes[i]) == 0;
                return 0;
            }
        }
        return err_set(ERR_INVALID, "%s: '%s' must be true or false", where, text);
    }
    errno = 0;
    if (k->kind == K_SECONDS) {
        d = strtod(text, &end);
        if (errno || *end || end == text || d < 0 || d > 86400 * 365)
            return err_set(ERR_INVALID, "%s: '%s' must be a number of seconds", where, text);
        *(int64_t *)field = (int64_t)(d * 1000);
        return 0;
    }
    v = strtoll(text, &end, 10);
    if (errno || *end || end == text || v < 0)
        return err_set(ERR_INVALID, "%s: '%s' must be a non-negative integer", where, text);
    if (k->offset == offsetof(struct config, slots)) {
        if (v < 1 || v > 1024)
            return err_set(ERR_INVALID, "%s: slots must be between 1 and 1024", where);
        cfg->slots = (int)v;
    } else {
        *(int64_t *)field = v;
    }
    return 0;
}

/* A list setting from the file: an array of one-line strings. */
static int set_list(struct config *cfg, const struct key *k, const json_t *v, const char *where)
{
    char **field = (char **)((char *)cfg + k->offset);
    struct buf lines = BUF_INIT;
    const json_t *item;
    size_t i;

    if (!json_is_array(v))
        return err_set(ERR_INVALID, "%s: expected a list of strings", where);
    json_array_foreach (v, i, item) {
        if (!json_is_string(item) || strchr(json_string_value(item), '\n')) {
            buf_free(&lines);
            return err_set(ERR_INVALID, "%s: item %zu: expected a one-line string", where, i + 1);
        }
        buf_addf(&lines, "%s%s", lines.len ? "\n" : "", json_string_value(item));
    }
    free(*field);
    *field = lines.len ? buf_detach(&lines) : NULL;
    buf_free(&lines);
    return 0;
}

static int load_object(struct config *cfg, const char *path, const char *prefix, json_t *obj)
{
    const char *name;
    json_t *v;

    json_object_foreach (obj, name, v) {
        char *full = prefix ? xasprintf("%s.%s", prefix, name) : xstrdup(name);
        const struct key *k = NULL;
        char *where, *text;
        int rc;

        if (json_is_object(v)) {
            rc = load_object(cfg, path, full, v);
            free(full);
            if (rc < 0)
                return rc;
            continue;
        }
        for (size_t i = 0; i < NKEYS; i++) {
            if (strcmp(keys[i].name, full) == 0)
                k = &keys[i];
        }
        where = xasprintf("%s: key '%s'", path, full);
        free(full);
        if (!k) {
            rc = err_set(ERR_INVALID, "%s: unknown setting", where);
            free(where);
            return rc;
        }
        if (k->kind == K_LIST) {
            rc = set_list(cfg, k, v, where);
            free(where);
            if (rc < 0)
                return rc;
            continue;
        }
        text = json_is_string(v) ? xstrdup(json_string_value(v))
                                 : json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
        rc = set_key(cfg, k, text, where);
        free(text);
        free(where);
        if (rc < 0)
            return rc;
    }
    return 0;
}

static int load_env(struct config *cfg)
{
    for (size_t i = 0; i < NKEYS; i++) {
        struct buf name = BUF_INIT;
        const char *v;
        int rc = 0;

        buf_adds(&name, "PACKRUN_");
        for (const char *p = keys[i].name; *p; p++) {
            char c = *p == '.' ? '_' : (char)(*p >= 'a' && *p <= 'z' ? *p - 32 : *p);

            buf_add(&name, &c, 1);
        }
        v = getenv(buf_str(&name));
        if (v)
            rc = set_key(cfg, &keys[i], v, buf_str(&name));
        buf_free(&name);
        if (rc < 0)
            return rc;
    }
    return 0;
}

int config_load(const char *path, struct config *cfg)
{
    json_t *doc = NULL;
    int rc;

    defaults(cfg);
    if (path) {
        rc = yaml_parse_file(path, 1024 * 1024, &doc);
        if (rc < 0)
            return rc;
        if (!json_is_object(doc) && !json_is_null(doc)) {
            json_decref(doc);
            return err_set(ERR_INVALID, "%s: expected a mapping of settings", path);
        }
        rc = json_is_object(doc) ? load_object(cfg, path, NULL, doc) : 0;
        json_decref(doc);
        if (rc < 0)
            return rc;
    }
    return load_env(cfg);
}

void config_finish(struct config *cfg)
{
    if (!cfg->db_url)
        cfg->db_url = xasprintf("%s/packrun.db", cfg->data_dir);
    if (!cfg->api_url) {
        const char *listen = cfg->listen;

        if (strncmp(listen, "0.0.0.0:", 8) == 0)
            cfg->api_url = xasprintf("http://127.0.0.1:%s", listen + 8);
        else
            cfg->api_url = xasprintf("http://%s", listen);
    }
}

json_t *config_to_json(const struct config *cfg)
{
    json_t *out = json_object();

    for (size_t i = 0; i < NKEYS; i++) {
        const char *field = (const char *)cfg + keys[i].offset;
        json_t *v;

        if (keys[i].kind == K_STR || keys[i].kind == K_LIST) {
            const char *s = *(char *const *)field;

            v = s ? json_string(s) : json_null();
        } else if (keys[i].kind == K_BOOL) {
            v = json_boolean(*(const int *)field);
        } else if (keys[i].offset == offsetof(struct config, slots)) {
            v = json_integer(cfg->slots);
        } else if (keys[i].kind == K_SECONDS) {
            v = json_real((double)*(const int64_t *)field / 1000.0);
        } else {
            v = json_integer(*(const int64_t *)field);
        }
        json_object_set_new(out, keys[i].name, v);
    }
    return out;
}

void config_free(struct config *cfg)
{
    for (size_t i = 0; i < NKEYS; i++) {
        if (keys[i].kind == K_STR || keys[i].kind == K_LIST) {
            char **field = (char **)((char *)cfg + keys[i].offset);

            free(*field);
            *field = NULL;
        }
    }
}

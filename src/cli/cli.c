#include "cli/cli.h"

#include <curl/curl.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "cli/client.h"
#include "pack/bundle.h"
#include "pack/pack.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/yaml.h"

#define CONFIG_MAX_BYTES (64 * 1024)
/* How long one GET of an execution waits on the server for it to end. */
#define WAIT_SECONDS 30
/* How much of a bad value an error message quotes. */
#define SHOWN_MAX         40
#define DESCRIPTION_WIDTH 60

/* ======================================================================
 * Pure helpers: arguments, configuration, parameters, formatting
 * ====================================================================== */

int cli_status_exit(const char *status)
{
    if (!status)
        return -1;
    if (strcmp(status, "succeeded") == 0)
        return CLI_EXIT_OK;
    if (strcmp(status, "failed") == 0)
        return CLI_EXIT_FAILED;
    if (strcmp(status, "timeout") == 0)
        return CLI_EXIT_TIMEOUT;
    if (strcmp(status, "canceled") == 0 || strcmp(status, "abandoned") == 0)
        return CLI_EXIT_CANCELED;
    return -1;
}

int cli_is_client_command(int argc, char **argv)
{
    static const char *const names[] = {"pack", "action", "run", "execution",
                                        "env",  "help",   "-h",  "--help"};
    size_t i;
    int j;

    if (argc < 1 || !argv[0])
        return 0;
    for (i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
        if (strcmp(argv[0], names[i]) == 0)
            return 1;
    }
    if (strcmp(argv[0], "worker") != 0)
        return 0;

    /* `worker list` with global options anywhere; anything else is the daemon. */
    for (j = 1; j < argc; j++) {
        const char *a = argv[j];

        if (strcmp(a, "--json") == 0 || strncmp(a, "--api=", 6) == 0 ||
            strncmp(a, "--token=", 8) == 0)
            continue;
        if (strcmp(a, "--api") == 0 || strcmp(a, "--token") == 0) {
            j++;
            continue;
        }
        return strcmp(a, "list") == 0;
    }
    return 0;
}

/* 1 if argv[*i] is option name ("--api V" or "--api=V"), with *value set
 * (and *i moved past a separate value); 0 if it is not; ERR_INVALID if the
 * value is missing. */
static int option_value(const char *name, int argc, char **argv, int *i, const char **value)
{
    const char *a = argv[*i];
    size_t n = strlen(name);

    if (strncmp(a, name, n) != 0)
        return 0;
    if (a[n] == '=') {
        *value = a + n + 1;
        return 1;
    }
    if (a[n] != '\0')
        return 0;
    if (*i + 1 >= argc)
        return err_set(ERR_INVALID, "option %s needs a value", name);
    *i += 1;
    *value = argv[*i];
    return 1;
}

int cli_take_globals(int argc, char **argv, struct cli_globals *g)
{
    int in, out = 1, ended = 0, rc;

    memset(g, 0, sizeof(*g));
    for (in = 1; in < argc; in++) {
        const char *a = argv[in];

        if (ended || a[0] != '-') {
            argv[out++] = argv[in];
            continue;
        }
        if (strcmp(a, "--") == 0) {
            ended = 1;
            argv[out++] = argv[in];
            continue;
        }
        if (strcmp(a, "--json") == 0) {
            g->json = 1;
            continue;
        }
        if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
            g->help = 1;
            continue;
        }
        rc = option_value("--api", argc, argv, &in, &g->api);
        if (rc == 0)
            rc = option_value("--token", argc, argv, &in, &g->token);
        if (rc < 0)
            return rc;
        if (rc == 0)
            argv[out++] = argv[in];
    }
    return out;
}

/* Match argv[*i] against one option: 1 matched, 0 not, < 0 error. */
static int match_option(struct cli_option *o, int argc, char **argv, int *i)
{
    const char *a = argv[*i];
    size_t n = strlen(o->name);

    if (o->alias && strcmp(a, o->alias) == 0) {
        if (!o->has_value) {
            o->value = "";
            return 1;
        }
        if (*i + 1 >= argc)
            return err_set(ERR_INVALID, "option %s needs a value", o->alias);
        *i += 1;
        o->value = argv[*i];
        return 1;
    }
    if (o->has_value)
        return option_value(o->name, argc, argv, i, &o->value);
    if (strncmp(a, o->name, n) != 0 || (a[n] != '\0' && a[n] != '='))
        return 0;
    if (a[n] == '=')
        return err_set(ERR_INVALID, "option %s takes no value", o->name);
    o->value = "";
    return 1;
}

int cli_parse_args(int argc, char **argv, struct cli_option *opts, const char **pos, int *npos)
{
    int i, ended = 0, rc;
    struct cli_option *o;

    *npos = 0;
    for (i = 0; i < argc; i++) {
        const char *a = argv[i];

        if (ended || a[0] != '-' || a[1] == '\0') {
            pos[(*npos)++] = a;
            continue;
        }
        if (strcmp(a, "--") == 0) {
            ended = 1;
            continue;
        }
        rc = 0;
        for (o = opts; o->name && rc == 0; o++)
            rc = match_option(o, argc, argv, &i);
        if (rc < 0)
            return rc;
        if (rc == 0)
            return err_set(ERR_INVALID, "unknown option '%s'", a);
    }
    return 0;
}

int cli_is_id(const char *s)
{
    size_t n = strspn(s, "0123456789");

    return n >= 1 && n <= 18 && s[n] == '\0' && s[0] != '0';
}

/* ---- configuration ---- */

static const char *nonempty(const char *s)
{
    return s && *s ? s : NULL;
}

char *cli_config_path(void)
{
    const char *p = nonempty(getenv("PACKRUN_CLI_CONFIG"));

    if (p)
        return xstrdup(p);
    p = getenv("XDG_CONFIG_HOME");
    if (p && p[0] == '/')
        return xasprintf("%s/packrun/cli.yaml", p);
    p = nonempty(getenv("HOME"));
    if (p)
        return xasprintf("%s/.config/packrun/cli.yaml", p);
    return NULL;
}

static int config_string(const char *path, const json_t *doc, const char *key, char **out)
{
    const json_t *v = json_object_get(doc, key);

    if (!v || json_is_null(v))
        return 0;
    if (!json_is_string(v))
        return err_set(ERR_INVALID, "%s: key '%s': expected a string (put the value in quotes)",
                       path, key);
    if (json_string_length(v) > 0)
        *out = xstrdup(json_string_value(v));
    return 0;
}

static int config_read(char **api, char **token)
{
    char *path = cli_config_path();
    json_t *doc = NULL;
    int rc = 0;

    if (!path)
        return 0;
    rc = yaml_parse_file(path, CONFIG_MAX_BYTES, &doc);
    if (rc == ERR_NOTFOUND) {
        rc = 0;
        goto out;
    }
    if (rc < 0)
        goto out;
    if (!json_is_object(doc) && !json_is_null(doc)) {
        rc = err_set(ERR_INVALID, "%s: expected a mapping with the keys api_url and token", path);
        goto out;
    }
    rc = config_string(path, doc, "api_url", api);
    if (rc == 0)
        rc = config_string(path, doc, "token", token);

out:
    json_decref(doc);
    free(path);
    return rc;
}

int cli_config_resolve(const char *flag_api, const char *flag_token, struct cli_config *out)
{
    const char *api = nonempty(flag_api), *token = nonempty(flag_token);
    char *file_api = NULL, *file_token = NULL;
    int rc = 0;

    memset(out, 0, sizeof(*out));
    if (!api)
        api = nonempty(getenv("PACKRUN_API_URL"));
    if (!token)
        token = nonempty(getenv("PACKRUN_TOKEN"));
    if (!api || !token) {
        rc = config_read(&file_api, &file_token);
        if (rc < 0)
            goto out;
    }
    if (!api)
        api = file_api ? file_api : CLI_DEFAULT_API;
    if (!token)
        token = file_token;
    out->api = xstrdup(api);
    out->token = token ? xstrdup(token) : NULL;

out:
    free(file_api);
    free(file_token);
    return rc;
}

void cli_config_free(struct cli_config *cfg)
{
    free(cfg->api);
    free(cfg->token);
    cfg->api = NULL;
    cfg->token = NULL;
}

/* ---- parameters ---- */

/* The value for a message: at most SHOWN_MAX bytes of it. Caller frees. */
static char *shown(const char *text, size_t len)
{
    if (len <= SHOWN_MAX)
        return xasprintf("'%.*s'", (int)len, text);
    return xasprintf("'%.*s...'", SHOWN_MAX, text);
}

static int bad_value(const char *name, const char *what, const char *text, size_t len)
{
    char *s = shown(text, len);
    int rc = err_set(ERR_INVALID, "parameter '%s': expected %s, got %s", name, what, s);

    free(s);
    return rc;
}

static int is_space(char ch)
{
    return ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r';
}

/* Trim ASCII blanks around text[0..*len) and return the new start. */
static const char *trim(const char *text, size_t *len)
{
    while (*len > 0 && is_space(text[*len - 1]))
        *len -= 1;
    while (*len > 0 && is_space(*text)) {
        text++;
        *len -= 1;
    }
    return text;
}

static int coerce_integer(const char *name, const char *text, size_t len, json_t **out)
{
    const char *s = trim(text, &len);
    char *end;
    long long v;

    if (len == 0 || strspn(s, "+-0123456789") < len)
        return bad_value(name, "an integer", text, len);
    errno = 0;
    v = strtoll(s, &end, 10);
    if (end != s + len)
        return bad_value(name, "an integer", text, len);
    if (errno == ERANGE)
        return bad_value(name, "an integer in range", text, len);
    *out = json_integer(v);
    return 0;
}

static int coerce_number(const char *name, const char *text, size_t len, json_t **out)
{
    const char *s = trim(text, &len);
    char *end;
    double v;

    if (len == 0 || strspn(s, "+-.0123456789eE") < len)
        return bad_value(name, "a number", text, len);
    if (coerce_integer(name, s, len, out) == 0)
        return 0;
    errno = 0;
    v = strtod(s, &end);
    if (end != s + len || !isfinite(v) || errno == ERANGE)
        return bad_value(name, "a number", text, len);
    *out = json_real(v);
    return 0;
}

static int word_is(const char *s, size_t len, const char *word)
{
    return strlen(word) == len && strncasecmp(s, word, len) == 0;
}

static int coerce_boolean(const char *name, const char *text, size_t len, json_t **out)
{
    const char *s = trim(text, &len);

    if (word_is(s, len, "true") || word_is(s, len, "yes") || word_is(s, len, "1")) {
        *out = json_true();
        return 0;
    }
    if (word_is(s, len, "false") || word_is(s, len, "no") || word_is(s, len, "0")) {
        *out = json_false();
        return 0;
    }
    return bad_value(name, "a boolean (true/false, yes/no, 1/0)", text, len);
}

static int coerce_json(const char *name, int want_array, const char *text, size_t len, json_t **out)
{
    const char *what = want_array ? "a JSON array" : "a JSON object";
    json_error_t jerr;
    json_t *v = json_loadb(text, len, 0, &jerr);

    if (!v)
        return err_set(ERR_INVALID, "parameter '%s': expected %s: %s", name, what, jerr.text);
    if (want_array ? !json_is_array(v) : !json_is_object(v)) {
        json_decref(v);
        return bad_value(name, what, text, len);
    }
    *out = v;
    return 0;
}

int cli_coerce_param(const json_t *schema, const char *name, const char *text, size_t len,
                     json_t **out)
{
    const json_t *spec = json_object_get(schema, name);
    const char *type = json_string_value(json_object_get(spec, "type"));

    *out = NULL;
    if (type && strcmp(type, "string") != 0 && memchr(text, '\0', len))
        return err_set(ERR_INVALID, "parameter '%s': the value has a NUL byte", name);
    if (type && strcmp(type, "integer") == 0)
        return coerce_integer(name, text, len, out);
    if (type && strcmp(type, "number") == 0)
        return coerce_number(name, text, len, out);
    if (type && strcmp(type, "boolean") == 0)
        return coerce_boolean(name, text, len, out);
    if (type && (strcmp(type, "array") == 0 || strcmp(type, "object") == 0))
        return coerce_json(name, strcmp(type, "array") == 0, text, len, out);

    *out = json_stringn(text, len);
    if (!*out)
        return err_set(ERR_INVALID, "parameter '%s': the value is not valid UTF-8", name);
    return 0;
}

/* The value of one key=value argument: literal, @@literal or @FILE. */
static int param_value(const json_t *schema, const char *name, const char *value, json_t **out)
{
    struct buf data = BUF_INIT;
    const char *path = value + 1;
    int rc;

    if (value[0] != '@')
        return cli_coerce_param(schema, name, value, strlen(value), out);
    if (value[1] == '@')
        return cli_coerce_param(schema, name, value + 1, strlen(value + 1), out);
    if (*path == '\0')
        return err_set(ERR_INVALID, "parameter '%s': '@' needs a file name (or @- for stdin)",
                       name);

    rc = fs_read_file(strcmp(path, "-") == 0 ? "/dev/stdin" : path, CLI_MAX_FILE_VALUE, &data);
    if (rc < 0)
        rc = err_wrap(rc, "parameter '%s'", name);
    else
        rc = cli_coerce_param(schema, name, buf_str(&data), data.len, out);
    buf_free(&data);
    return rc;
}

static int add_param(const json_t *schema, const char *arg, json_t *params)
{
    const char *eq = strchr(arg, '=');
    json_t *v = NULL;
    char *name, *s;
    int rc = 0;

    if (!eq || eq == arg) {
        s = shown(arg, strlen(arg));
        rc = err_set(ERR_INVALID, "expected key=value, got %s", s);
        free(s);
        return rc;
    }
    name = xasprintf("%.*s", (int)(eq - arg), arg);
    if (json_object_get(params, name)) {
        rc = err_set(ERR_INVALID, "parameter '%s' is given twice", name);
        goto out;
    }
    rc = param_value(schema, name, eq + 1, &v);
    if (rc < 0)
        goto out;
    if (json_object_set_new(params, name, v) < 0)
        rc = err_set(ERR_INVALID, "parameter name '%s' is not valid UTF-8", name);

out:
    free(name);
    return rc;
}

int cli_build_params(const json_t *schema, int argc, const char *const *argv, json_t **out)
{
    json_t *params = json_object();
    int i, rc = 0;

    for (i = 0; i < argc && rc == 0; i++)
        rc = add_param(schema, argv[i], params);
    if (rc < 0) {
        json_decref(params);
        params = NULL;
    }
    *out = params;
    return rc;
}

/* ---- tables ---- */

void cli_table_init(struct cli_table *t, size_t ncols, const char *const *headers)
{
    memset(t, 0, sizeof(*t));
    t->ncols = ncols;
    t->headers = headers;
    t->max_width = xcalloc(ncols, sizeof(*t->max_width));
}

void cli_table_limit(struct cli_table *t, size_t col, size_t width)
{
    if (col < t->ncols)
        t->max_width[col] = width < 2 ? 2 : width;
}

static char *clean_cell(const char *s)
{
    char *copy = xstrdup(s ? s : "-");
    char *p;

    for (p = copy; *p; p++) {
        if ((unsigned char)*p < 0x20 || *p == 0x7f)
            *p = ' ';
    }
    return copy;
}

void cli_table_add(struct cli_table *t, const char *const *cells)
{
    size_t c;

    if ((t->nrows + 1) * t->ncols > t->cap) {
        t->cap = t->cap ? t->cap * 2 : 16 * t->ncols;
        t->cells = xrealloc(t->cells, t->cap * sizeof(*t->cells));
    }
    for (c = 0; c < t->ncols; c++)
        t->cells[t->nrows * t->ncols + c] = clean_cell(cells[c]);
    t->nrows++;
}

/* The number of UTF-8 characters in s. */
static size_t text_width(const char *s)
{
    size_t n = 0;

    for (; *s; s++) {
        if (((unsigned char)*s & 0xc0) != 0x80)
            n++;
    }
    return n;
}

/* Append s cut to max characters (0: no limit); returns the width written. */
static size_t add_cut(struct buf *out, const char *s, size_t max)
{
    size_t width = text_width(s), n = 0;
    const char *p = s;

    if (max == 0 || width <= max) {
        buf_adds(out, s);
        return width;
    }
    while (*p && n < max - 1) {
        p++;
        while (((unsigned char)*p & 0xc0) == 0x80)
            p++;
        n++;
    }
    buf_add(out, s, (size_t)(p - s));
    buf_adds(out, "…");
    return max;
}

static const char *table_cell(const struct cli_table *t, size_t row, size_t col)
{
    if (t->headers) {
        if (row == 0)
            return t->headers[col];
        row--;
    }
    return t->cells[row * t->ncols + col];
}

static void render_row(const struct cli_table *t, size_t row, const size_t *widths, struct buf *out)
{
    struct buf line = BUF_INIT;
    size_t c, w;

    for (c = 0; c < t->ncols; c++) {
        w = add_cut(&line, table_cell(t, row, c), t->max_width[c]);
        while (c + 1 < t->ncols && w < widths[c] + 2) {
            buf_add(&line, " ", 1);
            w++;
        }
    }
    while (line.len > 0 && line.data[line.len - 1] == ' ')
        line.len--;
    buf_add(out, line.data ? line.data : "", line.len);
    buf_add(out, "\n", 1);
    buf_free(&line);
}

void cli_table_render(const struct cli_table *t, struct buf *out)
{
    size_t rows = t->nrows + (t->headers ? 1 : 0);
    size_t *widths = xcalloc(t->ncols ? t->ncols : 1, sizeof(*widths));
    size_t r, c, w;

    for (r = 0; r < rows; r++) {
        for (c = 0; c < t->ncols; c++) {
            w = text_width(table_cell(t, r, c));
            if (t->max_width[c] && w > t->max_width[c])
                w = t->max_width[c];
            if (w > widths[c])
                widths[c] = w;
        }
    }
    for (r = 0; r < rows; r++)
        render_row(t, r, widths, out);
    free(widths);
}

void cli_table_free(struct cli_table *t)
{
    size_t i;

    for (i = 0; i < t->nrows * t->ncols; i++)
        free(t->cells[i]);
    free(t->cells);
    free(t->max_width);
    memset(t, 0, sizeof(*t));
}

/* ---- values, times, durations ---- */

static char *json_compact(const json_t *v)
{
    char *s = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);

    return s ? s : xstrdup("?");
}

char *cli_json_cell(const json_t *v)
{
    struct buf b = BUF_INIT;
    const json_t *item;
    size_t i;

    if (!v || json_is_null(v))
        return xstrdup("-");
    if (json_is_string(v))
        return xstrdup(json_string_value(v));
    if (!json_is_array(v))
        return json_compact(v);
    if (json_array_size(v) == 0)
        return xstrdup("-");

    json_array_foreach (v, i, item) {
        const char *s = json_string_value(item);
        char *dumped = NULL;

        if (!s)
            s = json_string_value(json_object_get(item, "name"));
        if (!s)
            s = dumped = json_compact(item);
        buf_addf(&b, "%s%s", i ? "," : "", s);
        free(dumped);
    }
    return buf_detach(&b);
}

char *cli_format_duration(long long ms)
{
    if (ms < 0)
        return xstrdup("-");
    if (ms < 1000)
        return xasprintf("%lldms", ms);
    if (ms < 60 * 1000)
        return xasprintf("%lld.%02llds", ms / 1000, ms % 1000 / 10);
    if (ms < 3600 * 1000)
        return xasprintf("%lldm%02llds", ms / 60000, ms / 1000 % 60);
    return xasprintf("%lldh%02lldm", ms / 3600000, ms / 60000 % 60);
}

/* Parse "+hh:mm", "-hhmm", "Z" or "" into seconds east of UTC. */
static int parse_offset(const char *s, long *out)
{
    int hh, mm, n = 0;

    *out = 0;
    if (*s == '\0' || strcmp(s, "Z") == 0 || strcmp(s, "z") == 0)
        return 0;
    if ((*s != '+' && *s != '-') ||
        (sscanf(s + 1, "%2d:%2d%n", &hh, &mm, &n) != 2 &&
         sscanf(s + 1, "%2d%2d%n", &hh, &mm, &n) != 2) ||
        s[1 + n] != '\0' || hh > 23 || mm > 59)
        return ERR_INVALID;
    *out = (hh * 3600L + mm * 60L) * (*s == '-' ? -1 : 1);
    return 0;
}

int cli_parse_time(const char *iso, time_t *out)
{
    struct tm tm = {0};
    char sep = 0;
    long offset;
    int n = 0;

    if (!iso || sscanf(iso, "%4d-%2d-%2d%c%2d:%2d:%2d%n", &tm.tm_year, &tm.tm_mon, &tm.tm_mday,
                       &sep, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &n) != 7)
        return err_set(ERR_INVALID, "not an ISO 8601 time: %s", iso ? iso : "(null)");
    iso += n;
    if (*iso == '.')
        iso += 1 + strspn(iso + 1, "0123456789");
    if ((sep != 'T' && sep != ' ') || tm.tm_mon < 1 || tm.tm_mon > 12 || tm.tm_mday < 1 ||
        tm.tm_mday > 31 || tm.tm_hour > 23 || tm.tm_min > 59 || tm.tm_sec > 60 ||
        parse_offset(iso, &offset) < 0)
        return err_set(ERR_INVALID, "not an ISO 8601 time");
    tm.tm_year -= 1900;
    tm.tm_mon -= 1;
    *out = timegm(&tm) - offset;
    return 0;
}

char *cli_format_time(const char *iso)
{
    char text[64];
    struct tm tm;
    time_t t;

    if (!iso)
        return xstrdup("-");
    if (cli_parse_time(iso, &t) < 0 || !localtime_r(&t, &tm) ||
        strftime(text, sizeof(text), "%Y-%m-%d %H:%M:%S", &tm) == 0)
        return xstrdup(iso);
    return xstrdup(text);
}

char *cli_format_ago(const char *iso, time_t now)
{
    long long d;
    time_t t;

    if (!iso || cli_parse_time(iso, &t) < 0)
        return xstrdup("-");
    d = (long long)now - (long long)t;
    if (d < 0)
        d = 0;
    if (d < 60)
        return xasprintf("%llds ago", d);
    if (d < 3600)
        return xasprintf("%lldm ago", d / 60);
    if (d < 86400)
        return xasprintf("%lldh ago", d / 3600);
    return xasprintf("%lldd ago", d / 86400);
}

/* ======================================================================
 * Commands
 * ====================================================================== */

struct ctx;
typedef int (*command_fn)(struct ctx *ctx, int argc, char **argv);

struct command {
    const char *group;
    const char *verb; /* NULL for `run` */
    command_fn fn;
    const char *synopsis;
    const char *help;
};

struct ctx {
    struct cli_globals g;
    const struct command *cmd;
    const char *group; /* the group, when the failure is before a command is known */
    struct client *client;
    int has_token;
    json_t *problems;  /* error.problems of the last error answer */
    int register_path; /* pack install --path: the server reads the folder */
    int usage;         /* the failure is bad usage */
    const char **pos;  /* positional arguments of the command */
    int npos;
};

static int usage_error(struct ctx *ctx, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int usage_error(struct ctx *ctx, const char *fmt, ...)
{
    struct buf b = BUF_INIT;
    va_list ap;
    int rc;

    if (ctx->cmd)
        buf_addf(&b, "%s%s%s: ", ctx->cmd->group, ctx->cmd->verb ? " " : "",
                 ctx->cmd->verb ? ctx->cmd->verb : "");
    else if (ctx->group)
        buf_addf(&b, "%s: ", ctx->group);
    va_start(ap, fmt);
    buf_vaddf(&b, fmt, ap);
    va_end(ap);
    ctx->usage = 1;
    rc = err_set(ERR_INVALID, "%s", buf_str(&b));
    buf_free(&b);
    return rc;
}

/* Parse the command's arguments into ctx->pos; min..max positionals (max -1: any). */
static int parse(struct ctx *ctx, int argc, char **argv, struct cli_option *opts, int min, int max)
{
    static struct cli_option none[] = {{NULL, NULL, 0, NULL}};
    int rc;

    ctx->pos = xcalloc((size_t)argc + 1, sizeof(*ctx->pos));
    rc = cli_parse_args(argc, argv, opts ? opts : none, ctx->pos, &ctx->npos);
    if (rc < 0)
        return usage_error(ctx, "%s", err_msg());
    if (ctx->npos < min)
        return usage_error(ctx, "missing arguments");
    if (max >= 0 && ctx->npos > max)
        return usage_error(ctx, "unexpected argument '%s'", ctx->pos[max]);
    return 0;
}

/* A URL-escaped copy of s. Caller frees. */
static char *esc(const char *s)
{
    char *e = curl_easy_escape(NULL, s, 0);
    char *copy;

    if (!e)
        abort();
    copy = xstrdup(e);
    curl_free(e);
    return copy;
}

static void query_add(struct buf *b, const char *key, const char *value)
{
    char *e;

    if (!value)
        return;
    e = esc(value);
    buf_addf(b, "%c%s=%s", strchr(buf_str(b), '?') ? '&' : '?', key, e);
    free(e);
}

/* Call the API; on an error answer keep its problems for the report. */
/* After a request: keep a failed reply's problems and explain a 401. */
static int api_done(struct ctx *ctx, int rc, json_t **reply)
{
    const json_t *problems;
    char *msg;

    if (rc == 0)
        return 0;

    problems = json_object_get(json_object_get(*reply, "error"), "problems");
    if (json_is_array(problems) && !ctx->problems)
        ctx->problems = json_incref((json_t *)problems);
    json_decref(*reply);
    *reply = NULL;
    if (rc == ERR_UNAUTH && !ctx->has_token) {
        msg = xstrdup(err_msg());
        err_set(rc,
                "%s (no token: pass --token, set PACKRUN_TOKEN, or put token: in the CLI "
                "config file)",
                msg);
        free(msg);
    }
    return rc;
}

static int api(struct ctx *ctx, const char *method, const char *path, const json_t *body,
               json_t **reply)
{
    long status;

    return api_done(ctx, client_request(ctx->client, method, path, body, &status, reply), reply);
}

/* GET a path built from fmt. */
static int api_getf(struct ctx *ctx, json_t **reply, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static int api_getf(struct ctx *ctx, json_t **reply, const char *fmt, ...)
{
    struct buf path = BUF_INIT;
    va_list ap;
    int rc;

    va_start(ap, fmt);
    buf_vaddf(&path, fmt, ap);
    va_end(ap);
    rc = api(ctx, "GET", buf_str(&path), NULL, reply);
    buf_free(&path);
    return rc;
}

static void print_json(const json_t *v)
{
    char *s = json_dumps(v, JSON_INDENT(2) | JSON_ENCODE_ANY);

    printf("%s\n", s ? s : "null");
    free(s);
}

static void print_table(struct cli_table *t)
{
    struct buf out = BUF_INIT;

    cli_table_render(t, &out);
    fwrite(buf_str(&out), 1, out.len, stdout);
    buf_free(&out);
    cli_table_free(t);
}

/* Add a "Name:" row with a JSON value to a two-column field table. */
static void field(struct cli_table *t, const char *name, const json_t *v)
{
    char *label = xasprintf("%s:", name);
    char *value = cli_json_cell(v);
    const char *cells[2] = {label, value};

    cli_table_add(t, cells);
    free(label);
    free(value);
}

/* The same with a string that is freed. */
static void field_own(struct cli_table *t, const char *name, char *value)
{
    char *label = xasprintf("%s:", name);
    const char *cells[2] = {label, value};

    cli_table_add(t, cells);
    free(label);
    free(value);
}

static const char *str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static json_t *items(const json_t *reply, const char *key)
{
    json_t *a = json_object_get(reply, key);

    return json_is_array(a) ? a : NULL;
}

static char *first_line(const char *s)
{
    return s ? xasprintf("%.*s", (int)strcspn(s, "\r\n"), s) : NULL;
}

/* ---- pack ---- */

static long long pack_action_count(const json_t *pack)
{
    const json_t *n = json_object_get(pack, "action_count");

    if (json_is_integer(n))
        return json_integer_value(n);
    return (long long)json_array_size(json_object_get(pack, "actions"));
}

/* Check the pack here, as the server would, then send it as a .tar.gz. */
static int pack_upload(struct ctx *ctx, const char *dir, json_t **reply)
{
    json_t *pack = NULL, *problems = NULL;
    struct buf bundle = BUF_INIT;
    long status;
    int rc;

    rc = pack_load(dir, &pack, &problems);
    if (rc == ERR_INVALID && problems && !ctx->problems)
        ctx->problems = json_incref(problems);
    if (rc == 0)
        rc = bundle_create(dir, &bundle);
    if (rc == 0)
        rc = api_done(
            ctx,
            client_upload(ctx->client, "/api/v1/packs", bundle.data, bundle.len, &status, reply),
            reply);
    json_decref(pack);
    json_decref(problems);
    buf_free(&bundle);
    return rc;
}

static int install_pack(struct ctx *ctx, int argc, char **argv)
{
    struct cli_option opts[] = {{"--path", NULL, 0, NULL}, {NULL, NULL, 0, NULL}};
    json_t *body = NULL, *reply = NULL;
    char *abs = NULL;
    long long n;
    int rc;

    rc = parse(ctx, argc, argv, opts, 1, 1);
    ctx->register_path = opts[0].value != NULL;
    if (rc < 0)
        return rc;
    rc = fs_realpath(ctx->pos[0], &abs);
    if (rc < 0) {
        rc = err_wrap(rc, "pack folder");
        goto out;
    }
    if (ctx->register_path) {
        /* The server reads the folder itself. */
        body = json_pack("{s:s}", "path", abs);
        if (!body) {
            rc = err_set(ERR_INVALID, "%s: the path is not valid UTF-8", abs);
            goto out;
        }
        rc = api(ctx, "POST", "/api/v1/packs/register", body, &reply);
    } else {
        rc = pack_upload(ctx, abs, &reply);
    }
    if (rc < 0)
        goto out;

    n = pack_action_count(reply);
    if (ctx->g.json)
        print_json(reply);
    else
        printf("installed pack %s %s (%lld action%s%s)\n", str(reply, "ref"), str(reply, "version"),
               n, n == 1 ? "" : "s",
               str(reply, "environment") ? "; environment pending: a worker prepares it" : "");

out:
    json_decref(body);
    json_decref(reply);
    free(abs);
    return rc;
}

static int pack_list(struct ctx *ctx, int argc, char **argv)
{
    static const char *const headers[] = {"REF", "VERSION", "ACTIONS", "DESCRIPTION"};
    struct cli_table t;
    json_t *reply = NULL, *pack;
    size_t i;
    int rc;

    rc = parse(ctx, argc, argv, NULL, 0, 0);
    if (rc == 0)
        rc = api(ctx, "GET", "/api/v1/packs", NULL, &reply);
    if (rc < 0)
        return rc;
    if (ctx->g.json) {
        print_json(reply);
        goto out;
    }

    cli_table_init(&t, 4, headers);
    cli_table_limit(&t, 3, DESCRIPTION_WIDTH);
    json_array_foreach (items(reply, "packs"), i, pack) {
        char *count = xasprintf("%lld", pack_action_count(pack));
        char *desc = first_line(str(pack, "description"));
        const char *cells[4] = {str(pack, "ref"), str(pack, "version"), count, desc};

        cli_table_add(&t, cells);
        free(count);
        free(desc);
    }
    print_table(&t);

out:
    json_decref(reply);
    return 0;
}

static void print_actions(const json_t *actions)
{
    static const char *const headers[] = {"REF", "RUNNER", "DESCRIPTION"};
    struct cli_table t;
    json_t *action;
    size_t i;

    cli_table_init(&t, 3, headers);
    cli_table_limit(&t, 2, DESCRIPTION_WIDTH);
    json_array_foreach (actions, i, action) {
        char *desc = first_line(str(action, "description"));
        const char *cells[3] = {str(action, "ref"), str(action, "runner_type"), desc};

        cli_table_add(&t, cells);
        free(desc);
    }
    print_table(&t);
}

static int pack_show(struct ctx *ctx, int argc, char **argv)
{
    json_t *pack = NULL, *actions = NULL;
    struct cli_table t;
    char *ref = NULL;
    int rc;

    rc = parse(ctx, argc, argv, NULL, 1, 1);
    if (rc < 0)
        return rc;
    ref = esc(ctx->pos[0]);
    rc = api_getf(ctx, &pack, "/api/v1/packs/%s", ref);
    if (rc < 0)
        goto out;
    if (ctx->g.json) {
        print_json(pack);
        goto out;
    }
    rc = api_getf(ctx, &actions, "/api/v1/actions?pack=%s", ref);
    if (rc < 0)
        goto out;

    cli_table_init(&t, 2, NULL);
    field(&t, "Ref", json_object_get(pack, "ref"));
    field(&t, "Label", json_object_get(pack, "label"));
    field(&t, "Version", json_object_get(pack, "version"));
    field(&t, "Description", json_object_get(pack, "description"));
    field(&t, "Runtimes", json_object_get(pack, "runtimes"));
    field(&t, "Manifests", json_object_get(pack, "manifests"));
    field(&t, "Digest", json_object_get(pack, "digest"));
    field(&t, "Folder", json_object_get(pack, "dir"));
    field_own(&t, "Created", cli_format_time(str(pack, "created_at")));
    field_own(&t, "Updated", cli_format_time(str(pack, "updated_at")));
    print_table(&t);
    printf("\nActions:\n");
    print_actions(items(actions, "actions"));

out:
    json_decref(pack);
    json_decref(actions);
    free(ref);
    return rc;
}

static int pack_remove(struct ctx *ctx, int argc, char **argv)
{
    json_t *reply = NULL;
    char *ref, *path;
    int rc;

    rc = parse(ctx, argc, argv, NULL, 1, 1);
    if (rc < 0)
        return rc;
    ref = esc(ctx->pos[0]);
    path = xasprintf("/api/v1/packs/%s", ref);
    rc = api(ctx, "DELETE", path, NULL, &reply);
    if (rc < 0)
        goto out;
    if (ctx->g.json)
        print_json(reply);
    else
        printf("removed pack %s\n", ctx->pos[0]);

out:
    json_decref(reply);
    free(path);
    free(ref);
    return rc;
}

/* ---- action ---- */

static int action_list(struct ctx *ctx, int argc, char **argv)
{
    struct buf path = BUF_INIT;
    json_t *reply = NULL;
    int rc;

    rc = parse(ctx, argc, argv, NULL, 0, 1);
    if (rc < 0)
        return rc;
    buf_adds(&path, "/api/v1/actions");
    query_add(&path, "pack", ctx->npos > 0 ? ctx->pos[0] : NULL);
    rc = api(ctx, "GET", buf_str(&path), NULL, &reply);
    if (rc < 0)
        goto out;
    if (ctx->g.json)
        print_json(reply);
    else
        print_actions(items(reply, "actions"));

out:
    json_decref(reply);
    buf_free(&path);
    return rc;
}

static void print_parameters(const json_t *params)
{
    static const char *const headers[] = {"NAME", "TYPE", "REQUIRED", "DEFAULT", "DESCRIPTION"};
    struct cli_table t;
    const char *name;
    json_t *p;

    if (!json_is_object(params) || json_object_size(params) == 0) {
        printf("\nParameters: none\n");
        return;
    }
    cli_table_init(&t, 5, headers);
    cli_table_limit(&t, 3, 30);
    cli_table_limit(&t, 4, DESCRIPTION_WIDTH);
    json_object_foreach ((json_t *)params, name, p) {
        const char *type = str(p, "type") ? str(p, "type") : "string";
        char *shown_type = json_is_true(json_object_get(p, "secret"))
                               ? xasprintf("%s (secret)", type)
                               : xstrdup(type);
        char *def = cli_json_cell(json_object_get(p, "default"));
        char *desc = first_line(str(p, "description"));
        const char *req = json_is_true(json_object_get(p, "required")) ? "yes" : "no";
        const char *cells[5] = {name, shown_type, req, def, desc};

        cli_table_add(&t, cells);
        free(shown_type);
        free(def);
        free(desc);
    }
    printf("\nParameters:\n");
    print_table(&t);
}

static int action_show(struct ctx *ctx, int argc, char **argv)
{
    json_t *action = NULL;
    struct cli_table t;
    char *ref;
    int rc;

    rc = parse(ctx, argc, argv, NULL, 1, 1);
    if (rc < 0)
        return rc;
    ref = esc(ctx->pos[0]);
    rc = api_getf(ctx, &action, "/api/v1/actions/%s", ref);
    free(ref);
    if (rc < 0)
        return rc;
    if (ctx->g.json) {
        print_json(action);
        goto out;
    }

    cli_table_init(&t, 2, NULL);
    field(&t, "Ref", json_object_get(action, "ref"));
    field(&t, "Pack", json_object_get(action, "pack"));
    field(&t, "Label", json_object_get(action, "label"));
    field(&t, "Description", json_object_get(action, "description"));
    field(&t, "Enabled", json_object_get(action, "enabled"));
    field(&t, "Runner", json_object_get(action, "runner_type"));
    field(&t, "Entry point", json_object_get(action, "entry_point"));
    if (json_object_get(action, "runtime_version"))
        field(&t, "Runtime version", json_object_get(action, "runtime_version"));
    field(&t, "Parameters via", json_object_get(action, "parameter_delivery"));
    field(&t, "Parameter format", json_object_get(action, "parameter_format"));
    field(&t, "Output format", json_object_get(action, "output_format"));
    field(&t, "Timeout (s)", json_object_get(action, "timeout_seconds"));
    print_table(&t);
    print_parameters(json_object_get(action, "parameters"));

out:
    json_decref(action);
    return 0;
}

/* ---- run ---- */

static int parse_timeout(struct ctx *ctx, const char *text, long long *out)
{
    char *end;

    errno = 0;
    *out = strtoll(text, &end, 10);
    if (!*text || *end || errno == ERANGE || *out <= 0 || *out > INT32_MAX)
        return usage_error(ctx, "--timeout: expected a positive number of seconds, got '%s'", text);
    return 0;
}

static int waiting(const char *status)
{
    return strcmp(status, "requested") == 0 || strcmp(status, "scheduled") == 0;
}

/* Guard against a server that answers ?wait= at once: never poll more than 5 times a second. */
static void pace(int64_t since_ns)
{
    int64_t left = 200 * 1000000LL - (clock_mono_ns() - since_ns);
    struct timespec ts;

    if (left <= 0)
        return;
    ts.tv_sec = 0;
    ts.tv_nsec = (long)left;
    nanosleep(&ts, NULL);
}

/* Poll the execution until it ends; *exec is replaced by its last record. */
static int run_wait(struct ctx *ctx, long long id, json_t **exec)
{
    int64_t start = clock_mono_ns(), asked;
    int tty = isatty(STDERR_FILENO), shown_line = 0, rc = 0;
    const char *status = str(*exec, "status");
    json_t *next = NULL;

    while (cli_status_exit(status) < 0) {
        int busy = status && (waiting(status) || str(*exec, "progress"));
        int wait = tty && busy ? 1 : WAIT_SECONDS;

        asked = clock_mono_ns();
        rc = api_getf(ctx, &next, "/api/v1/executions/%lld?wait=%d", id, wait);
        if (rc < 0)
            break;
        json_decref(*exec);
        *exec = next;
        status = str(*exec, "status");
        if (!status) {
            rc = err_set(ERR_FAIL, "the API answered an execution without a status");
            break;
        }
        if (tty && (waiting(status) || str(*exec, "progress")) &&
            clock_mono_ns() - start >= 1000000000LL) {
            const char *note = str(*exec, "progress");

            fprintf(stderr, "\r\033[Kwaiting: %s%s%s… (%llds)", status, note ? ": " : "",
                    note ? note : "", (long long)((clock_mono_ns() - start) / 1000000000LL));
            shown_line = 1;
        } else if (shown_line) {
            fputs("\r\033[K", stderr);
            shown_line = 0;
        }
        if (cli_status_exit(status) < 0)
            pace(asked);
    }
    if (shown_line)
        fputs("\r\033[K", stderr);
    return rc;
}

/* Print what an ended execution produced; returns the exit code. */
static int run_report(struct ctx *ctx, long long id, const json_t *exec)
{
    const json_t *result = json_object_get(exec, "result");
    const json_t *data = json_object_get(result, "data");
    const json_t *out = json_object_get(result, "stdout");
    const json_t *err = json_object_get(result, "stderr");
    const json_t *env = json_object_get(result, "environment");
    const char *status = str(exec, "status"), *env_status = str(env, "status");
    const char *error = str(result, "error");

    if (ctx->g.json) {
        print_json(exec);
        return cli_status_exit(status);
    }
    if (data && !json_is_null(data))
        print_json(data);
    else if (json_is_string(out))
        fwrite(json_string_value(out), 1, json_string_length(out), stdout);
    fflush(stdout);
    if (json_is_string(err))
        fwrite(json_string_value(err), 1, json_string_length(err), stderr);

    if (json_is_true(json_object_get(result, "truncated")))
        fprintf(stderr, "warning: output truncated; `packrun execution logs %lld` has all of it\n",
                id);
    if (env_status && (strcmp(env_status, "fallback") == 0 || strcmp(env_status, "failed") == 0))
        fprintf(stderr, "warning: environment %s: %s: %s\n",
                str(env, "key") ? str(env, "key") : "-", env_status,
                str(env, "error") ? str(env, "error") : "no reason given");
    if (strcmp(status, "succeeded") != 0) {
        if (error)
            fprintf(stderr, "execution %lld %s: %s\n", id, status, error);
        else if (json_is_integer(json_object_get(result, "exit_code")))
            fprintf(stderr, "execution %lld %s: exit code %lld\n", id, status,
                    (long long)json_integer_value(json_object_get(result, "exit_code")));
        else
            fprintf(stderr, "execution %lld %s\n", id, status);
    }
    return cli_status_exit(status);
}

static json_t *run_body(const char *action, json_t *params, long long timeout)
{
    json_t *body = json_object();

    json_object_set_new(body, "action", json_string(action));
    json_object_set(body, "parameters", params);
    if (timeout > 0)
        json_object_set_new(body, "timeout_seconds", json_integer(timeout));
    return body;
}

static int run(struct ctx *ctx, int argc, char **argv)
{
    struct cli_option opts[] = {
        {"--timeout", NULL, 1, NULL}, {"--no-wait", NULL, 0, NULL}, {NULL, NULL, 0, NULL}};
    json_t *action = NULL, *params = NULL, *body = NULL, *exec = NULL;
    long long timeout = 0, id;
    char *ref = NULL;
    int rc;

    rc = parse(ctx, argc, argv, opts, 1, -1);
    if (rc == 0 && opts[0].value)
        rc = parse_timeout(ctx, opts[0].value, &timeout);
    if (rc < 0)
        return rc;

    ref = esc(ctx->pos[0]);
    rc = api_getf(ctx, &action, "/api/v1/actions/%s", ref);
    if (rc < 0)
        goto out;
    rc = cli_build_params(json_object_get(action, "parameters"), ctx->npos - 1, ctx->pos + 1,
                          &params);
    if (rc < 0)
        goto out;
    body = run_body(str(action, "ref") ? str(action, "ref") : ctx->pos[0], params, timeout);
    rc = api(ctx, "POST", "/api/v1/executions", body, &exec);
    if (rc < 0)
        goto out;

    id = json_integer_value(json_object_get(exec, "id"));
    if (id <= 0) {
        rc = err_set(ERR_FAIL, "the API answered without an execution id");
        goto out;
    }
    if (opts[1].value) {
        if (ctx->g.json)
            print_json(exec);
        else
            printf("%lld\n", id);
        goto out;
    }
    rc = run_wait(ctx, id, &exec);
    if (rc == 0)
        rc = run_report(ctx, id, exec);

out:
    json_decref(action);
    json_decref(params);
    json_decref(body);
    json_decref(exec);
    free(ref);
    return rc;
}

/* ---- execution ---- */

static int execution_list(struct ctx *ctx, int argc, char **argv)
{
    static const char *const headers[] = {"ID",     "ACTION",  "STATUS",
                                          "WORKER", "CREATED", "DURATION"};
    struct cli_option opts[] = {{"--status", NULL, 1, NULL}, {"--action", NULL, 1, NULL},
                                {"--pack", NULL, 1, NULL},   {"--limit", NULL, 1, NULL},
                                {"--before", NULL, 1, NULL}, {NULL, NULL, 0, NULL}};
    struct buf path = BUF_INIT;
    json_t *reply = NULL, *e;
    struct cli_table t;
    size_t i;
    int rc;

    rc = parse(ctx, argc, argv, opts, 0, 0);
    if (rc < 0)
        return rc;
    buf_adds(&path, "/api/v1/executions");
    for (i = 0; opts[i].name; i++)
        query_add(&path, opts[i].name + 2, opts[i].value);
    rc = api(ctx, "GET", buf_str(&path), NULL, &reply);
    if (rc < 0 || ctx->g.json)
        goto out;

    cli_table_init(&t, 6, headers);
    json_array_foreach (items(reply, "executions"), i, e) {
        const json_t *ms = json_object_get(json_object_get(e, "result"), "duration_ms");
        char *id = cli_json_cell(json_object_get(e, "id"));
        char *created = cli_format_time(str(e, "created_at"));
        char *duration =
            json_is_integer(ms) ? cli_format_duration(json_integer_value(ms)) : xstrdup("-");
        const char *cells[6] = {id,      str(e, "action"), str(e, "status"), str(e, "worker"),
                                created, duration};

        cli_table_add(&t, cells);
        free(id);
        free(created);
        free(duration);
    }
    print_table(&t);

out:
    if (rc == 0 && ctx->g.json)
        print_json(reply);
    json_decref(reply);
    buf_free(&path);
    return rc;
}

/* The execution id in ctx->pos[0], checked. */
static int execution_id(struct ctx *ctx, const char **id)
{
    *id = ctx->pos[0];
    if (!cli_is_id(*id))
        return usage_error(ctx, "'%s' is not an execution id", *id);
    return 0;
}

static char *environment_cell(const json_t *env)
{
    const char *key = str(env, "key"), *error = str(env, "error");
    const json_t *secs = json_object_get(env, "seconds");

    if (!env || json_is_null(env))
        return xstrdup("-");
    return xasprintf("%s%s%s, %.1fs%s%s", str(env, "status") ? str(env, "status") : "?",
                     key ? " " : "", key ? key : "", json_number_value(secs), error ? ": " : "",
                     error ? error : "");
}

static void print_stream(const char *name, const json_t *text)
{
    size_t len = json_string_length(text);

    if (!json_is_string(text) || len == 0)
        return;
    printf("\n--- %s ---\n", name);
    fwrite(json_string_value(text), 1, len, stdout);
    if (json_string_value(text)[len - 1] != '\n')
        putchar('\n');
}

static void print_result(const json_t *result)
{
    const json_t *ms = json_object_get(result, "duration_ms");
    const json_t *data = json_object_get(result, "data");
    struct cli_table t;

    cli_table_init(&t, 2, NULL);
    field(&t, "Exit code", json_object_get(result, "exit_code"));
    field_own(&t, "Duration",
              json_is_integer(ms) ? cli_format_duration(json_integer_value(ms)) : xstrdup("-"));
    field(&t, "Error", json_object_get(result, "error"));
    field_own(&t, "Environment", environment_cell(json_object_get(result, "environment")));
    if (json_is_true(json_object_get(result, "truncated")))
        field_own(&t, "Output", xstrdup("truncated; see `packrun execution logs`"));
    print_table(&t);
    if (data && !json_is_null(data)) {
        printf("\n--- data ---\n");
        print_json(data);
    }
    print_stream("stdout", json_object_get(result, "stdout"));
    print_stream("stderr", json_object_get(result, "stderr"));
}

static int execution_show(struct ctx *ctx, int argc, char **argv)
{
    json_t *e = NULL, *result;
    struct cli_table t;
    const char *id;
    int rc;

    rc = parse(ctx, argc, argv, NULL, 1, 1);
    if (rc == 0)
        rc = execution_id(ctx, &id);
    if (rc == 0)
        rc = api_getf(ctx, &e, "/api/v1/executions/%s", id);
    if (rc < 0)
        return rc;
    if (ctx->g.json) {
        print_json(e);
        goto out;
    }

    cli_table_init(&t, 2, NULL);
    field(&t, "ID", json_object_get(e, "id"));
    field(&t, "Action", json_object_get(e, "action"));
    field(&t, "Status", json_object_get(e, "status"));
    field(&t, "Worker", json_object_get(e, "worker"));
    field(&t, "Parameters", json_object_get(e, "parameters"));
    field(&t, "Timeout (s)", json_object_get(e, "timeout_seconds"));
    field_own(&t, "Created", cli_format_time(str(e, "created_at")));
    field_own(&t, "Scheduled", cli_format_time(str(e, "scheduled_at")));
    field_own(&t, "Started", cli_format_time(str(e, "started_at")));
    field_own(&t, "Finished", cli_format_time(str(e, "finished_at")));
    print_table(&t);
    result = json_object_get(e, "result");
    if (json_is_object(result)) {
        printf("\n");
        print_result(result);
    }

out:
    json_decref(e);
    return 0;
}

static int execution_cancel(struct ctx *ctx, int argc, char **argv)
{
    json_t *e = NULL;
    const char *id;
    char *path;
    int rc;

    rc = parse(ctx, argc, argv, NULL, 1, 1);
    if (rc == 0)
        rc = execution_id(ctx, &id);
    if (rc < 0)
        return rc;
    path = xasprintf("/api/v1/executions/%s/cancel", id);
    rc = api(ctx, "POST", path, NULL, &e);
    free(path);
    if (rc < 0)
        return rc;
    if (ctx->g.json)
        print_json(e);
    else
        printf("execution %s: %s\n", id, str(e, "status") ? str(e, "status") : "?");
    json_decref(e);
    return 0;
}

static int execution_logs(struct ctx *ctx, int argc, char **argv)
{
    struct cli_option opts[] = {{"--follow", "-f", 0, NULL}, {NULL, NULL, 0, NULL}};
    const char *id, *stream;
    char *path;
    int rc;

    rc = parse(ctx, argc, argv, opts, 1, 2);
    if (rc == 0)
        rc = execution_id(ctx, &id);
    if (rc < 0)
        return rc;
    stream = ctx->npos > 1 ? ctx->pos[1] : "stdout";
    if (strcmp(stream, "stdout") != 0 && strcmp(stream, "stderr") != 0)
        return usage_error(ctx, "expected stdout or stderr, got '%s'", stream);

    path =
        xasprintf("/api/v1/executions/%s/logs/%s%s", id, stream, opts[0].value ? "?follow=1" : "");
    fflush(stdout);
    rc = client_stream(ctx->client, path, STDOUT_FILENO);
    free(path);
    return rc;
}

/* ---- worker ---- */

static int worker_list(struct ctx *ctx, int argc, char **argv)
{
    static const char *const headers[] = {"NAME", "HOST",   "RUNTIMES", "SLOTS",
                                          "BUSY", "STATUS", "HEARTBEAT"};
    json_t *reply = NULL, *w;
    struct cli_table t;
    time_t now = time(NULL);
    size_t i;
    int rc;

    rc = parse(ctx, argc, argv, NULL, 0, 0);
    if (rc == 0)
        rc = api(ctx, "GET", "/api/v1/workers", NULL, &reply);
    if (rc < 0)
        return rc;
    if (ctx->g.json) {
        print_json(reply);
        goto out;
    }

    cli_table_init(&t, 7, headers);
    json_array_foreach (items(reply, "workers"), i, w) {
        char *runtimes = cli_json_cell(json_object_get(w, "runtimes"));
        char *slots = cli_json_cell(json_object_get(w, "slots"));
        char *busy = cli_json_cell(json_object_get(w, "busy"));
        char *beat = cli_format_ago(str(w, "heartbeat_at"), now);
        const char *cells[7] = {str(w, "name"), str(w, "host"),   runtimes, slots,
                                busy,           str(w, "status"), beat};

        cli_table_add(&t, cells);
        free(runtimes);
        free(slots);
        free(busy);
        free(beat);
    }
    print_table(&t);

out:
    json_decref(reply);
    return 0;
}

/* ---- dispatch and help ---- */

/* --- environments --------------------------------------------------- */

static char *size_cell(const json_t *bytes)
{
    double v = (double)json_integer_value(bytes);

    if (!json_is_integer(bytes))
        return xstrdup("-");
    if (v >= 1024 * 1024)
        return xasprintf("%.1f MiB", v / (1024 * 1024));
    return xasprintf("%.0f KiB", v / 1024);
}

static int env_list(struct ctx *ctx, int argc, char **argv)
{
    static const char *const headers[] = {"KEY",    "RUNTIME", "PACKS",      "SIZE",
                                          "STATUS", "BUILT",   "BUILD TIME", "HOST"};
    json_t *reply = NULL, *e;
    struct cli_table t;
    size_t i;
    int rc;

    rc = parse(ctx, argc, argv, NULL, 0, 0);
    if (rc == 0)
        rc = api(ctx, "GET", "/api/v1/environments", NULL, &reply);
    if (rc < 0)
        return rc;
    if (ctx->g.json) {
        print_json(reply);
        goto out;
    }
    cli_table_init(&t, 8, headers);
    json_array_foreach (items(reply, "environments"), i, e) {
        char *key = xasprintf("%.12s", str(e, "key") ? str(e, "key") : "-");
        char *packs = cli_json_cell(json_object_get(e, "packs"));
        char *size = size_cell(json_object_get(e, "size_bytes"));
        char *built = cli_format_time(str(e, "built_at"));
        char *took = cli_format_duration(json_integer_value(json_object_get(e, "build_ms")));
        const char *cells[8] = {key,  str(e, "runtime"), packs, size, str(e, "status"), built,
                                took, str(e, "host")};

        cli_table_add(&t, cells);
        free(key);
        free(packs);
        free(size);
        free(built);
        free(took);
    }
    print_table(&t);

out:
    json_decref(reply);
    return 0;
}

static int env_show(struct ctx *ctx, int argc, char **argv)
{
    json_t *reply = NULL, *e;
    size_t i;
    int rc;

    rc = parse(ctx, argc, argv, NULL, 1, 1);
    if (rc == 0)
        rc = api_getf(ctx, &reply, "/api/v1/environments/%s", ctx->pos[0]);
    if (rc < 0)
        return rc;
    if (ctx->g.json) {
        print_json(reply);
        goto out;
    }
    json_array_foreach (items(reply, "environments"), i, e) {
        struct cli_table t;
        const char *log = str(e, "log");

        cli_table_init(&t, 2, NULL);
        field(&t, "Key", json_object_get(e, "key"));
        field(&t, "Host", json_object_get(e, "host"));
        field(&t, "Runtime", json_object_get(e, "runtime"));
        field(&t, "Status", json_object_get(e, "status"));
        field(&t, "Folder", json_object_get(e, "dir"));
        field_own(&t, "Packs", cli_json_cell(json_object_get(e, "packs")));
        field_own(&t, "Size", size_cell(json_object_get(e, "size_bytes")));
        field_own(&t, "Built", cli_format_time(str(e, "built_at")));
        field_own(&t, "Build time",
                  cli_format_duration(json_integer_value(json_object_get(e, "build_ms"))));
        field(&t, "Error", json_object_get(e, "error"));
        print_table(&t);
        if (log && *log)
            printf("\n--- build log ---\n%s%s", log, log[strlen(log) - 1] == '\n' ? "" : "\n");
    }

out:
    json_decref(reply);
    return 0;
}

/* Wait for each job in reply's "jobs" and print what it did. */
static int env_wait_jobs(struct ctx *ctx, const json_t *reply, const char *what)
{
    json_t *id, *job = NULL;
    size_t i;
    int rc = 0, failed = 0;

    json_array_foreach (items(reply, "jobs"), i, id) {
        const char *status;

        for (;;) {
            json_decref(job);
            job = NULL;
            rc =
                api_getf(ctx, &job, "/api/v1/jobs/%lld?wait=30", (long long)json_integer_value(id));
            if (rc < 0)
                return rc;
            status = str(job, "status");
            if (status && strcmp(status, "requested") != 0 && strcmp(status, "running") != 0)
                break;
        }
        if (ctx->g.json) {
            print_json(job);
        } else {
            const json_t *res = json_object_get(job, "result");

            if (strcmp(what, "gc") == 0)
                printf("worker %s: removed %zu environments\n", str(job, "worker"),
                       json_array_size(json_object_get(res, "removed")));
            else
                printf("pack %s (%s): environment %.12s %s%s%s\n", str(job, "pack"),
                       str(job, "runtime"), str(res, "key") ? str(res, "key") : "-",
                       str(res, "status") ? str(res, "status") : status,
                       str(res, "error") ? ": " : "", str(res, "error") ? str(res, "error") : "");
        }
        failed |= strcmp(status, "failed") == 0;
    }
    json_decref(job);
    return failed ? err_set(ERR_FAIL, "%s failed", what) : 0;
}

static int env_rebuild(struct ctx *ctx, int argc, char **argv)
{
    json_t *reply = NULL;
    char *path;
    int rc;

    rc = parse(ctx, argc, argv, NULL, 1, 1);
    if (rc < 0)
        return rc;
    path = xasprintf("/api/v1/environments/%s/rebuild", ctx->pos[0]);
    rc = api(ctx, "POST", path, NULL, &reply);
    free(path);
    if (rc == 0)
        rc = env_wait_jobs(ctx, reply, "rebuild");
    json_decref(reply);
    return rc;
}

static int env_gc(struct ctx *ctx, int argc, char **argv)
{
    json_t *reply = NULL;
    int rc;

    rc = parse(ctx, argc, argv, NULL, 0, 0);
    if (rc == 0)
        rc = api(ctx, "POST", "/api/v1/environments/gc", NULL, &reply);
    if (rc == 0)
        rc = env_wait_jobs(ctx, reply, "gc");
    json_decref(reply);
    return rc;
}

static const struct command commands[] = {
    {"pack", "install", install_pack, "pack install DIR [--path] [--json]",
     "Install the pack in folder DIR. It is checked here, then sent to the API as a\n"
     ".tar.gz, so the server may be on another host. Every problem of a pack that\n"
     "does not validate is listed. With --path, the server reads DIR itself instead\n"
     "(a folder on a file system it can see)."},
    {"pack", "list", pack_list, "pack list [--json]", "List the installed packs."},
    {"pack", "show", pack_show, "pack show REF [--json]", "Show a pack and its actions."},
    {"pack", "remove", pack_remove, "pack remove REF [--json]", "Remove a pack and its actions."},
    {"action", "list", action_list, "action list [PACK] [--json]",
     "List the actions, all of them or those of pack PACK."},
    {"action", "show", action_show, "action show REF [--json]",
     "Show an action and its parameters."},
    {"run", NULL, run, "run ACTION [key=value ...] [--timeout S] [--no-wait] [--json]",
     "Run ACTION, wait for it to end and print its result: its parsed output, or else\n"
     "its stdout; its stderr goes to stderr.\n"
     "\n"
     "Each value is converted to the type of its parameter: integer, number, boolean\n"
     "(true/false, yes/no, 1/0), array and object (JSON text); other values are strings.\n"
     "key=@FILE reads the value from FILE (@- from stdin); key=@@text passes \"@text\".\n"
     "\n"
     "  --timeout S  stop the action after S seconds (default: the action's)\n"
     "  --no-wait    print the execution id and return at once\n"
     "  --json       print the whole execution record\n"
     "\n"
     "Exit status: 0 succeeded, 1 failed, 2 timed out, 3 canceled or abandoned,\n"
     "4 bad usage or an error before the execution ended."},
    {"execution", "list", execution_list,
     "execution list [--status S] [--action A] [--pack P] [--limit N] [--before ID] [--json]",
     "List executions, newest first: at most N (default 100), older than ID if given."},
    {"execution", "show", execution_show, "execution show ID [--json]",
     "Show an execution: its fields, its result and its output."},
    {"execution", "cancel", execution_cancel, "execution cancel ID [--json]",
     "Cancel an execution that has not ended."},
    {"execution", "logs", execution_logs, "execution logs ID [stdout|stderr] [-f|--follow]",
     "Print the captured stdout (or stderr) of an execution. With --follow, keep\n"
     "printing as it comes until the execution ends."},
    {"env", "list", env_list, "env list [--json]",
     "List the runtime environments workers have built: key, runtime, the packs using\n"
     "it, size, status, when it was built and how long that took."},
    {"env", "show", env_show, "env show KEY [--json]",
     "Show one environment (KEY or its first 8+ digits) with its build log."},
    {"env", "rebuild", env_rebuild, "env rebuild PACK|KEY [--json]",
     "Build the environments of a pack (or of the packs using KEY) anew, and wait."},
    {"env", "gc", env_gc, "env gc [--json]",
     "Remove the environments no installed pack uses, on every live worker. An\n"
     "environment an execution is running on is kept."},
    {"worker", "list", worker_list, "worker list [--json]",
     "List the workers, with their runtimes, slots and last heartbeat."},
};

#define NCOMMANDS (sizeof(commands) / sizeof(commands[0]))

static const char main_usage[] =
    "usage: packrun COMMAND [ARGS] [--api URL] [--token TOKEN] [--json]\n"
    "\n"
    "Daemons:\n"
    "  up         the API and an embedded worker in one process\n"
    "  server     the API alone\n"
    "  worker     a worker alone\n"
    "\n"
    "Client commands (they talk to the API):\n"
    "  pack install DIR               register the pack in folder DIR\n"
    "  pack list | show REF | remove REF\n"
    "  action list [PACK] | show REF\n"
    "  run ACTION [key=value ...]     run an action and print its result\n"
    "  execution list | show ID | cancel ID | logs ID [stdout|stderr] [-f]\n"
    "  worker list\n"
    "\n"
    "Options of the client commands, anywhere after the command:\n"
    "  --api URL      the API (else $PACKRUN_API_URL, the CLI config, " CLI_DEFAULT_API ")\n"
    "  --token TOKEN  the bearer token (else $PACKRUN_TOKEN, the CLI config)\n"
    "  --json         print the API's JSON answer instead of a table\n"
    "  -h, --help     help on a command\n"
    "\n"
    "The CLI config is $PACKRUN_CLI_CONFIG, else ~/.config/packrun/cli.yaml (under\n"
    "$XDG_CONFIG_HOME if set), with the keys api_url: and token:.\n"
    "Run `packrun help COMMAND` for more on a command.\n";

static const struct command *find_command(const char *group, const char *verb)
{
    size_t i;

    for (i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].group, group) != 0)
            continue;
        if (!commands[i].verb || (verb && strcmp(commands[i].verb, verb) == 0))
            return &commands[i];
    }
    return NULL;
}

static int group_known(const char *group)
{
    size_t i;

    for (i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].group, group) == 0)
            return 1;
    }
    return 0;
}

static void print_group_usage(FILE *f, const char *group)
{
    size_t i;

    fprintf(f, "usage:\n");
    for (i = 0; i < NCOMMANDS; i++) {
        if (strcmp(commands[i].group, group) == 0)
            fprintf(f, "  packrun %s\n", commands[i].synopsis);
    }
}

static void print_command_help(const struct command *cmd)
{
    printf("usage: packrun %s\n\n%s\n", cmd->synopsis, cmd->help);
}

/* `packrun help [GROUP [VERB]]`; argv starts after "help". */
static int help(struct ctx *ctx, int argc, char **argv)
{
    const struct command *cmd;

    if (argc == 0) {
        fputs(main_usage, stdout);
        return 0;
    }
    if (!group_known(argv[0]))
        return usage_error(ctx, "help: unknown command '%s'", argv[0]);
    cmd = find_command(argv[0], argc > 1 ? argv[1] : NULL);
    if (!cmd && argc > 1)
        return usage_error(ctx, "help: unknown command '%s %s'", argv[0], argv[1]);
    if (cmd)
        print_command_help(cmd);
    else
        print_group_usage(stdout, argv[0]);
    return 0;
}

static int connect_api(struct ctx *ctx)
{
    struct cli_config cfg;
    int rc;

    rc = cli_config_resolve(ctx->g.api, ctx->g.token, &cfg);
    if (rc == 0)
        rc = client_open(cfg.api, cfg.token, &ctx->client);
    ctx->has_token = cfg.token != NULL;
    cli_config_free(&cfg);
    return rc;
}

static int dispatch(struct ctx *ctx, int argc, char **argv)
{
    const char *group = argv[0];
    int skip = 2, rc;

    if (strcmp(group, "help") == 0 || strcmp(group, "-h") == 0 || strcmp(group, "--help") == 0)
        return help(ctx, argc - 1, argv + 1);
    if (!group_known(group))
        return usage_error(ctx, "unknown command '%s'", group);
    ctx->group = group;

    if (strcmp(group, "run") == 0) {
        ctx->cmd = find_command(group, NULL);
        skip = 1;
    } else if (argc < 2) {
        if (ctx->g.help) {
            print_group_usage(stdout, group);
            return 0;
        }
        return usage_error(ctx, "missing command");
    } else {
        ctx->cmd = find_command(group, argv[1]);
        if (!ctx->cmd)
            return usage_error(ctx, "unknown command '%s'", argv[1]);
    }
    if (ctx->g.help) {
        print_command_help(ctx->cmd);
        return 0;
    }

    rc = connect_api(ctx);
    if (rc < 0)
        return rc;
    return ctx->cmd->fn(ctx, argc - skip, argv + skip);
}

/* Print a failure once and choose the exit code. */
static int report(const struct ctx *ctx, int rc)
{
    const json_t *p;
    size_t i;

    if (rc >= 0)
        return rc;
    fprintf(stderr, "error: %s\n", err_msg());
    json_array_foreach (ctx->problems, i, p) {
        char *s = cli_json_cell(p);

        fprintf(stderr, "  %s\n", s);
        free(s);
    }
    if (!ctx->usage)
        return ctx->cmd && strcmp(ctx->cmd->group, "run") == 0 ? CLI_EXIT_USAGE : CLI_EXIT_FAILED;

    if (ctx->cmd)
        fprintf(stderr, "usage: packrun %s\n", ctx->cmd->synopsis);
    else if (ctx->group)
        print_group_usage(stderr, ctx->group);
    else
        fprintf(stderr, "Run `packrun help` for the list of commands.\n");
    return CLI_EXIT_USAGE;
}

int cli_main(int argc, char **argv)
{
    struct ctx ctx;
    int rc;

    memset(&ctx, 0, sizeof(ctx));
    if (argc < 1 || !argv[0]) {
        fputs(main_usage, stderr);
        return CLI_EXIT_USAGE;
    }
    rc = cli_take_globals(argc, argv, &ctx.g);
    if (rc < 0)
        ctx.usage = 1;
    else
        rc = dispatch(&ctx, rc, argv);

    rc = report(&ctx, rc);
    if (fflush(stdout) != 0 && errno != EPIPE && rc == 0) {
        fprintf(stderr, "error: write to stdout: %s\n", strerror(errno));
        rc = CLI_EXIT_FAILED;
    }
    client_free(ctx.client);
    json_decref(ctx.problems);
    free(ctx.pos);
    return rc;
}

#include "runner/runner.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/text.h"
#include "util/yaml.h"

/* Variables an action inherits from the worker; everything else is left
 * out, so the worker's own settings and credentials never reach it. */
static const char *const env_allow[] = {"PATH", "HOME",   "LANG", "LC_ALL",  "LC_CTYPE",
                                        "TZ",   "TMPDIR", "USER", "LOGNAME", NULL};

struct argv_env {
    const char *argv[4];
    char *owned[32];
    int nowned;
    const char *envp[32];
    int nenv;
};

static const char *str(const json_t *obj, const char *key, const char *dflt)
{
    const char *s = json_string_value(json_object_get(obj, key));

    return s ? s : dflt;
}

static void env_add(struct argv_env *ae, char *entry)
{
    if (ae->nenv >= 31 || ae->nowned >= 32) {
        free(entry);
        return;
    }
    ae->owned[ae->nowned++] = entry;
    ae->envp[ae->nenv++] = entry;
}

/* --- parameters -------------------------------------------------------- */

static void dotenv_value(const json_t *v, struct buf *out)
{
    char *text = NULL;
    const char *s;

    if (json_is_string(v)) {
        s = json_string_value(v);
    } else if (json_is_null(v)) {
        s = "";
    } else {
        text = json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY);
        s = text ? text : "";
    }
    /* Single quotes keep everything literal in bash; a quote inside is
     * closed, escaped and reopened. */
    buf_adds(out, "'");
    for (; *s; s++) {
        if (*s == '\'')
            buf_adds(out, "'\\''");
        else
            buf_add(out, s, 1);
    }
    buf_adds(out, "'");
    free(text);
}

static void dotenv_walk(const json_t *obj, const char *prefix, struct buf *out)
{
    const char *key;
    json_t *v;

    json_object_foreach ((json_t *)obj, key, v) {
        char *name = prefix ? xasprintf("%s.%s", prefix, key) : xstrdup(key);

        if (json_is_object(v)) {
            dotenv_walk(v, name, out);
        } else {
            buf_addf(out, "%s=", name);
            dotenv_value(v, out);
            buf_adds(out, "\n");
        }
        free(name);
    }
}

void runner_format_params(const json_t *params, const char *format, struct buf *out)
{
    if (strcmp(format, "dotenv") == 0) {
        dotenv_walk(params, NULL, out);
    } else if (strcmp(format, "yaml") == 0) {
        yaml_emit(params, out);
    } else {
        char *text = json_dumps(params, JSON_COMPACT | JSON_SORT_KEYS);

        buf_adds(out, text ? text : "{}");
        buf_adds(out, "\n");
        free(text);
    }
}

/* --- output ------------------------------------------------------------ */

static json_t *parse_json_text(const char *data, size_t len)
{
    return json_loadb(data, len, JSON_DECODE_ANY, NULL);
}

static json_t *parse_jsonl(const char *data, size_t len, char **note)
{
    json_t *arr = json_array();
    size_t start = 0, lineno = 0;

    while (start < len) {
        const char *nl = memchr(data + start, '\n', len - start);
        size_t end = nl ? (size_t)(nl - data) : len;
        json_t *v;

        lineno++;
        if (end > start && strspn(data + start, " \t\r") < end - start) {
            v = parse_json_text(data + start, end - start);
            if (!v) {
                *note = xasprintf("output_format jsonl: line %zu is not JSON", lineno);
                json_decref(arr);
                return NULL;
            }
            json_array_append_new(arr, v);
        }
        start = end + 1;
    }
    return arr;
}

json_t *runner_parse_output(const char *format, const char *data, size_t len, char **note)
{
    json_t *v = NULL;

    *note = NULL;
    if (strcmp(format, "json") == 0) {
        char *last;

        v = parse_json_text(data, len);
        if (v)
            return v;
        last = text_last_line(data, len);
        if (last)
            v = parse_json_text(last, strlen(last));
        free(last);
        if (!v)
            *note = xstrdup("output_format json: neither stdout nor its last line is JSON");
        return v;
    }
    if (strcmp(format, "yaml") == 0) {
        if (yaml_parse("stdout", data, len, &v) < 0) {
            *note = xasprintf("output_format yaml: %s", err_msg());
            return NULL;
        }
        return v;
    }
    if (strcmp(format, "jsonl") == 0)
        return parse_jsonl(data, len, note);
    return NULL;
}

/* --- the command ------------------------------------------------------ */

static int build_command(const struct runner_config *cfg, const struct runner_job *job,
                         const char *param_file, struct argv_env *ae)
{
    const char *runner_type = str(job->action, "runner_type", "shell");
    const char *entry = str(job->action, "entry_point", "");
    int kind = runtime_kind_parse(runner_type);
    const struct runtime *rt;
    char *entry_path;
    extern char **environ;

    if (kind < 0)
        return err_set(ERR_INVALID, "unknown runner_type '%s'", runner_type);
    rt = &cfg->runtimes[kind];
    entry_path = xasprintf("%s/actions/%s", job->pack_dir, entry);
    ae->owned[ae->nowned++] = entry_path;

    if (kind == RUNTIME_NATIVE) {
        ae->argv[0] = entry_path;
        ae->argv[1] = NULL;
    } else {
        const char *interp = job->interpreter ? job->interpreter : rt->path;

        if (!interp)
            return err_set(ERR_NOTFOUND, "runtime %s is not available on this worker: %s", rt->name,
                           rt->error ? rt->error : "no interpreter");
        ae->argv[0] = interp;
        if (kind == RUNTIME_PYTHON) {
            ae->argv[1] = "-u";
            ae->argv[2] = entry_path;
            ae->argv[3] = NULL;
        } else {
            ae->argv[1] = entry_path;
            ae->argv[2] = NULL;
        }
    }

    for (const char *const *name = env_allow; *name; name++) {
        const char *v = getenv(*name);
        int identity = strcmp(*name, "HOME") == 0 || strcmp(*name, "USER") == 0 ||
                       strcmp(*name, "LOGNAME") == 0;

        /* An action run as another user gets that user's identity. */
        if (identity && cfg->drop_privileges)
            continue;
        if (v)
            env_add(ae, xasprintf("%s=%s", *name, v));
    }
    if (cfg->drop_privileges) {
        env_add(ae, xasprintf("HOME=%s", cfg->home ? cfg->home : "/"));
        env_add(ae, xasprintf("USER=%s", cfg->user));
        env_add(ae, xasprintf("LOGNAME=%s", cfg->user));
    }
    (void)environ;
    env_add(ae, xasprintf("PACKRUN_EXECUTION_ID=%lld", (long long)job->id));
    env_add(ae, xasprintf("PACKRUN_ACTION=%s", str(job->action, "ref", "")));
    env_add(ae, xasprintf("PACKRUN_PACK=%s", str(job->action, "pack", "")));
    env_add(ae, xasprintf("PACKRUN_PACK_DIR=%s", job->pack_dir));
    env_add(ae,
            xasprintf("PACKRUN_PARAMETER_FORMAT=%s", str(job->action, "parameter_format", "json")));
    if (cfg->api_url)
        env_add(ae, xasprintf("PACKRUN_API_URL=%s", cfg->api_url));
    if (param_file)
        env_add(ae, xasprintf("PACKRUN_PARAMETER_FILE=%s", param_file));
    if (job->api_token)
        env_add(ae, xasprintf("PACKRUN_API_TOKEN=%s", job->api_token));
    if (kind == RUNTIME_PYTHON)
        env_add(ae, xasprintf("PYTHONPATH=%s/lib", job->pack_dir));
    if (kind == RUNTIME_NODE && job->env_dir)
        env_add(ae, xasprintf("NODE_PATH=%s/node_modules", job->env_dir));
    if (kind == RUNTIME_PYTHON && job->env_dir)
        env_add(ae, xasprintf("VIRTUAL_ENV=%s", job->env_dir));
    ae->envp[ae->nenv] = NULL;
    return 0;
}

static int write_param_file(const struct runner_config *cfg, const struct runner_job *job,
                            const struct buf *params, char **path)
{
    int fd, rc = 0;

    *path = xasprintf("%s/params-%lld", cfg->work_dir, (long long)job->id);
    unlink(*path);
    fd = open(*path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0400);
    if (fd < 0)
        return err_errno(ERR_FAIL, "create %s", *path);
    /* Only the action's user may read it. */
    if (cfg->drop_privileges && fchown(fd, cfg->uid, cfg->gid) < 0) {
        rc = err_errno(ERR_FAIL, "chown %s", *path);
        close(fd);
        return rc;
    }
    for (size_t off = 0; off < params->len;) {
        ssize_t n = write(fd, params->data + off, params->len - off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_errno(ERR_FAIL, "write %s", *path);
            break;
        }
        off += (size_t)n;
    }
    close(fd);
    return rc;
}

/* --- the result ------------------------------------------------------- */

static json_t *inline_stream(const struct buf *b, size_t total)
{
    size_t len = b->len < RUNNER_INLINE_BYTES ? b->len : RUNNER_INLINE_BYTES;

    (void)total;
    return text_json(buf_str(b), len);
}

static char *error_line(const struct proc_result *r)
{
    char *last;

    if (r->signal)
        return xasprintf("killed by signal SIG%s",
                         sigabbrev_np(r->signal) ? sigabbrev_np(r->signal) : "UNKNOWN");
    last = text_last_line(buf_str(&r->err_tail), r->err_tail.len);
    if (last)
        return last;
    return xasprintf("exited with code %d", r->exit_code);
}

static enum runner_outcome judge(const struct runner_job *job, int64_t timeout_s,
                                 const struct proc_result *r, json_t *result)
{
    char *error = NULL;
    enum runner_outcome outcome;

    if (r->canceled) {
        outcome = RUN_CANCELED;
        error = xstrdup("canceled");
    } else if (r->timed_out) {
        outcome = RUN_TIMEOUT;
        error = xasprintf("timed out after %lld seconds", (long long)timeout_s);
    } else if (r->signal || r->exit_code != 0) {
        outcome = RUN_FAILED;
        error = error_line(r);
    } else {
        outcome = RUN_SUCCEEDED;
    }
    json_object_set_new(result, "error", error ? text_json(error, strlen(error)) : json_null());
    free(error);
    return outcome;
}

static void parse_into(const struct runner_job *job, const struct proc_result *r, json_t *result)
{
    const char *format = str(job->action, "output_format", "text");
    json_t *data = NULL;
    char *note = NULL;

    if (strcmp(format, "text") != 0) {
        if (!r->out_kept_all)
            note = xasprintf("output_format %s: stdout is larger than %zu bytes and was not "
                             "parsed",
                             format, r->out.len);
        else
            data = runner_parse_output(format, buf_str(&r->out), r->out.len, &note);
    }
    json_object_set_new(result, "data", data ? data : json_null());
    if (note)
        json_object_set_new(result, "parse_error", json_string(note));
    free(note);
}

enum runner_outcome runner_execute(const struct runner_config *cfg, const struct runner_job *job,
                                   json_t **result)
{
    const char *delivery = str(job->action, "parameter_delivery", "stdin");
    const char *format = str(job->action, "parameter_format", "json");
    struct argv_env ae = {0};
    struct buf params = BUF_INIT;
    struct proc_result r = {0};
    char *param_file = NULL;
    int64_t timeout_s = job->timeout_seconds;
    enum runner_outcome outcome = RUN_FAILED;
    json_t *res = json_object();
    int rc;

    if (timeout_s <= 0)
        timeout_s = json_integer_value(json_object_get(job->action, "timeout_seconds"));
    if (timeout_s <= 0)
        timeout_s = cfg->default_timeout_s;

    if (job->parameters)
        runner_format_params(job->parameters, format, &params);
    else
        buf_adds(&params, strcmp(format, "json") == 0 ? "{}\n" : "");
    rc = 0;
    if (strcmp(delivery, "file") == 0)
        rc = write_param_file(cfg, job, &params, &param_file);
    if (rc == 0)
        rc = build_command(cfg, job, param_file, &ae);

    if (rc == 0) {
        int parsed = strcmp(str(job->action, "output_format", "text"), "text") != 0;
        struct proc_opts opts = {
            .argv = ae.argv,
            .envp = ae.envp,
            .cwd = job->pack_dir,
            .input = param_file ? NULL : params.data,
            .input_len = param_file ? 0 : params.len,
            .timeout_ms = timeout_s * 1000,
            .grace_ms = cfg->grace_ms,
            .output_cap = cfg->output_cap,
            .keep_stdout = parsed ? cfg->output_cap : RUNNER_INLINE_BYTES,
            .cancel_fd = job->cancel_fd,
            .sink = job->sink,
            .flush_ms = job->sink ? 50 : 0,
            .drop_privileges = cfg->drop_privileges,
            .uid = cfg->uid,
            .gid = cfg->gid,
            .ctx = job->ctx,
        };

        memcpy(opts.limits, cfg->limits, sizeof(opts.limits));
        rc = proc_run(&opts, &r);
    }

    if (rc < 0) {
        json_object_set_new(res, "exit_code", json_null());
        json_object_set_new(res, "duration_ms", json_integer(0));
        json_object_set_new(res, "data", json_null());
        json_object_set_new(res, "stdout", json_string(""));
        json_object_set_new(res, "stderr", json_string(""));
        json_object_set_new(res, "error", text_json(err_msg(), strlen(err_msg())));
        outcome = RUN_FAILED;
    } else {
        json_object_set_new(res, "exit_code", r.signal ? json_null() : json_integer(r.exit_code));
        if (r.signal)
            json_object_set_new(res, "signal", json_integer(r.signal));
        json_object_set_new(res, "duration_ms", json_integer(r.duration_ms));
        parse_into(job, &r, res);
        json_object_set_new(res, "stdout", inline_stream(&r.out, r.out_bytes));
        json_object_set_new(res, "stderr", inline_stream(&r.err_tail, r.err_bytes));
        json_object_set_new(res, "stdout_bytes", json_integer((json_int_t)r.out_bytes));
        json_object_set_new(res, "stderr_bytes", json_integer((json_int_t)r.err_bytes));
        json_object_set_new(
            res, "truncated",
            json_boolean(r.out_bytes > RUNNER_INLINE_BYTES || r.err_bytes > PROC_STDERR_TAIL));
        outcome = judge(job, timeout_s, &r, res);
    }
    json_object_set(res, "environment",
                    job->environment ? (json_t *)job->environment : json_null());

    if (param_file)
        unlink(param_file);
    free(param_file);
    for (int i = 0; i < ae.nowned; i++)
        free(ae.owned[i]);
    buf_free(&params);
    proc_result_free(&r);
    *result = res;
    return outcome;
}

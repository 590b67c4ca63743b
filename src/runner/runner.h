/*
 * runner: one execution of an action as a process, start to result.
 *
 * runner_execute() turns an action and its parameters into a command
 * line, an environment and an input, runs it with proc_run(), and turns
 * what happened into the execution's result:
 *
 *   {"exit_code", "duration_ms", "data", "stdout", "stderr", "error",
 *    "stdout_bytes", "stderr_bytes", "truncated", "environment"}
 *
 * and an outcome. It does not touch the database: the worker stores the
 * result, and receives output as it comes through the job's sink.
 */
#ifndef PACKRUN_RUNNER_H
#define PACKRUN_RUNNER_H

#include <jansson.h>
#include <stdint.h>

#include "runner/proc.h"
#include "runner/runtime.h"

/* How much of each stream the result record holds. */
#define RUNNER_INLINE_BYTES (64 * 1024)

enum runner_outcome { RUN_SUCCEEDED, RUN_FAILED, RUN_TIMEOUT, RUN_CANCELED };

struct runner_config {
    const struct runtime *runtimes; /* RUNTIME_COUNT entries, borrowed */
    size_t output_cap;              /* per stream, bytes */
    int64_t grace_ms;               /* SIGTERM to SIGKILL */
    int64_t default_timeout_s;
    const char *api_url; /* PACKRUN_API_URL for actions */
    int drop_privileges; /* run actions as the user below */
    uid_t uid;
    gid_t gid;
    const char *user; /* its name, for USER and LOGNAME */
    const char *home; /* its home folder, for HOME */
    long long limits[PROC_LIMIT_COUNT];
    const char *work_dir; /* parameter files go in here */
};

struct runner_job {
    int64_t id;
    const json_t *action;      /* the action, as pack_load() made it */
    const char *pack_dir;      /* the pack release folder */
    const json_t *parameters;  /* complete, secrets included */
    int64_t timeout_seconds;   /* 0: the action's or the default */
    const char *interpreter;   /* an environment's interpreter, or NULL for the runtime's */
    const char *env_dir;       /* the environment folder (venv, node_modules parent) or NULL */
    const char *api_token;     /* PACKRUN_API_TOKEN for an action with api_access, or NULL */
    const json_t *environment; /* {key, status, seconds, error}, copied into the result */
    int cancel_fd;             /* -1, or readable when the execution is canceled */
    proc_sink_fn sink;         /* output as it comes; may be NULL */
    void *ctx;
};

/* Run job. Always sets *result (caller decrefs) and returns the outcome:
 * an action that cannot start is a failed execution whose error says
 * why, not an error of the runner. */
enum runner_outcome runner_execute(const struct runner_config *cfg, const struct runner_job *job,
                                   json_t **result);

/* Write params in format ("json", "dotenv" or "yaml") to out. Exposed
 * for tests. */
void runner_format_params(const json_t *params, const char *format, struct buf *out);

/* Parse stdout in format ("json", "yaml", "jsonl"; "text" gives NULL).
 * Returns the value or NULL; on a parse failure *note (caller frees) says
 * why. */
json_t *runner_parse_output(const char *format, const char *data, size_t len, char **note);

#endif

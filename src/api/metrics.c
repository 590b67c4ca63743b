#include "api/metrics.h"

#include <string.h>

#include "store/store.h"

/* A label value with \, " and newlines escaped. */
static void label(struct buf *out, const char *v)
{
    for (; v && *v; v++) {
        if (*v == '\\' || *v == '"')
            buf_addf(out, "\\%c", *v);
        else if (*v == '\n')
            buf_adds(out, "\\n");
        else
            buf_add(out, v, 1);
    }
}

static long long num(const json_t *obj, const char *key)
{
    return (long long)json_integer_value(json_object_get(obj, key));
}

static void executions(const json_t *m, struct buf *out)
{
    const json_t *row;
    long long queued = 0;
    size_t i;

    buf_adds(out, "# HELP packrun_executions Executions in the database, by action and status.\n"
                  "# TYPE packrun_executions gauge\n");
    json_array_foreach (json_object_get(m, "executions"), i, row) {
        const char *status = json_string_value(json_object_get(row, "status"));

        buf_adds(out, "packrun_executions{action=\"");
        label(out, json_string_value(json_object_get(row, "action")));
        buf_adds(out, "\",status=\"");
        label(out, status);
        buf_addf(out, "\"} %lld\n", num(row, "n"));
        if (status && strcmp(status, "requested") == 0)
            queued += num(row, "n");
    }
    buf_addf(out,
             "# HELP packrun_queue_depth Executions waiting for a worker.\n"
             "# TYPE packrun_queue_depth gauge\n"
             "packrun_queue_depth %lld\n",
             queued);
}

static void durations(const json_t *m, struct buf *out)
{
    const json_t *buckets = json_object_get(m, "duration_buckets");

    buf_adds(out, "# HELP packrun_execution_duration_seconds How long ended executions ran.\n"
                  "# TYPE packrun_execution_duration_seconds histogram\n");
    for (int i = 0; i < STORE_DURATION_BUCKETS; i++)
        buf_addf(out, "packrun_execution_duration_seconds_bucket{le=\"%g\"} %lld\n",
                 store_duration_buckets_ms[i] / 1000.0,
                 (long long)json_integer_value(json_array_get(buckets, (size_t)i)));
    buf_addf(out,
             "packrun_execution_duration_seconds_bucket{le=\"+Inf\"} %lld\n"
             "packrun_execution_duration_seconds_sum %.3f\n"
             "packrun_execution_duration_seconds_count %lld\n",
             num(m, "duration_count"), (double)num(m, "duration_sum_ms") / 1000.0,
             num(m, "duration_count"));
}

static void environments(const json_t *m, struct buf *out)
{
    const json_t *env = json_object_get(m, "environments");

    buf_addf(out,
             "# HELP packrun_environment_builds_total Environment builds, failed ones included.\n"
             "# TYPE packrun_environment_builds_total counter\n"
             "packrun_environment_builds_total %lld\n"
             "# HELP packrun_environment_build_failures_total Environment builds that failed.\n"
             "# TYPE packrun_environment_build_failures_total counter\n"
             "packrun_environment_build_failures_total %lld\n"
             "# HELP packrun_environment_build_seconds_total Time spent building environments.\n"
             "# TYPE packrun_environment_build_seconds_total counter\n"
             "packrun_environment_build_seconds_total %.3f\n",
             num(env, "builds"), num(env, "failures"), (double)num(env, "build_ms") / 1000.0);
}

static void workers(const json_t *m, struct buf *out)
{
    const json_t *w;
    size_t i;

    buf_adds(out, "# HELP packrun_worker_slots Slots of each running worker.\n"
                  "# TYPE packrun_worker_slots gauge\n");
    json_array_foreach (json_object_get(m, "workers"), i, w) {
        buf_adds(out, "packrun_worker_slots{worker=\"");
        label(out, json_string_value(json_object_get(w, "name")));
        buf_addf(out, "\"} %lld\n", num(w, "slots"));
    }
    buf_adds(out, "# HELP packrun_worker_busy_slots Slots running an execution, as of the "
                  "worker's last heartbeat.\n"
                  "# TYPE packrun_worker_busy_slots gauge\n");
    json_array_foreach (json_object_get(m, "workers"), i, w) {
        buf_adds(out, "packrun_worker_busy_slots{worker=\"");
        label(out, json_string_value(json_object_get(w, "name")));
        buf_addf(out, "\"} %lld\n", num(w, "busy"));
    }
}

void metrics_render(const json_t *m, struct buf *out)
{
    executions(m, out);
    durations(m, out);
    environments(m, out);
    workers(m, out);
}

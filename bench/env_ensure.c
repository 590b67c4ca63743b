/*
 * bench_env_ensure: time env_ensure() for bench/envs.
 *
 *   bench_env_ensure ROOT MANIFEST [ITERATIONS] [INTERPRETER]
 *
 * Resolves the python runtime (INTERPRETER, default python3; not timed,
 * a worker does it once when it starts), then calls env_ensure() once,
 * which builds the environment when ROOT has none for MANIFEST, then
 * ITERATIONS more times on the ready environment, and as many times
 * ensure + env_hold() + env_release(), the check an execution makes.
 * Prints one JSON object:
 *
 *   {"key", "created", "first_ms" (the first call: the build, or the
 *    first check in a fresh process), "build_seconds", "error",
 *    "iterations", "warm_median_us", "warm_p99_us", "hold_median_us"}
 *
 * Exit status 1 when the environment could not be ensured.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "env/env.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/hash.h"

static int by_value(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;

    return (x > y) - (x < y);
}

static double percentile(double *v, int n, double p)
{
    if (n == 0)
        return 0.0;
    qsort(v, (size_t)n, sizeof(*v), by_value);
    return v[(int)(p * (n - 1) + 0.5)];
}

int main(int argc, char **argv)
{
    struct runtime rt;
    struct env_spec spec = {0};
    struct env_result res;
    int n = argc > 3 ? atoi(argv[3]) : 1000;
    double *warm, *hold, first_ms;
    json_t *out;
    int64_t t0;
    int rc;

    if (argc < 3) {
        fprintf(stderr, "usage: %s ROOT MANIFEST [ITERATIONS] [INTERPRETER]\n", argv[0]);
        return 2;
    }
    signal(SIGPIPE, SIG_IGN);
    if (hash_init() < 0)
        return 1;
    runtime_resolve(RUNTIME_PYTHON, argc > 4 ? argv[4] : NULL, NULL, &rt);
    spec.rt = &rt;
    spec.manifest = argv[2];

    t0 = clock_mono_ns();
    rc = env_ensure(argv[1], &spec, &res);
    first_ms = (double)(clock_mono_ns() - t0) / 1e6;
    out = json_pack("{s:s, s:b, s:f, s:f, s:s?}", "key", res.key, "created", res.created,
                    "first_ms", first_ms, "build_seconds", res.seconds, "error", res.error);
    env_result_free(&res);
    if (rc < 0) {
        json_dumpf(out, stdout, JSON_COMPACT);
        putchar('\n');
        json_decref(out);
        runtime_free(&rt);
        return 1;
    }

    warm = calloc((size_t)n + 1, sizeof(*warm));
    hold = calloc((size_t)n + 1, sizeof(*hold));
    for (int i = 0; i < n; i++) {
        t0 = clock_mono_ns();
        rc = env_ensure(argv[1], &spec, &res);
        warm[i] = (double)(clock_mono_ns() - t0) / 1e3;
        env_result_free(&res);
        if (rc < 0)
            break;
    }
    for (int i = 0; i < n && rc == 0; i++) {
        int fd;

        t0 = clock_mono_ns();
        rc = env_ensure(argv[1], &spec, &res);
        fd = rc == 0 ? env_hold(res.dir) : rc;
        env_release(fd);
        hold[i] = (double)(clock_mono_ns() - t0) / 1e3;
        env_result_free(&res);
        if (fd < 0)
            rc = fd;
    }
    json_object_set_new(out, "iterations", json_integer(n));
    json_object_set_new(out, "warm_median_us", json_real(percentile(warm, n, 0.5)));
    json_object_set_new(out, "warm_p99_us", json_real(percentile(warm, n, 0.99)));
    json_object_set_new(out, "hold_median_us", json_real(percentile(hold, n, 0.5)));
    if (rc < 0)
        json_object_set_new(out, "error", json_string(err_msg()));
    json_dumpf(out, stdout, JSON_COMPACT);
    putchar('\n');

    json_decref(out);
    free(warm);
    free(hold);
    runtime_free(&rt);
    return rc < 0;
}

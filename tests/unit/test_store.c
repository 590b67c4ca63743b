/* Unit tests for src/store: schema, packs, the execution lifecycle, logs,
 * workers and events, on a real SQLite file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>
#include <pthread.h>

#include "store/store.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/fs.h"

struct fixture {
    char dir[64];
    char *url;
    struct store *st;
};

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));

    strcpy(f->dir, "/tmp/packrun-store-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    f->url = xasprintf("%s/test.db", f->dir);
    assert_int_equal(store_open(f->url, &f->st), 0);
    assert_int_equal(store_migrate(f->st), 0);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    store_close(f->st);
    fs_rmtree(f->dir);
    free(f->url);
    free(f);
    return 0;
}

static json_t *sample_pack(const char *version)
{
    return json_pack("{s:s, s:s, s:s, s:s, s:s, s:[s], s:{}, s:{s:s}, s:[{s:s, s:s, s:s, "
                     "s:s}, {s:s, s:s, s:s, s:s}]}",
                     "ref", "demo", "label", "Demo", "description", "a demo", "version", version,
                     "digest", "abc", "runtimes", "shell", "manifests", "meta", "ref", "demo",
                     "actions", "ref", "demo.one", "name", "one", "runner_type", "shell",
                     "entry_point", "one.sh", "ref", "demo.two", "name", "two", "runner_type",
                     "shell", "entry_point", "two.sh");
}

static int64_t queue_one(struct store *st, const char *action)
{
    json_t *req = json_pack("{s:s, s:s, s:{s:s}, s:{s:s}, s:i, s:b}", "action", action, "pack",
                            "demo", "parameters", "x", "shown", "spec", "secret", "value",
                            "timeout_seconds", 60, "needs_env", 1);
    json_t *rec = NULL;
    int64_t id;

    assert_int_equal(store_execution_create(st, req, &rec), 0);
    json_decref(req);
    assert_string_equal(json_string_value(json_object_get(rec, "status")), "requested");
    id = json_integer_value(json_object_get(rec, "id"));
    json_decref(rec);
    assert_true(id > 0);
    return id;
}

static void test_migrate_is_idempotent(void **state)
{
    struct fixture *f = *state;
    struct store *other = NULL;

    assert_int_equal(store_migrate(f->st), 0);
    assert_int_equal(store_open(f->url, &other), 0);
    assert_int_equal(store_migrate(other), 0);
    assert_true(store_ping(other));
    store_close(other);
}

static void test_pack_put_get_replace_delete(void **state)
{
    struct fixture *f = *state;
    json_t *pack = sample_pack("1.0"), *got = NULL, *list = NULL, *action = NULL;

    assert_int_equal(store_pack_put(f->st, pack, "/packs/demo/abc"), 0);
    assert_int_equal(store_pack_get(f->st, "demo", &got), 0);
    assert_string_equal(json_string_value(json_object_get(got, "version")), "1.0");
    assert_string_equal(json_string_value(json_object_get(got, "dir")), "/packs/demo/abc");
    assert_int_equal(json_array_size(json_object_get(got, "actions")), 2);
    json_decref(got);

    assert_int_equal(store_action_get(f->st, "demo.two", &action), 0);
    assert_string_equal(json_string_value(json_object_get(action, "entry_point")), "two.sh");
    assert_string_equal(json_string_value(json_object_get(action, "pack_dir")), "/packs/demo/abc");
    json_decref(action);

    /* A new release replaces the old one and its actions. */
    json_array_remove(json_object_get(pack, "actions"), 1);
    json_object_set_new(pack, "version", json_string("2.0"));
    assert_int_equal(store_pack_put(f->st, pack, "/packs/demo/def"), 0);
    assert_int_equal(store_action_get(f->st, "demo.two", &action), ERR_NOTFOUND);
    assert_int_equal(store_action_list(f->st, "demo", &list), 0);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);

    assert_int_equal(store_pack_delete(f->st, "demo"), 0);
    assert_int_equal(store_pack_get(f->st, "demo", &got), ERR_NOTFOUND);
    assert_int_equal(store_pack_delete(f->st, "demo"), ERR_NOTFOUND);
    assert_int_equal(store_action_list(f->st, NULL, &list), 0);
    assert_int_equal(json_array_size(list), 0);
    json_decref(list);
    json_decref(pack);
}

static void test_execution_lifecycle(void **state)
{
    struct fixture *f = *state;
    int64_t id = queue_one(f->st, "demo.one");
    json_t *job = NULL, *exe = NULL, *result = json_pack("{s:i}", "exit_code", 0);

    assert_int_equal(store_execution_status(f->st, id), ST_REQUESTED);
    assert_int_equal(store_execution_claim(f->st, "w1", &job), 0);
    assert_int_equal(json_integer_value(json_object_get(job, "id")), id);
    assert_string_equal(json_string_value(json_object_get(json_object_get(job, "spec"), "secret")),
                        "value");
    json_decref(job);

    /* Nothing else is queued. */
    assert_int_equal(store_execution_claim(f->st, "w2", &job), ERR_NOTFOUND);

    assert_int_equal(store_execution_start(f->st, id), 0);
    assert_int_equal(store_execution_start(f->st, id), ERR_CONFLICT);
    assert_int_equal(store_execution_finish(f->st, id, ST_SUCCEEDED, result), 0);
    assert_int_equal(store_execution_finish(f->st, id, ST_FAILED, result), ERR_CONFLICT);

    assert_int_equal(store_execution_get(f->st, id, &exe), 0);
    assert_string_equal(json_string_value(json_object_get(exe, "status")), "succeeded");
    assert_string_equal(json_string_value(json_object_get(exe, "worker")), "w1");
    assert_int_equal(
        json_integer_value(json_object_get(json_object_get(exe, "result"), "exit_code")), 0);
    assert_null(json_object_get(exe, "spec"));
    assert_non_null(json_string_value(json_object_get(exe, "finished_at")));
    json_decref(exe);
    json_decref(result);
}

/* An execution that needs no environment is claimed straight into running. */
static void test_claim_without_environment_starts_at_once(void **state)
{
    struct fixture *f = *state;
    json_t *req = json_pack("{s:s, s:s, s:{}, s:{}, s:i, s:b}", "action", "demo.one", "pack",
                            "demo", "parameters", "spec", "timeout_seconds", 60, "needs_env", 0);
    json_t *rec = NULL, *job = NULL;
    int64_t id;

    assert_int_equal(store_execution_create(f->st, req, &rec), 0);
    id = json_integer_value(json_object_get(rec, "id"));
    assert_int_equal(store_execution_claim(f->st, "w", &job), 0);
    assert_string_equal(json_string_value(json_object_get(job, "status")), "running");
    assert_int_equal(store_execution_status(f->st, id), ST_RUNNING);
    assert_int_equal(store_execution_start(f->st, id), ERR_CONFLICT);
    json_decref(job);
    json_decref(rec);
    json_decref(req);
}

static void test_claim_order_and_list_filters(void **state)
{
    struct fixture *f = *state;
    int64_t a = queue_one(f->st, "demo.one");
    int64_t b = queue_one(f->st, "demo.two");
    struct store_filter filter = {.action = "demo.two", .limit = 10};
    json_t *job = NULL, *list = NULL;

    assert_int_equal(store_execution_claim(f->st, "w", &job), 0);
    assert_int_equal(json_integer_value(json_object_get(job, "id")), a);
    json_decref(job);

    assert_int_equal(store_execution_list(f->st, &filter, &list), 0);
    assert_int_equal(json_array_size(list), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "id")), b);
    json_decref(list);

    filter = (struct store_filter){.limit = 10};
    assert_int_equal(store_execution_list(f->st, &filter, &list), 0);
    assert_int_equal(json_array_size(list), 2);
    /* Newest first. */
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "id")), b);
    json_decref(list);

    filter = (struct store_filter){.status = "scheduled", .limit = 10};
    assert_int_equal(store_execution_list(f->st, &filter, &list), 0);
    assert_int_equal(json_array_size(list), 1);
    json_decref(list);

    filter = (struct store_filter){.before_id = b, .limit = 10};
    assert_int_equal(store_execution_list(f->st, &filter, &list), 0);
    assert_int_equal(json_array_size(list), 1);
    assert_int_equal(json_integer_value(json_object_get(json_array_get(list, 0), "id")), a);
    json_decref(list);
}

static void test_cancel(void **state)
{
    struct fixture *f = *state;
    int64_t queued = queue_one(f->st, "demo.one");
    int64_t running;
    json_t *job = NULL;

    assert_int_equal(store_execution_cancel(f->st, queued), ST_CANCELED);
    assert_int_equal(store_execution_status(f->st, queued), ST_CANCELED);
    assert_int_equal(store_execution_cancel(f->st, queued), ERR_CONFLICT);

    running = queue_one(f->st, "demo.one");
    assert_int_equal(store_execution_claim(f->st, "w", &job), 0);
    json_decref(job);
    assert_int_equal(store_execution_start(f->st, running), 0);
    assert_int_equal(store_execution_cancel(f->st, running), ST_CANCELING);
    assert_int_equal(store_execution_status(f->st, running), ST_CANCELING);
    assert_int_equal(store_execution_finish(f->st, running, ST_CANCELED, NULL), 0);
    assert_int_equal(store_execution_cancel(f->st, 999999), ERR_NOTFOUND);
}

/* Two connections claiming at once never get the same execution. */
struct claimer {
    const char *url;
    int claimed[64];
    int n;
};

static void *claim_all(void *arg)
{
    struct claimer *c = arg;
    struct store *st = NULL;
    json_t *job;

    assert_int_equal(store_open(c->url, &st), 0);
    while (store_execution_claim(st, "w", &job) == 0) {
        c->claimed[c->n++] = (int)json_integer_value(json_object_get(job, "id"));
        json_decref(job);
    }
    store_close(st);
    return NULL;
}

static void test_concurrent_claims_are_exclusive(void **state)
{
    struct fixture *f = *state;
    struct claimer c1 = {.url = f->url}, c2 = {.url = f->url};
    pthread_t t1, t2;
    char seen[64] = {0};

    for (int i = 0; i < 40; i++)
        queue_one(f->st, "demo.one");
    pthread_create(&t1, NULL, claim_all, &c1);
    pthread_create(&t2, NULL, claim_all, &c2);
    pthread_join(t1, NULL);
    pthread_join(t2, NULL);

    assert_int_equal(c1.n + c2.n, 40);
    for (int i = 0; i < c1.n; i++)
        seen[c1.claimed[i]]++;
    for (int i = 0; i < c2.n; i++)
        seen[c2.claimed[i]]++;
    for (int i = 1; i <= 40; i++)
        assert_int_equal(seen[i], 1);
}

static void test_abandon_stale_workers(void **state)
{
    struct fixture *f = *state;
    json_t *worker = json_pack("{s:s, s:s, s:i, s:[], s:i, s:i}", "name", "gone", "host", "h",
                               "pid", 1, "runtimes", "slots", 1, "busy", 1);
    int64_t id = queue_one(f->st, "demo.one");
    json_t *job = NULL, *list = NULL;
    char future[32];

    assert_int_equal(store_worker_heartbeat(f->st, worker), 0);
    assert_int_equal(store_execution_claim(f->st, "gone", &job), 0);
    json_decref(job);

    /* Fresh heartbeat: nothing to abandon. */
    assert_int_equal(store_execution_abandon(f->st, "2000-01-01T00:00:00.000Z", NULL), 0);
    clock_iso8601(clock_wall_ms() + 60000, future, sizeof(future));
    assert_int_equal(store_execution_abandon(f->st, future, NULL), 1);
    assert_int_equal(store_execution_status(f->st, id), ST_ABANDONED);

    assert_int_equal(store_worker_list(f->st, &list), 0);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "name")),
                        "gone");
    json_decref(list);
    json_decref(worker);
}

static void test_logs_roundtrip_binary(void **state)
{
    struct fixture *f = *state;
    int64_t id = queue_one(f->st, "demo.one");
    struct buf out = BUF_INIT;
    int seq = 0;

    assert_int_equal(store_log_append(f->st, id, "stdout", 0, "a\0b", 3), 0);
    assert_int_equal(store_log_append(f->st, id, "stdout", 1, "\xff\xfe", 2), 0);
    assert_int_equal(store_log_append(f->st, id, "stderr", 0, "err", 3), 0);
    assert_int_equal(store_log_read(f->st, id, "stdout", &seq, &out), 0);
    assert_int_equal(out.len, 5);
    assert_memory_equal(out.data, "a\0b\xff\xfe", 5);
    assert_int_equal(seq, 2);

    /* Reading from the next chunk on gives nothing new. */
    assert_int_equal(store_log_read(f->st, id, "stdout", &seq, &out), 0);
    assert_int_equal(out.len, 5);
    buf_free(&out);
}

static void test_events_wake_waiters(void **state)
{
    struct fixture *f = *state;
    uint64_t seen = store_seen(f->st, STORE_CH_QUEUE);
    int64_t t0;

    assert_int_equal(store_wait(f->st, STORE_CH_QUEUE, &seen, 10), 0);
    queue_one(f->st, "demo.one");
    t0 = clock_mono_ns();
    assert_int_equal(store_wait(f->st, STORE_CH_QUEUE, &seen, 5000), 1);
    assert_true(clock_mono_ns() - t0 < 1000000000LL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_migrate_is_idempotent, setup, teardown),
        cmocka_unit_test_setup_teardown(test_pack_put_get_replace_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_execution_lifecycle, setup, teardown),
        cmocka_unit_test_setup_teardown(test_claim_without_environment_starts_at_once, setup,
                                        teardown),
        cmocka_unit_test_setup_teardown(test_claim_order_and_list_filters, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel, setup, teardown),
        cmocka_unit_test_setup_teardown(test_concurrent_claims_are_exclusive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_abandon_stale_workers, setup, teardown),
        cmocka_unit_test_setup_teardown(test_logs_roundtrip_binary, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_wake_waiters, setup, teardown),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

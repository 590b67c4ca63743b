/* Unit tests for src/api/auth and the tokens of src/store: token format and
 * hashing, the Authorization header, the limit on failed attempts, roles,
 * revocation and last use on a real SQLite file, the listen check, the
 * boolean settings, and the cost of checking a request. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/auth.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/config.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hash.h"
#include "util/log.h"

struct fixture {
    char dir[64];
    struct store *st;
    struct auth *auth;
    char *viewer, *oper, *admin; /* tokens */
};

static char *add_token(struct store *st, const char *name, const char *role)
{
    char hash[HASH_HEX_LEN + 1];
    char *token;

    auth_token_new(&token, hash);
    assert_int_equal(store_token_create(st, name, role, hash), 0);
    return token;
}

static int setup(void **state)
{
    struct fixture *f = xcalloc(1, sizeof(*f));
    char *url;

    strcpy(f->dir, "/tmp/packrun-auth-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    url = xasprintf("%s/test.db", f->dir);
    assert_int_equal(store_open(url, &f->st), 0);
    assert_int_equal(store_migrate(f->st), 0);
    free(url);
    f->auth = auth_new();
    f->viewer = add_token(f->st, "ci", "viewer");
    f->oper = add_token(f->st, "ops", "operator");
    f->admin = add_token(f->st, "root", "admin");
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    auth_free(f->auth);
    store_close(f->st);
    fs_rmtree(f->dir);
    free(f->viewer);
    free(f->oper);
    free(f->admin);
    free(f);
    return 0;
}

/* auth_check() of one request; header NULL for none. */
static int check(struct fixture *f, const char *client, const char *header, enum auth_role need,
                 struct auth_caller *who, int *retry)
{
    struct auth_request req = {.client = client,
                               .authorization = header,
                               .method = "POST",
                               .path = "/api/v1/executions",
                               .need = need};

    return auth_check(f->auth, f->st, &req, who, retry);
}

static int check_token(struct fixture *f, const char *token, enum auth_role need,
                       struct auth_caller *who)
{
    char *header = xasprintf("Bearer %s", token);
    int retry = 0, rc = check(f, "192.0.2.1", header, need, who, &retry);

    free(header);
    return rc;
}

/* --- tokens and roles ------------------------------------------------------ */

static void test_roles(void **state)
{
    (void)state;
    assert_int_equal(auth_role_parse("viewer"), AUTH_VIEWER);
    assert_int_equal(auth_role_parse("operator"), AUTH_OPERATOR);
    assert_int_equal(auth_role_parse("admin"), AUTH_ADMIN);
    assert_int_equal(auth_role_parse("public"), ERR_INVALID);
    assert_int_equal(auth_role_parse("Admin"), ERR_INVALID);
    assert_non_null(strstr(err_msg(), "admin, operator or viewer"));
    assert_string_equal(auth_role_name(AUTH_OPERATOR), "operator");
    assert_true(AUTH_VIEWER < AUTH_OPERATOR && AUTH_OPERATOR < AUTH_ADMIN);
}

static void test_token_names(void **state)
{
    char long_name[AUTH_NAME_MAX + 2];

    (void)state;
    assert_int_equal(auth_name_check("ci"), 0);
    assert_int_equal(auth_name_check("deploy-bot_2.prod"), 0);
    assert_int_equal(auth_name_check(""), ERR_INVALID);
    assert_int_equal(auth_name_check("-x"), ERR_INVALID);
    assert_int_equal(auth_name_check("a b"), ERR_INVALID);
    assert_int_equal(auth_name_check("a/b"), ERR_INVALID);
    memset(long_name, 'a', sizeof(long_name) - 1);
    long_name[sizeof(long_name) - 1] = '\0';
    assert_int_equal(auth_name_check(long_name), ERR_INVALID);
    long_name[AUTH_NAME_MAX] = '\0';
    assert_int_equal(auth_name_check(long_name), 0);
}

static void test_token_new(void **state)
{
    char h1[HASH_HEX_LEN + 1], h2[HASH_HEX_LEN + 1], again[HASH_HEX_LEN + 1];
    char *t1, *t2;

    (void)state;
    auth_token_new(&t1, h1);
    auth_token_new(&t2, h2);
    assert_int_equal(strlen(t1), strlen(AUTH_TOKEN_PREFIX) + 43);
    assert_memory_equal(t1, AUTH_TOKEN_PREFIX, strlen(AUTH_TOKEN_PREFIX));
    assert_int_equal(
        strspn(t1 + 4, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"), 43);
    assert_string_not_equal(t1, t2);
    assert_string_not_equal(h1, h2);
    auth_token_hash(t1, strlen(t1), again);
    assert_string_equal(h1, again);
    hash_sha256_hex(t1, strlen(t1), again); /* the hash is SHA-256 of the whole token */
    assert_string_equal(h1, again);
    free(t1);
    free(t2);
}

static void test_parse_bearer(void **state)
{
    char huge[AUTH_TOKEN_MAX + 16];
    const char *tok;
    size_t len;

    (void)state;
    assert_int_equal(auth_parse_bearer("Bearer abc", &tok, &len), 0);
    assert_int_equal(len, 3);
    assert_memory_equal(tok, "abc", 3);
    assert_int_equal(auth_parse_bearer("  bearer \t pkr_x-y_z  ", &tok, &len), 0);
    assert_int_equal(len, 9);
    assert_memory_equal(tok, "pkr_x-y_z", 9);

    assert_int_equal(auth_parse_bearer(NULL, &tok, &len), ERR_UNAUTH);
    assert_non_null(strstr(err_msg(), "no token"));
    assert_int_equal(auth_parse_bearer("", &tok, &len), ERR_UNAUTH);
    assert_int_equal(auth_parse_bearer("Bearer", &tok, &len), ERR_UNAUTH);
    assert_int_equal(auth_parse_bearer("Bearer ", &tok, &len), ERR_UNAUTH);
    assert_int_equal(auth_parse_bearer("Bearerabc", &tok, &len), ERR_UNAUTH);
    assert_int_equal(auth_parse_bearer("Basic dXNlcjpwYXNz", &tok, &len), ERR_UNAUTH);
    assert_int_equal(auth_parse_bearer("Bearer a b", &tok, &len), ERR_UNAUTH);
    assert_int_equal(auth_parse_bearer("Bearer a\x01", &tok, &len), ERR_UNAUTH);
    assert_int_equal(auth_parse_bearer("Bearer \xc3\xa9t\xc3\xa9", &tok, &len), ERR_UNAUTH);

    memcpy(huge, "Bearer ", 7);
    memset(huge + 7, 'a', sizeof(huge) - 8);
    huge[sizeof(huge) - 1] = '\0';
    assert_int_equal(auth_parse_bearer(huge, &tok, &len), ERR_UNAUTH);
    assert_non_null(strstr(err_msg(), "longer than"));
    huge[7 + AUTH_TOKEN_MAX] = '\0';
    assert_int_equal(auth_parse_bearer(huge, &tok, &len), 0);
}

/* --- the limit on failed attempts ---------------------------------------- */

static void test_limiter(void **state)
{
    struct auth_limiter *l = auth_limiter_new(10);
    int64_t t = 1000000;
    int retry = 0;

    (void)state;
    assert_int_equal(auth_limiter_check(l, "10.0.0.1", t, &retry), 0);
    for (int i = 0; i < 10; i++) {
        assert_int_equal(auth_limiter_check(l, "10.0.0.1", t, &retry), 0);
        assert_int_equal(auth_limiter_fail(l, "10.0.0.1", t), 9 - i);
    }
    assert_int_equal(auth_limiter_check(l, "10.0.0.1", t, &retry), ERR_LIMITED);
    /* One attempt comes back every 60/10 s. */
    assert_int_equal(retry, 6);
    assert_int_equal(auth_limiter_fail(l, "10.0.0.1", t), 0); /* never below empty */

    /* Other addresses are not affected. */
    assert_int_equal(auth_limiter_check(l, "10.0.0.2", t, &retry), 0);
    assert_int_equal(auth_limiter_check(l, "::1", t, &retry), 0);

    /* The bucket refills with time: one attempt after 6 s, all after 60 s. */
    assert_int_equal(auth_limiter_check(l, "10.0.0.1", t + 3000, &retry), ERR_LIMITED);
    assert_int_equal(retry, 3);
    assert_int_equal(auth_limiter_check(l, "10.0.0.1", t + 6000, &retry), 0);
    assert_int_equal(auth_limiter_fail(l, "10.0.0.1", t + 6000), 0);
    assert_int_equal(auth_limiter_check(l, "10.0.0.1", t + 6001, &retry), ERR_LIMITED);
    assert_int_equal(auth_limiter_check(l, "10.0.0.1", t + 100000, &retry), 0);
    assert_int_equal(auth_limiter_fail(l, "10.0.0.1", t + 100000), 9);
    auth_limiter_free(l);
}

static void test_limiter_many_addresses(void **state)
{
    struct auth_limiter *l = auth_limiter_new(2);
    int retry, limited = 0;

    (void)state;
    /* Far more addresses than slots: old ones make room, nothing breaks,
     * and the address that failed last is still limited. */
    for (int i = 0; i < 20000; i++) {
        char addr[32];

        snprintf(addr, sizeof(addr), "10.%d.%d.%d", (i >> 16) & 255, (i >> 8) & 255, i & 255);
        auth_limiter_fail(l, addr, i);
        auth_limiter_fail(l, addr, i);
        limited += auth_limiter_check(l, addr, i, &retry) == ERR_LIMITED;
    }
    assert_int_equal(limited, 20000);
    assert_int_equal(auth_limiter_check(l, "10.0.78.31", 19999, &retry), ERR_LIMITED);
    auth_limiter_free(l);
}

/* --- checking requests on a real database ---------------------------------- */

static void test_public_route_needs_nothing(void **state)
{
    struct fixture *f = *state;
    struct auth_caller who;
    int retry;

    assert_int_equal(check(f, "192.0.2.1", NULL, AUTH_PUBLIC, &who, &retry), 0);
    assert_int_equal(who.role, AUTH_PUBLIC);
    assert_string_equal(who.name, "");
    /* Even a bad token is not looked at there. */
    assert_int_equal(check(f, "192.0.2.1", "Bearer nope", AUTH_PUBLIC, &who, &retry), 0);
}

static void test_missing_and_unknown_tokens(void **state)
{
    struct fixture *f = *state;
    struct auth_caller who;
    int retry;

    assert_int_equal(check(f, "192.0.2.1", NULL, AUTH_VIEWER, &who, &retry), ERR_UNAUTH);
    assert_non_null(strstr(err_msg(), "Authorization: Bearer"));
    assert_int_equal(check_token(f, "pkr_unknown", AUTH_VIEWER, &who), ERR_UNAUTH);
    assert_string_equal(err_msg(), "the token is not known to this server");
    assert_int_equal(check(f, "192.0.2.1", "Basic x", AUTH_VIEWER, &who, &retry), ERR_UNAUTH);
}

static void test_roles_are_ordered(void **state)
{
    struct fixture *f = *state;
    struct auth_caller who;

    assert_int_equal(check_token(f, f->viewer, AUTH_VIEWER, &who), 0);
    assert_string_equal(who.name, "ci");
    assert_int_equal(who.role, AUTH_VIEWER);
    assert_int_equal(check_token(f, f->viewer, AUTH_OPERATOR, &who), ERR_FORBIDDEN);
    assert_string_equal(
        err_msg(), "token 'ci' (viewer) may not POST /api/v1/executions: operator role needed");
    assert_int_equal(check_token(f, f->viewer, AUTH_ADMIN, &who), ERR_FORBIDDEN);

    assert_int_equal(check_token(f, f->oper, AUTH_VIEWER, &who), 0);
    assert_int_equal(check_token(f, f->oper, AUTH_OPERATOR, &who), 0);
    assert_int_equal(check_token(f, f->oper, AUTH_ADMIN, &who), ERR_FORBIDDEN);
    assert_non_null(strstr(err_msg(), "admin role needed"));

    assert_int_equal(check_token(f, f->admin, AUTH_ADMIN, &who), 0);
    assert_string_equal(who.name, "root");
    assert_int_equal(who.role, AUTH_ADMIN);
}

static void test_revocation_is_immediate(void **state)
{
    struct fixture *f = *state;
    struct auth_caller who;

    assert_int_equal(check_token(f, f->oper, AUTH_OPERATOR, &who), 0);
    assert_int_equal(store_token_revoke(f->st, "ops"), 0);
    assert_int_equal(check_token(f, f->oper, AUTH_VIEWER, &who), ERR_UNAUTH);
    assert_string_equal(err_msg(), "token 'ops' was revoked");
    assert_int_equal(store_token_revoke(f->st, "ops"), ERR_CONFLICT);
    assert_int_equal(store_token_revoke(f->st, "nobody"), ERR_NOTFOUND);
    /* The others still work. */
    assert_int_equal(check_token(f, f->admin, AUTH_ADMIN, &who), 0);
}

static void test_failed_attempts_are_limited(void **state)
{
    struct fixture *f = *state;
    struct auth_caller who;
    char *header = xasprintf("Bearer %s", f->admin);
    int retry = 0;

    for (int i = 0; i < AUTH_FAILURES_PER_MINUTE; i++)
        assert_int_equal(check(f, "198.51.100.7", "Bearer guess", AUTH_VIEWER, &who, &retry),
                         ERR_UNAUTH);
    /* No token at all is not an attempt. */
    assert_int_equal(check(f, "198.51.100.7", NULL, AUTH_VIEWER, &who, &retry), ERR_UNAUTH);
    assert_int_equal(check(f, "198.51.100.7", "Bearer guess", AUTH_VIEWER, &who, &retry),
                     ERR_LIMITED);
    assert_true(retry >= 1 && retry <= 6);
    assert_non_null(strstr(err_msg(), "198.51.100.7"));
    /* A limited address is refused before its token is looked at... */
    assert_int_equal(check(f, "198.51.100.7", header, AUTH_VIEWER, &who, &retry), ERR_LIMITED);
    /* ...and others are not limited. */
    assert_int_equal(check(f, "198.51.100.8", header, AUTH_VIEWER, &who, &retry), 0);
    free(header);
}

static json_t *token_row(struct store *st, const char *name)
{
    json_t *list = NULL, *row, *found = NULL;
    size_t i;

    assert_int_equal(store_token_list(st, &list), 0);
    json_array_foreach (list, i, row) {
        if (strcmp(json_string_value(json_object_get(row, "name")), name) == 0)
            found = json_incref(row);
    }
    json_decref(list);
    assert_non_null(found);
    return found;
}

static void test_last_use_is_written_once_a_minute(void **state)
{
    struct fixture *f = *state;
    struct auth_caller who;
    json_t *row;
    char *first;

    row = token_row(f->st, "ci");
    assert_true(json_is_null(json_object_get(row, "last_used_at")));
    json_decref(row);

    assert_int_equal(check_token(f, f->viewer, AUTH_VIEWER, &who), 0);
    row = token_row(f->st, "ci");
    first = xstrdup(json_string_value(json_object_get(row, "last_used_at")));
    json_decref(row);
    usleep(5000);
    assert_int_equal(check_token(f, f->viewer, AUTH_VIEWER, &who), 0);
    row = token_row(f->st, "ci");
    assert_string_equal(json_string_value(json_object_get(row, "last_used_at")), first);
    json_decref(row);

    /* store_token_touch() itself writes only when the last use is older. */
    assert_int_equal(store_token_touch(f->st, who.id, "2999-01-01T00:00:00.000Z", first), 0);
    assert_int_equal(
        store_token_touch(f->st, who.id, "2999-01-01T00:00:00.000Z", "2999-01-01T00:00:00.000Z"),
        1);
    free(first);
}

static void test_store_tokens(void **state)
{
    struct fixture *f = *state;
    json_t *list = NULL, *row;
    size_t i;

    assert_int_equal(store_token_count(f->st), 3);
    assert_int_equal(store_token_create(f->st, "ci", "admin", "00"), ERR_CONFLICT);
    assert_non_null(strstr(err_msg(), "token 'ci' exists"));
    assert_int_equal(store_token_revoke(f->st, "ci"), 0);
    assert_int_equal(store_token_create(f->st, "ci", "admin", "01"), ERR_CONFLICT);
    assert_int_equal(store_token_count(f->st), 3);

    /* A listing never carries the hash. */
    assert_int_equal(store_token_list(f->st, &list), 0);
    assert_int_equal(json_array_size(list), 3);
    assert_string_equal(json_string_value(json_object_get(json_array_get(list, 0), "name")), "ci");
    json_array_foreach (list, i, row) {
        assert_null(json_object_get(row, "hash"));
        assert_non_null(json_object_get(row, "role"));
        assert_non_null(json_object_get(row, "created_at"));
    }
    assert_false(json_is_null(json_object_get(json_array_get(list, 0), "revoked_at")));
    json_decref(list);
}

/* --- listen and settings ------------------------------------------------------ */

static void test_listen_check(void **state)
{
    (void)state;
    assert_int_equal(auth_listen_check("127.0.0.1:8080", 0), 0);
    assert_int_equal(auth_listen_check("127.1.2.3:8080", 0), 0);
    assert_int_equal(auth_listen_check("localhost:8080", 0), 0);
    assert_int_equal(auth_listen_check("0.0.0.0:8080", 0), ERR_INVALID);
    assert_non_null(strstr(err_msg(), "--insecure-listen"));
    assert_non_null(strstr(err_msg(), "allow_insecure_listen"));
    assert_int_equal(auth_listen_check("192.168.1.5:80", 0), ERR_INVALID);
    assert_int_equal(auth_listen_check("128.0.0.1:80", 0), ERR_INVALID);
    assert_int_equal(auth_listen_check("0.0.0.0:8080", 1), 0);
    assert_true(auth_listen_is_loopback("127.0.0.1:1"));
    assert_false(auth_listen_is_loopback("0.0.0.0:1"));
}

static void test_boolean_settings(void **state)
{
    struct config cfg;
    char path[] = "/tmp/packrun-auth-cfg-XXXXXX";
    int fd = mkstemp(path);

    (void)state;
    assert_true(fd >= 0);
    assert_int_equal(write(fd, "metrics_public: true\nallow_insecure_listen: no\n", 47), 47);
    close(fd);

    unsetenv("PACKRUN_METRICS_PUBLIC");
    unsetenv("PACKRUN_ALLOW_INSECURE_LISTEN");
    assert_int_equal(config_load(NULL, &cfg), 0);
    assert_int_equal(cfg.metrics_public, 0);
    assert_int_equal(cfg.allow_insecure_listen, 0);
    config_free(&cfg);

    assert_int_equal(config_load(path, &cfg), 0);
    assert_int_equal(cfg.metrics_public, 1);
    assert_int_equal(cfg.allow_insecure_listen, 0);
    config_free(&cfg);

    setenv("PACKRUN_ALLOW_INSECURE_LISTEN", "TRUE", 1);
    assert_int_equal(config_load(path, &cfg), 0);
    assert_int_equal(cfg.allow_insecure_listen, 1);
    {
        json_t *shown = config_to_json(&cfg);

        assert_true(json_is_true(json_object_get(shown, "allow_insecure_listen")));
        assert_true(json_is_true(json_object_get(shown, "metrics_public")));
        json_decref(shown);
    }
    config_free(&cfg);

    setenv("PACKRUN_ALLOW_INSECURE_LISTEN", "maybe", 1);
    assert_int_equal(config_load(path, &cfg), ERR_INVALID);
    assert_non_null(strstr(err_msg(), "true or false"));
    config_free(&cfg);
    unsetenv("PACKRUN_ALLOW_INSECURE_LISTEN");
    unlink(path);
}

/* --- cost ---------------------------------------------------------------------- */

/* What auth adds to a request: parse, hash, one indexed lookup, role
 * check. Printed for the record; the bound only catches a gross
 * regression (the target is well under 50 us). */
static void test_cost_per_request(void **state)
{
    struct fixture *f = *state;
    char *header = xasprintf("Bearer %s", f->oper);
    struct auth_caller who;
    int retry, n = 20000;
    int64_t t0;
    double us;

    /* More tokens, so that the lookup is not on a toy table. */
    for (int i = 0; i < 1000; i++) {
        char name[32];

        snprintf(name, sizeof(name), "bulk-%d", i);
        free(add_token(f->st, name, "viewer"));
    }
    for (int i = 0; i < 100; i++)
        assert_int_equal(check(f, "192.0.2.1", header, AUTH_OPERATOR, &who, &retry), 0);
    t0 = clock_mono_ns();
    for (int i = 0; i < n; i++)
        assert_int_equal(check(f, "192.0.2.1", header, AUTH_OPERATOR, &who, &retry), 0);
    us = (double)(clock_mono_ns() - t0) / 1000.0 / n;
    printf("auth_check: %.2f us per request (%d requests, 1003 tokens, SQLite)\n", us, n);
    assert_true(us < 1000);
    free(header);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_roles),
        cmocka_unit_test(test_token_names),
        cmocka_unit_test(test_token_new),
        cmocka_unit_test(test_parse_bearer),
        cmocka_unit_test(test_limiter),
        cmocka_unit_test(test_limiter_many_addresses),
        cmocka_unit_test_setup_teardown(test_public_route_needs_nothing, setup, teardown),
        cmocka_unit_test_setup_teardown(test_missing_and_unknown_tokens, setup, teardown),
        cmocka_unit_test_setup_teardown(test_roles_are_ordered, setup, teardown),
        cmocka_unit_test_setup_teardown(test_revocation_is_immediate, setup, teardown),
        cmocka_unit_test_setup_teardown(test_failed_attempts_are_limited, setup, teardown),
        cmocka_unit_test_setup_teardown(test_last_use_is_written_once_a_minute, setup, teardown),
        cmocka_unit_test_setup_teardown(test_store_tokens, setup, teardown),
        cmocka_unit_test(test_listen_check),
        cmocka_unit_test(test_boolean_settings),
        cmocka_unit_test_setup_teardown(test_cost_per_request, setup, teardown),
    };

    if (hash_init() < 0)
        return 1;
    log_setup(LOG_FORMAT_LOGFMT, LOG_ERROR);
    return cmocka_run_group_tests(tests, NULL, NULL);
}

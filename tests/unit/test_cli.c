#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cli/client.h"
#include "util/buf.h"
#include "util/err.h"

#define ARGC(a) ((int)(sizeof(a) / sizeof((a)[0])) - 1)

#define NO_CONFIG "/nonexistent/packrun-test/cli.yaml"

/* The environment every test starts from: no API, no token, no config file. */
static void reset_env(void)
{
    unsetenv("PACKRUN_API_URL");
    unsetenv("PACKRUN_TOKEN");
    setenv("PACKRUN_CLI_CONFIG", NO_CONFIG, 1);
}

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);

    if (!v)
        fail_msg("bad test JSON: %s: %s", text, e.text);
    return v;
}

static char *dump(const json_t *v)
{
    return json_dumps(v, JSON_COMPACT | JSON_ENCODE_ANY | JSON_SORT_KEYS);
}

static void assert_json(const json_t *v, const char *expected)
{
    char *s = dump(v);

    assert_non_null(s);
    assert_string_equal(s, expected);
    free(s);
}

/* ---- command recognition and arguments ---- */

static void test_is_client_command(void **state)
{
    char *worker_list[] = {"worker", "list", NULL};
    char *worker_json_list[] = {"worker", "--json", "--api", "http://x", "list", NULL};
    char *worker_daemon[] = {"worker", "--data", "x", NULL};
    char *worker_api[] = {"worker", "--api", "http://x", NULL};
    char *worker_bare[] = {"worker", NULL};
    char *pack[] = {"pack", "list", NULL};
    char *run[] = {"run", "a.b", NULL};
    char *up[] = {"up", NULL};
    char *server[] = {"server", "--data", "x", NULL};

    assert_int_equal(cli_is_client_command(ARGC(worker_list), worker_list), 1);
    assert_int_equal(cli_is_client_command(ARGC(worker_json_list), worker_json_list), 1);
    assert_int_equal(cli_is_client_command(ARGC(worker_daemon), worker_daemon), 0);
    assert_int_equal(cli_is_client_command(ARGC(worker_api), worker_api), 0);
    assert_int_equal(cli_is_client_command(ARGC(worker_bare), worker_bare), 0);
    assert_int_equal(cli_is_client_command(ARGC(pack), pack), 1);
    assert_int_equal(cli_is_client_command(ARGC(run), run), 1);
    assert_int_equal(cli_is_client_command(ARGC(up), up), 0);
    assert_int_equal(cli_is_client_command(ARGC(server), server), 0);
    assert_int_equal(cli_is_client_command(0, up), 0);
}

static void test_status_exit(void **state)
{
    assert_int_equal(cli_status_exit("succeeded"), CLI_EXIT_OK);
    assert_int_equal(cli_status_exit("failed"), CLI_EXIT_FAILED);
    assert_int_equal(cli_status_exit("timeout"), CLI_EXIT_TIMEOUT);
    assert_int_equal(cli_status_exit("canceled"), CLI_EXIT_CANCELED);
    assert_int_equal(cli_status_exit("abandoned"), CLI_EXIT_CANCELED);
    assert_int_equal(cli_status_exit("running"), -1);
    assert_int_equal(cli_status_exit("canceling"), -1);
    assert_int_equal(cli_status_exit(NULL), -1);
}

static void test_take_globals(void **state)
{
    char *argv[] = {"run",        "a.b",       "--json", "x=1",    "--api",
                    "http://h:1", "--token=t", "--",     "--json", NULL};
    struct cli_globals g;
    int argc = cli_take_globals(ARGC(argv), argv, &g);

    assert_int_equal(argc, 5);
    assert_string_equal(argv[0], "run");
    assert_string_equal(argv[1], "a.b");
    assert_string_equal(argv[2], "x=1");
    assert_string_equal(argv[3], "--");
    assert_string_equal(argv[4], "--json");
    assert_int_equal(g.json, 1);
    assert_int_equal(g.help, 0);
    assert_string_equal(g.api, "http://h:1");
    assert_string_equal(g.token, "t");
}

static void test_take_globals_errors(void **state)
{
    char *missing[] = {"pack", "list", "--api", NULL};
    char *help[] = {"pack", "-h", NULL};
    struct cli_globals g;

    assert_int_equal(cli_take_globals(ARGC(missing), missing, &g), ERR_INVALID);
    assert_string_equal(err_msg(), "option --api needs a value");
    assert_int_equal(cli_take_globals(ARGC(help), help, &g), 1);
    assert_int_equal(g.help, 1);
}

static void test_parse_args(void **state)
{
    char *argv[] = {"42", "-f", "--limit", "5", "--status=failed", "-", "--", "--x", NULL};
    struct cli_option opts[] = {{"--follow", "-f", 0, NULL},
                                {"--limit", NULL, 1, NULL},
                                {"--status", NULL, 1, NULL},
                                {"--pack", NULL, 1, NULL},
                                {NULL, NULL, 0, NULL}};
    const char *pos[ARGC(argv)];
    int npos;

    assert_int_equal(cli_parse_args(ARGC(argv), argv, opts, pos, &npos), 0);
    assert_string_equal(opts[0].value, "");
    assert_string_equal(opts[1].value, "5");
    assert_string_equal(opts[2].value, "failed");
    assert_null(opts[3].value);
    assert_int_equal(npos, 3);
    assert_string_equal(pos[0], "42");
    assert_string_equal(pos[1], "-");
    assert_string_equal(pos[2], "--x");
}

static void test_parse_args_errors(void **state)
{
    char *unknown[] = {"--bogus", NULL};
    char *missing[] = {"--limit", NULL};
    char *flag_value[] = {"--follow=yes", NULL};
    struct cli_option opts[] = {
        {"--follow", "-f", 0, NULL}, {"--limit", NULL, 1, NULL}, {NULL, NULL, 0, NULL}};
    const char *pos[2];
    int npos;

    assert_int_equal(cli_parse_args(1, unknown, opts, pos, &npos), ERR_INVALID);
    assert_string_equal(err_msg(), "unknown option '--bogus'");
    assert_int_equal(cli_parse_args(1, missing, opts, pos, &npos), ERR_INVALID);
    assert_string_equal(err_msg(), "option --limit needs a value");
    assert_int_equal(cli_parse_args(1, flag_value, opts, pos, &npos), ERR_INVALID);
    assert_string_equal(err_msg(), "option --follow takes no value");
}

static void test_is_id(void **state)
{
    assert_true(cli_is_id("1"));
    assert_true(cli_is_id("123456789012345678"));
    assert_false(cli_is_id("1234567890123456789"));
    assert_false(cli_is_id("0"));
    assert_false(cli_is_id("012"));
    assert_false(cli_is_id(""));
    assert_false(cli_is_id("12a"));
    assert_false(cli_is_id("-1"));
}

/* ---- configuration ---- */

static char *write_temp(const char *text)
{
    char *path = xstrdup("/tmp/packrun-test-cli-XXXXXX");
    int fd = mkstemp(path);

    assert_true(fd >= 0);
    assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    close(fd);
    return path;
}

static void test_config_resolve(void **state)
{
    char *path = write_temp("api_url: http://from-file:1\ntoken: \"0123\"\n");
    struct cli_config cfg;

    setenv("PACKRUN_CLI_CONFIG", path, 1);
    unsetenv("PACKRUN_API_URL");
    unsetenv("PACKRUN_TOKEN");

    assert_int_equal(cli_config_resolve(NULL, NULL, &cfg), 0);
    assert_string_equal(cfg.api, "http://from-file:1");
    assert_string_equal(cfg.token, "0123");
    cli_config_free(&cfg);

    setenv("PACKRUN_API_URL", "http://from-env:2", 1);
    setenv("PACKRUN_TOKEN", "envtok", 1);
    assert_int_equal(cli_config_resolve(NULL, NULL, &cfg), 0);
    assert_string_equal(cfg.api, "http://from-env:2");
    assert_string_equal(cfg.token, "envtok");
    cli_config_free(&cfg);

    assert_int_equal(cli_config_resolve("http://flag:3", "flagtok", &cfg), 0);
    assert_string_equal(cfg.api, "http://flag:3");
    assert_string_equal(cfg.token, "flagtok");
    cli_config_free(&cfg);

    reset_env();
    assert_int_equal(cli_config_resolve(NULL, NULL, &cfg), 0);
    assert_string_equal(cfg.api, CLI_DEFAULT_API);
    assert_null(cfg.token);
    cli_config_free(&cfg);

    reset_env();
    unlink(path);
    free(path);
}

static void test_config_bad(void **state)
{
    char *path = write_temp("token: 12345\n");
    struct cli_config cfg;
    char *expected =
        xasprintf("%s: key 'token': expected a string (put the value in quotes)", path);

    setenv("PACKRUN_CLI_CONFIG", path, 1);
    unsetenv("PACKRUN_TOKEN");
    assert_int_equal(cli_config_resolve("http://x", NULL, &cfg), ERR_INVALID);
    assert_string_equal(err_msg(), expected);
    cli_config_free(&cfg);

    /* Not read at all when flags give both. */
    assert_int_equal(cli_config_resolve("http://x", "t", &cfg), 0);
    cli_config_free(&cfg);

    reset_env();
    unlink(path);
    free(path);
    free(expected);
}

static void test_config_path(void **state)
{
    char *p;

    setenv("PACKRUN_CLI_CONFIG", "/etc/x.yaml", 1);
    p = cli_config_path();
    assert_string_equal(p, "/etc/x.yaml");
    free(p);

    unsetenv("PACKRUN_CLI_CONFIG");
    setenv("XDG_CONFIG_HOME", "/cfg", 1);
    p = cli_config_path();
    assert_string_equal(p, "/cfg/packrun/cli.yaml");
    free(p);

    unsetenv("XDG_CONFIG_HOME");
    setenv("HOME", "/home/ada", 1);
    p = cli_config_path();
    assert_string_equal(p, "/home/ada/.config/packrun/cli.yaml");
    free(p);
    reset_env();
}

/* ---- parameters ---- */

static const char *schema_text =
    "{\"count\": {\"type\": \"integer\"}, \"ratio\": {\"type\": \"number\"},"
    " \"verbose\": {\"type\": \"boolean\"}, \"hosts\": {\"type\": \"array\"},"
    " \"extra\": {\"type\": \"object\"}, \"name\": {\"type\": \"string\"},"
    " \"plain\": {}}";

/* Coerce text for name; returns the compact JSON (caller frees) or NULL on error. */
static char *coerce(const char *name, const char *text)
{
    json_t *schema = parse(schema_text);
    json_t *v = NULL;
    char *s = NULL;

    if (cli_coerce_param(schema, name, text, strlen(text), &v) == 0)
        s = dump(v);
    json_decref(v);
    json_decref(schema);
    return s;
}

static void expect_coerce(const char *name, const char *text, const char *expected)
{
    char *s = coerce(name, text);

    if (!s)
        fail_msg("%s=%s: %s", name, text, err_msg());
    assert_string_equal(s, expected);
    free(s);
}

static void expect_coerce_error(const char *name, const char *text, const char *message)
{
    char *s = coerce(name, text);

    if (s)
        fail_msg("%s=%s: expected an error, got %s", name, text, s);
    assert_string_equal(err_msg(), message);
}

static void test_coerce_types(void **state)
{
    expect_coerce("count", "42", "42");
    expect_coerce("count", "-7", "-7");
    expect_coerce("count", " 5\n", "5");
    expect_coerce("ratio", "0.5", "0.5");
    expect_coerce("ratio", "3", "3");
    expect_coerce("ratio", "1e3", "1000.0");
    expect_coerce("verbose", "true", "true");
    expect_coerce("verbose", "YES", "true");
    expect_coerce("verbose", "1", "true");
    expect_coerce("verbose", "no", "false");
    expect_coerce("verbose", "False", "false");
    expect_coerce("verbose", "0\n", "false");
    expect_coerce("hosts", "[\"a\", 2]", "[\"a\",2]");
    expect_coerce("extra", "{\"k\": [1]}", "{\"k\":[1]}");
    expect_coerce("name", "42", "\"42\"");
    expect_coerce("name", "", "\"\"");
    expect_coerce("plain", "true", "\"true\"");
    expect_coerce("unknown", "7", "\"7\"");
}

static void test_coerce_errors(void **state)
{
    expect_coerce_error("count", "abc", "parameter 'count': expected an integer, got 'abc'");
    expect_coerce_error("count", "1.5", "parameter 'count': expected an integer, got '1.5'");
    expect_coerce_error("count", "", "parameter 'count': expected an integer, got ''");
    expect_coerce_error("count", "99999999999999999999",
                        "parameter 'count': expected an integer in range, got "
                        "'99999999999999999999'");
    expect_coerce_error("ratio", "nan", "parameter 'ratio': expected a number, got 'nan'");
    expect_coerce_error("ratio", "0x10", "parameter 'ratio': expected a number, got '0x10'");
    expect_coerce_error("verbose", "maybe",
                        "parameter 'verbose': expected a boolean (true/false, yes/no, 1/0), "
                        "got 'maybe'");
    expect_coerce_error("hosts", "{\"a\": 1}",
                        "parameter 'hosts': expected a JSON array, got '{\"a\": 1}'");
    expect_coerce_error("extra", "nope",
                        "parameter 'extra': expected a JSON object: '[' or '{' expected near "
                        "'nope'");
    expect_coerce_error("name", "\xff", "parameter 'name': the value is not valid UTF-8");
    expect_coerce_error("count", "123456789012345678901234567890123456789012345678901234567890x",
                        "parameter 'count': expected an integer, got "
                        "'1234567890123456789012345678901234567890...'");
}

static void test_build_params(void **state)
{
    char *path = write_temp("{\"from\": \"file\"}\n");
    char *file_arg = xasprintf("extra=@%s", path);
    const char *argv[] = {"count=3", "name=a=b", "verbose=yes", "plain=@@at", file_arg};
    json_t *schema = parse(schema_text);
    json_t *params;

    assert_int_equal(cli_build_params(schema, 5, argv, &params), 0);
    assert_json(params, "{\"count\":3,\"extra\":{\"from\":\"file\"},\"name\":\"a=b\","
                        "\"plain\":\"@at\",\"verbose\":true}");
    json_decref(params);

    json_decref(schema);
    unlink(path);
    free(path);
    free(file_arg);
}

static void test_build_params_errors(void **state)
{
    const char *no_eq[] = {"count"};
    const char *empty_key[] = {"=3"};
    const char *twice[] = {"count=1", "count=2"};
    const char *no_file[] = {"name=@/nonexistent/file"};
    const char *bare_at[] = {"name=@"};
    json_t *schema = parse(schema_text);
    json_t *params;

    assert_int_equal(cli_build_params(schema, 1, no_eq, &params), ERR_INVALID);
    assert_null(params);
    assert_string_equal(err_msg(), "expected key=value, got 'count'");
    assert_int_equal(cli_build_params(schema, 1, empty_key, &params), ERR_INVALID);
    assert_string_equal(err_msg(), "expected key=value, got '=3'");
    assert_int_equal(cli_build_params(schema, 2, twice, &params), ERR_INVALID);
    assert_string_equal(err_msg(), "parameter 'count' is given twice");
    assert_int_equal(cli_build_params(schema, 1, no_file, &params), ERR_NOTFOUND);
    assert_string_equal(err_msg(),
                        "parameter 'name': open /nonexistent/file: No such file or directory");
    assert_int_equal(cli_build_params(schema, 1, bare_at, &params), ERR_INVALID);
    assert_string_equal(err_msg(), "parameter 'name': '@' needs a file name (or @- for stdin)");
    assert_int_equal(cli_build_params(NULL, 0, NULL, &params), 0);
    assert_json(params, "{}");
    json_decref(params);
    json_decref(schema);
}

/* ---- formatting ---- */

static void test_table(void **state)
{
    static const char *const headers[] = {"REF", "VERSION", "DESCRIPTION"};
    const char *row1[] = {"hello", "1.0.0", "Says hello"};
    const char *row2[] = {"a-much-longer-ref", NULL, "two\nlines"};
    const char *row3[] = {"ünï", "2", ""};
    struct buf out = BUF_INIT;
    struct cli_table t;

    cli_table_init(&t, 3, headers);
    cli_table_add(&t, row1);
    cli_table_add(&t, row2);
    cli_table_add(&t, row3);
    cli_table_render(&t, &out);
    assert_string_equal(buf_str(&out), "REF                VERSION  DESCRIPTION\n"
                                       "hello              1.0.0    Says hello\n"
                                       "a-much-longer-ref  -        two lines\n"
                                       "ünï                2\n");
    cli_table_free(&t);
    buf_free(&out);
}

static void test_table_limit_and_no_header(void **state)
{
    const char *row1[] = {"Ref:", "a very long description indeed"};
    const char *row2[] = {"Description:", "short"};
    struct buf out = BUF_INIT;
    struct cli_table t;

    cli_table_init(&t, 2, NULL);
    cli_table_limit(&t, 1, 10);
    cli_table_add(&t, row1);
    cli_table_add(&t, row2);
    cli_table_render(&t, &out);
    assert_string_equal(buf_str(&out), "Ref:          a very lo…\n"
                                       "Description:  short\n");
    cli_table_free(&t);
    buf_free(&out);
}

static void expect_cell(const char *json, const char *expected)
{
    json_t *v = json ? parse(json) : NULL;
    char *s = cli_json_cell(v);

    assert_string_equal(s, expected);
    free(s);
    json_decref(v);
}

static void test_json_cell(void **state)
{
    expect_cell(NULL, "-");
    expect_cell("null", "-");
    expect_cell("\"text\"", "text");
    expect_cell("42", "42");
    expect_cell("0.5", "0.5");
    expect_cell("true", "true");
    expect_cell("[]", "-");
    expect_cell("[\"python\", \"shell\"]", "python,shell");
    expect_cell("[{\"name\": \"python\", \"version\": \"3.11\"}, 3]", "python,3");
    expect_cell("{\"a\": 1}", "{\"a\":1}");
}

static void expect_duration(long long ms, const char *expected)
{
    char *s = cli_format_duration(ms);

    assert_string_equal(s, expected);
    free(s);
}

static void test_format_duration(void **state)
{
    expect_duration(-1, "-");
    expect_duration(0, "0ms");
    expect_duration(14, "14ms");
    expect_duration(999, "999ms");
    expect_duration(1000, "1.00s");
    expect_duration(2345, "2.34s");
    expect_duration(59999, "59.99s");
    expect_duration(60000, "1m00s");
    expect_duration(185000, "3m05s");
    expect_duration(3600000, "1h00m");
    expect_duration(7380000, "2h03m");
}

static void test_times(void **state)
{
    time_t t, now;
    char *s;

    setenv("TZ", "UTC", 1);
    tzset();
    assert_int_equal(cli_parse_time("1970-01-01T00:01:00.123Z", &t), 0);
    assert_int_equal((long long)t, 60);
    assert_int_equal(cli_parse_time("1970-01-01T01:00:00+01:00", &t), 0);
    assert_int_equal((long long)t, 0);
    assert_int_equal(cli_parse_time("1970-01-01 00:00:10", &t), 0);
    assert_int_equal((long long)t, 10);
    assert_int_equal(cli_parse_time("yesterday", &t), ERR_INVALID);
    assert_int_equal(cli_parse_time("1970-13-01T00:00:00Z", &t), ERR_INVALID);
    assert_int_equal(cli_parse_time("1970-01-01T00:00:00Zjunk", &t), ERR_INVALID);

    s = cli_format_time("2026-12-03T12:00:00.000Z");
    assert_string_equal(s, "2026-12-03 12:00:00");
    free(s);
    s = cli_format_time("garbage");
    assert_string_equal(s, "garbage");
    free(s);
    s = cli_format_time(NULL);
    assert_string_equal(s, "-");
    free(s);

    assert_int_equal(cli_parse_time("2026-12-03T12:00:00.000Z", &now), 0);
    s = cli_format_ago("2026-12-03T11:59:55.000Z", now);
    assert_string_equal(s, "5s ago");
    free(s);
    s = cli_format_ago("2026-12-03T11:57:00.000Z", now);
    assert_string_equal(s, "3m ago");
    free(s);
    s = cli_format_ago("2026-12-03T10:00:00.000Z", now);
    assert_string_equal(s, "2h ago");
    free(s);
    s = cli_format_ago("2026-11-29T12:00:00.000Z", now);
    assert_string_equal(s, "4d ago");
    free(s);
    s = cli_format_ago("2026-12-03T12:00:09.000Z", now);
    assert_string_equal(s, "0s ago");
    free(s);
    s = cli_format_ago(NULL, now);
    assert_string_equal(s, "-");
    free(s);
}

/* ---- a fake API: one thread answering canned responses in order ---- */

struct reply {
    int status;
    const char *type;
    const char *body;
};

struct fake {
    int lfd;
    int port;
    const struct reply *replies;
    size_t nreplies;
    struct buf requests; /* every request received, concatenated */
    int connections;
    pthread_t thread;
};

static void set_timeout(int fd)
{
    struct timeval tv = {5, 0};

    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof(tv));
}

/* Read one request into req; 0 when the client closed, -1 on error. */
static int read_request(int fd, struct buf *req)
{
    char chunk[4096];
    const char *end, *cl;
    size_t want = 0;
    ssize_t n;

    for (;;) {
        end = req->data ? strstr(req->data, "\r\n\r\n") : NULL;
        if (end) {
            cl = strcasestr(req->data, "content-length:");
            want =
                (size_t)(end + 4 - req->data) + (cl && cl < end ? strtoul(cl + 15, NULL, 10) : 0);
            if (req->len >= want)
                return 1;
        }
        n = read(fd, chunk, sizeof(chunk));
        if (n <= 0)
            return n == 0 ? 0 : -1;
        buf_add(req, chunk, (size_t)n);
    }
}

static void *fake_serve(void *arg)
{
    struct fake *f = arg;
    struct buf req = BUF_INIT;
    int fd = -1;
    size_t i = 0;

    while (i < f->nreplies) {
        const struct reply *r = &f->replies[i];
        char *head;
        int got;

        if (fd < 0) {
            fd = accept(f->lfd, NULL, NULL);
            if (fd < 0)
                break;
            set_timeout(fd);
            f->connections++;
        }
        buf_reset(&req);
        got = read_request(fd, &req);
        if (got <= 0) {
            close(fd);
            fd = -1;
            if (got < 0)
                break;
            continue;
        }
        buf_add(&f->requests, req.data, req.len);
        head = xasprintf("HTTP/1.1 %d X\r\nContent-Type: %s\r\nContent-Length: %zu\r\n\r\n",
                         r->status, r->type, strlen(r->body));
        if (write(fd, head, strlen(head)) < 0 || write(fd, r->body, strlen(r->body)) < 0)
            i = f->nreplies;
        free(head);
        i++;
    }
    if (fd >= 0)
        close(fd);
    buf_free(&req);
    return NULL;
}

static void fake_start(struct fake *f, const struct reply *replies, size_t n)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof(addr);

    memset(f, 0, sizeof(*f));
    f->replies = replies;
    f->nreplies = n;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    f->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(f->lfd >= 0);
    assert_int_equal(bind(f->lfd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(listen(f->lfd, 4), 0);
    assert_int_equal(getsockname(f->lfd, (struct sockaddr *)&addr, &len), 0);
    set_timeout(f->lfd);
    f->port = ntohs(addr.sin_port);
    assert_int_equal(pthread_create(&f->thread, NULL, fake_serve, f), 0);
}

static void fake_stop(struct fake *f)
{
    pthread_join(f->thread, NULL);
    close(f->lfd);
}

static char *fake_url(const struct fake *f)
{
    return xasprintf("http://127.0.0.1:%d/", f->port);
}

/* A port on which nothing listens. */
static int closed_port(void)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof(addr);
    int fd = socket(AF_INET, SOCK_STREAM, 0);

    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    assert_int_equal(bind(fd, (struct sockaddr *)&addr, sizeof(addr)), 0);
    assert_int_equal(getsockname(fd, (struct sockaddr *)&addr, &len), 0);
    close(fd);
    return ntohs(addr.sin_port);
}

/* ---- client ---- */

static void test_client_request(void **state)
{
    static const struct reply replies[] = {
        {200, "application/json", "{\"packs\": []}"},
        {201, "application/json", "{\"id\": 7}"},
        {400, "application/json",
         "{\"error\": {\"code\": \"invalid\", \"message\": \"bad pack\", "
         "\"problems\": [\"a\", \"b\"]}}"},
        {404, "text/html", "<h1>Not here</h1>\nmore"},
    };
    struct fake f;
    struct client *c;
    json_t *reply, *body = parse("{\"action\": \"a.b\"}");
    char *url;
    long status;

    fake_start(&f, replies, 4);
    url = fake_url(&f);
    assert_int_equal(client_open(url, "sekrit", &c), 0);
    url[strlen(url) - 1] = '\0';
    assert_string_equal(client_api(c), url);

    assert_int_equal(client_request(c, "GET", "/api/v1/packs", NULL, &status, &reply), 0);
    assert_int_equal(status, 200);
    assert_json(reply, "{\"packs\":[]}");
    json_decref(reply);

    assert_int_equal(client_request(c, "POST", "/api/v1/executions", body, &status, &reply), 0);
    assert_int_equal(status, 201);
    assert_json(reply, "{\"id\":7}");
    json_decref(reply);

    assert_int_equal(client_request(c, "POST", "/api/v1/packs/register", body, &status, &reply),
                     ERR_INVALID);
    assert_int_equal(status, 400);
    assert_string_equal(err_msg(), "bad pack");
    assert_json(json_object_get(json_object_get(reply, "error"), "problems"), "[\"a\",\"b\"]");
    json_decref(reply);

    assert_int_equal(client_request(c, "DELETE", "/api/v1/packs/x", NULL, &status, &reply),
                     ERR_NOTFOUND);
    assert_null(reply);
    assert_non_null(strstr(err_msg(), "/api/v1/packs/x answered HTTP 404: <h1>Not here</h1>"));

    client_free(c);
    fake_stop(&f);
    assert_int_equal(f.connections, 1); /* keep-alive */
    assert_non_null(strstr(buf_str(&f.requests), "GET /api/v1/packs HTTP/1.1\r\n"));
    assert_non_null(strstr(buf_str(&f.requests), "Authorization: Bearer sekrit\r\n"));
    assert_non_null(strstr(buf_str(&f.requests), "Content-Type: application/json\r\n"));
    assert_non_null(strstr(buf_str(&f.requests), "\r\n\r\n{\"action\":\"a.b\"}"));
    assert_non_null(strstr(buf_str(&f.requests), "DELETE /api/v1/packs/x HTTP/1.1\r\n"));
    buf_free(&f.requests);
    json_decref(body);
    free(url);
}

static void test_client_refused(void **state)
{
    char *url = xasprintf("http://127.0.0.1:%d", closed_port());
    char *expected = xasprintf("cannot reach the packrun API at %s: Connection refused "
                               "(is `packrun up` running?)",
                               url);
    struct client *c;
    json_t *reply;
    long status;

    assert_int_equal(client_open(url, NULL, &c), 0);
    assert_int_equal(client_request(c, "GET", "/health", NULL, &status, &reply), ERR_FAIL);
    assert_int_equal(status, 0);
    assert_null(reply);
    assert_string_equal(err_msg(), expected);
    client_free(c);
    free(url);
    free(expected);

    assert_int_equal(client_open("http://x", "bad\ntoken", &c), ERR_INVALID);
    assert_null(c);
}

static char *read_fd_all(int fd)
{
    struct buf b = BUF_INIT;
    char chunk[4096];
    ssize_t n;

    lseek(fd, 0, SEEK_SET);
    while ((n = read(fd, chunk, sizeof(chunk))) > 0)
        buf_add(&b, chunk, (size_t)n);
    buf_adds(&b, "");
    return buf_detach(&b);
}

static void test_client_stream(void **state)
{
    static const struct reply replies[] = {
        {200, "text/plain", "line 1\nline 2\n"},
        {404, "application/json",
         "{\"error\": {\"code\": \"not_found\", \"message\": \"no execution 9\"}}"},
    };
    char *path = write_temp("");
    int fd = open(path, O_RDWR);
    struct fake f;
    struct client *c;
    char *url, *text;

    fake_start(&f, replies, 2);
    url = fake_url(&f);
    assert_int_equal(client_open(url, NULL, &c), 0);
    assert_int_equal(client_stream(c, "/api/v1/executions/1/logs/stdout", fd), 0);
    assert_int_equal(client_stream(c, "/api/v1/executions/9/logs/stdout", fd), ERR_NOTFOUND);
    assert_string_equal(err_msg(), "no execution 9");
    text = read_fd_all(fd);
    assert_string_equal(text, "line 1\nline 2\n");

    client_free(c);
    fake_stop(&f);
    buf_free(&f.requests);
    close(fd);
    unlink(path);
    free(path);
    free(url);
    free(text);
}

/* ---- cli_main against the fake API ---- */

struct captured {
    int code;
    char *out;
    char *err;
};

/* Run cli_main with stdout and stderr sent to files. */
static struct captured run_cli(int argc, char **argv)
{
    char *out_path = write_temp(""), *err_path = write_temp("");
    int out_fd = open(out_path, O_RDWR), err_fd = open(err_path, O_RDWR);
    int saved_out = dup(1), saved_err = dup(2);
    struct captured c;

    fflush(stdout);
    dup2(out_fd, 1);
    dup2(err_fd, 2);
    c.code = cli_main(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    c.out = read_fd_all(out_fd);
    c.err = read_fd_all(err_fd);
    close(out_fd);
    close(err_fd);
    unlink(out_path);
    unlink(err_path);
    free(out_path);
    free(err_path);
    return c;
}

static void captured_free(struct captured *c)
{
    free(c->out);
    free(c->err);
}

static void test_main_run_succeeded(void **state)
{
    static const struct reply replies[] = {
        {200, "application/json",
         "{\"ref\": \"hello.count\", \"parameters\": {\"count\": {\"type\": \"integer\"}}}"},
        {201, "application/json", "{\"id\": 7, \"status\": \"requested\"}"},
        {200, "application/json",
         "{\"id\": 7, \"status\": \"succeeded\", \"result\": {\"data\": {\"n\": 3},"
         " \"stdout\": \"ignored\", \"stderr\": \"note\\n\", \"error\": null,"
         " \"environment\": {\"key\": \"k1\", \"status\": \"fallback\", \"error\": \"no venv\"}}}"},
    };
    struct fake f;
    struct captured c;
    char *url;

    fake_start(&f, replies, 3);
    url = fake_url(&f);
    {
        char *argv[] = {"run", "hello.count", "count=3", "--api", url, NULL};

        c = run_cli(ARGC(argv), argv);
    }
    fake_stop(&f);
    assert_int_equal(c.code, 0);
    assert_string_equal(c.out, "{\n  \"n\": 3\n}\n");
    assert_string_equal(c.err, "note\nwarning: environment k1: fallback: no venv\n");
    assert_non_null(strstr(buf_str(&f.requests), "GET /api/v1/actions/hello.count HTTP"));
    assert_non_null(
        strstr(buf_str(&f.requests), "{\"action\":\"hello.count\",\"parameters\":{\"count\":3}}"));
    assert_non_null(strstr(buf_str(&f.requests), "GET /api/v1/executions/7?wait=30 HTTP"));
    assert_int_equal(f.connections, 1);
    captured_free(&c);
    buf_free(&f.requests);
    free(url);
}

static void test_main_run_failed_and_timeout(void **state)
{
    static const struct reply replies[] = {
        {200, "application/json", "{\"ref\": \"a.b\", \"parameters\": {}}"},
        {201, "application/json",
         "{\"id\": 8, \"status\": \"timeout\", \"result\": {\"data\": null,"
         " \"stdout\": \"partial\\n\", \"stderr\": \"\", \"error\": \"timed out after 1s\"}}"},
        {200, "application/json", "{\"ref\": \"a.b\", \"parameters\": {}}"},
        {201, "application/json", "{\"id\": 9, \"status\": \"running\"}"},
        {200, "application/json",
         "{\"id\": 9, \"status\": \"failed\", \"result\": {\"data\": null, \"exit_code\": 3,"
         " \"stdout\": \"\", \"stderr\": \"boom\\n\", \"error\": null}}"},
    };
    struct fake f;
    struct captured c;
    char *url;

    fake_start(&f, replies, 5);
    url = fake_url(&f);
    {
        char *argv[] = {"run", "a.b", "--timeout", "1", "--api", url, NULL};

        c = run_cli(ARGC(argv), argv);
        assert_int_equal(c.code, CLI_EXIT_TIMEOUT);
        assert_string_equal(c.out, "partial\n");
        assert_string_equal(c.err, "execution 8 timeout: timed out after 1s\n");
        captured_free(&c);
    }
    {
        char *argv[] = {"run", "--api", url, "a.b", NULL};

        c = run_cli(ARGC(argv), argv);
        assert_int_equal(c.code, CLI_EXIT_FAILED);
        assert_string_equal(c.out, "");
        assert_string_equal(c.err, "boom\nexecution 9 failed: exit code 3\n");
        captured_free(&c);
    }
    fake_stop(&f);
    assert_non_null(strstr(buf_str(&f.requests), "\"timeout_seconds\":1"));
    buf_free(&f.requests);
    free(url);
}

static void test_main_run_bad_parameter(void **state)
{
    static const struct reply replies[] = {
        {200, "application/json",
         "{\"ref\": \"a.b\", \"parameters\": {\"count\": {\"type\": \"integer\"}}}"},
    };
    struct fake f;
    struct captured c;
    char *url;

    fake_start(&f, replies, 1);
    url = fake_url(&f);
    {
        char *argv[] = {"run", "a.b", "count=many", "--api", url, NULL};

        c = run_cli(ARGC(argv), argv);
    }
    fake_stop(&f);
    assert_int_equal(c.code, CLI_EXIT_USAGE);
    assert_string_equal(c.out, "");
    assert_string_equal(c.err, "error: parameter 'count': expected an integer, got 'many'\n");
    captured_free(&c);
    buf_free(&f.requests);
    free(url);
}

static void test_main_pack_install_problems(void **state)
{
    static const struct reply replies[] = {
        {400, "application/json",
         "{\"error\": {\"code\": \"invalid\", \"message\": \"pack.yaml: field 'ref': bad "
         "(and 1 more problem)\", \"problems\": [\"pack.yaml: field 'ref': bad\", "
         "\"actions/x.yaml: field 'entry_point': missing\"]}}"},
        {201, "application/json",
         "{\"ref\": \"hello\", \"version\": \"1.0.0\", \"actions\": [\"hello.a\", \"hello.b\", "
         "\"hello.c\"]}"},
    };
    struct fake f;
    struct captured c;
    char *url;

    fake_start(&f, replies, 2);
    url = fake_url(&f);
    {
        char *argv[] = {"pack", "install", "/tmp", "--path", "--api", url, NULL};

        c = run_cli(ARGC(argv), argv);
        assert_int_equal(c.code, CLI_EXIT_FAILED);
        assert_string_equal(c.err, "error: pack.yaml: field 'ref': bad (and 1 more problem)\n"
                                   "  pack.yaml: field 'ref': bad\n"
                                   "  actions/x.yaml: field 'entry_point': missing\n");
        captured_free(&c);
    }
    {
        char *argv[] = {"pack", "--api", url, "install", "--path", "/tmp", NULL};

        c = run_cli(ARGC(argv), argv);
        assert_int_equal(c.code, 0);
        assert_string_equal(c.out, "installed pack hello 1.0.0 (3 actions)\n");
        captured_free(&c);
    }
    fake_stop(&f);
    assert_non_null(strstr(buf_str(&f.requests), "{\"path\":\"/tmp\"}"));
    buf_free(&f.requests);
    free(url);
}

static void test_main_usage(void **state)
{
    char *unknown[] = {"bogus", NULL};
    char *no_verb[] = {"pack", NULL};
    char *bad_verb[] = {"execution", "explode", NULL};
    char *bad_id[] = {"execution", "show", "abc", "--api", "http://127.0.0.1:1", NULL};
    char *bad_option[] = {"pack", "list", "--wat", "--api", "http://127.0.0.1:1", NULL};
    char *help[] = {"run", "--help", NULL};
    struct captured c;

    c = run_cli(ARGC(unknown), unknown);
    assert_int_equal(c.code, CLI_EXIT_USAGE);
    assert_string_equal(c.err, "error: unknown command 'bogus'\n"
                               "Run `packrun help` for the list of commands.\n");
    captured_free(&c);

    c = run_cli(ARGC(no_verb), no_verb);
    assert_int_equal(c.code, CLI_EXIT_USAGE);
    assert_non_null(strstr(c.err, "error: pack: missing command\nusage:\n"));
    assert_non_null(strstr(c.err, "  packrun pack install DIR"));
    captured_free(&c);

    c = run_cli(ARGC(bad_verb), bad_verb);
    assert_int_equal(c.code, CLI_EXIT_USAGE);
    assert_non_null(strstr(c.err, "error: execution: unknown command 'explode'\n"));
    captured_free(&c);

    c = run_cli(ARGC(bad_id), bad_id);
    assert_int_equal(c.code, CLI_EXIT_USAGE);
    assert_string_equal(c.err, "error: execution show: 'abc' is not an execution id\n"
                               "usage: packrun execution show ID [--json]\n");
    captured_free(&c);

    c = run_cli(ARGC(bad_option), bad_option);
    assert_int_equal(c.code, CLI_EXIT_USAGE);
    assert_string_equal(c.err, "error: pack list: unknown option '--wat'\n"
                               "usage: packrun pack list [--json]\n");
    captured_free(&c);

    c = run_cli(ARGC(help), help);
    assert_int_equal(c.code, 0);
    assert_non_null(strstr(c.out, "usage: packrun run ACTION [key=value ...]"));
    captured_free(&c);
}

static void test_main_unreachable(void **state)
{
    char *url = xasprintf("http://127.0.0.1:%d", closed_port());
    char *list[] = {"worker", "list", "--api", url, NULL};
    char *run[] = {"run", "a.b", "--api", url, NULL};
    struct captured c;

    c = run_cli(ARGC(list), list);
    assert_int_equal(c.code, CLI_EXIT_FAILED);
    assert_non_null(strstr(c.err, "Connection refused (is `packrun up` running?)\n"));
    captured_free(&c);

    c = run_cli(ARGC(run), run);
    assert_int_equal(c.code, CLI_EXIT_USAGE);
    captured_free(&c);
    free(url);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_is_client_command),
        cmocka_unit_test(test_status_exit),
        cmocka_unit_test(test_take_globals),
        cmocka_unit_test(test_take_globals_errors),
        cmocka_unit_test(test_parse_args),
        cmocka_unit_test(test_parse_args_errors),
        cmocka_unit_test(test_is_id),
        cmocka_unit_test(test_config_resolve),
        cmocka_unit_test(test_config_bad),
        cmocka_unit_test(test_config_path),
        cmocka_unit_test(test_coerce_types),
        cmocka_unit_test(test_coerce_errors),
        cmocka_unit_test(test_build_params),
        cmocka_unit_test(test_build_params_errors),
        cmocka_unit_test(test_table),
        cmocka_unit_test(test_table_limit_and_no_header),
        cmocka_unit_test(test_json_cell),
        cmocka_unit_test(test_format_duration),
        cmocka_unit_test(test_times),
        cmocka_unit_test(test_client_request),
        cmocka_unit_test(test_client_refused),
        cmocka_unit_test(test_client_stream),
        cmocka_unit_test(test_main_run_succeeded),
        cmocka_unit_test(test_main_run_failed_and_timeout),
        cmocka_unit_test(test_main_run_bad_parameter),
        cmocka_unit_test(test_main_pack_install_problems),
        cmocka_unit_test(test_main_usage),
        cmocka_unit_test(test_main_unreachable),
    };

    reset_env();
    return cmocka_run_group_tests(tests, NULL, NULL);
}

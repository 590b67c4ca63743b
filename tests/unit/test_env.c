#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "env/env.h"
#include "runner/proc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hash.h"

/*
 * Everything runs offline: pip finds packages only in a wheelhouse made
 * here (Debian's pip, setuptools and wheel wheels, when present, and a
 * tiny wheel written by hand), through PIP_NO_INDEX and PIP_FIND_LINKS.
 */

static char *base;       /* the test's temporary folder */
static char *wheelhouse; /* base/wheels */
static char *root;       /* base/envs: the ENVS folder */
static struct runtime py;
static int counter;

/* A tiny wheel: packrun_tiny 0.1, VALUE = 42. */
static const char *make_wheel_py =
    "import base64, hashlib, sys, zipfile\n"
    "files = {\n"
    "  'packrun_tiny/__init__.py': 'VALUE = 42\\n',\n"
    "  'packrun_tiny-0.1.dist-info/METADATA':\n"
    "    'Metadata-Version: 2.1\\nName: packrun-tiny\\nVersion: 0.1\\n',\n"
    "  'packrun_tiny-0.1.dist-info/WHEEL':\n"
    "    'Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n',\n"
    "}\n"
    "record = []\n"
    "for name, text in files.items():\n"
    "    digest = hashlib.sha256(text.encode()).digest()\n"
    "    b64 = base64.urlsafe_b64encode(digest).rstrip(b'=').decode()\n"
    "    record.append(f'{name},sha256={b64},{len(text)}')\n"
    "record.append('packrun_tiny-0.1.dist-info/RECORD,,')\n"
    "files['packrun_tiny-0.1.dist-info/RECORD'] = '\\n'.join(record) + '\\n'\n"
    "with zipfile.ZipFile(sys.argv[1] + '/packrun_tiny-0.1-py3-none-any.whl', 'w') as z:\n"
    "    for name, text in files.items():\n"
    "        z.writestr(name, text)\n";

static void write_file(const char *path, const char *text)
{
    char *parent = xstrdup(path);
    FILE *f;

    *strrchr(parent, '/') = '\0';
    assert_int_equal(fs_mkdirs(parent, 0755), 0);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    free(parent);
}

static char *read_text(const char *path)
{
    struct buf b = BUF_INIT;

    if (fs_read_file(path, 16 << 20, &b) < 0)
        return NULL;
    buf_adds(&b, "");
    return buf_detach(&b);
}

/* Run argv; return its exit code. */
static int run(const char *const *argv, const char *const *envp)
{
    extern char **environ;
    struct proc_opts o = {
        .argv = argv,
        .envp = envp ? envp : (const char *const *)environ,
        .timeout_ms = 60000,
        .grace_ms = 1000,
        .cancel_fd = -1,
    };
    struct proc_result r;
    int rc = proc_run(&o, &r);

    if (rc == 0)
        rc = r.exit_code;
    if (rc != 0)
        print_message("%s: exit %d: %s\n", argv[0], rc, buf_str(&r.err_tail));
    proc_result_free(&r);
    return rc;
}

/* A new pack folder holding a requirements.txt with text; caller frees. */
static char *new_pack(const char *manifest_name, const char *text)
{
    char *dir = xasprintf("%s/packs/p%d", base, ++counter);
    char *path = xasprintf("%s/%s", dir, manifest_name);

    write_file(path, text);
    free(dir);
    return path;
}

static char *pack_of(const char *manifest)
{
    char *dir = xstrdup(manifest);

    *strrchr(dir, '/') = '\0';
    return dir;
}

static int group_setup(void **state)
{
    const char *tmp = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *script;

    signal(SIGPIPE, SIG_IGN);
    assert_int_equal(hash_init(), 0);
    base = xasprintf("%s/test_env.XXXXXX", tmp);
    assert_non_null(mkdtemp(base));
    wheelhouse = fs_join(base, "wheels");
    root = fs_join(base, "envs");
    assert_int_equal(fs_mkdirs(wheelhouse, 0755), 0);

    runtime_resolve(RUNTIME_PYTHON, NULL, NULL, &py);
    if (!py.path)
        return 0;

    script = fs_join(base, "make_wheel.py");
    write_file(script, make_wheel_py);
    {
        const char *argv[] = {py.path, script, wheelhouse, NULL};

        assert_int_equal(run(argv, NULL), 0);
    }
    free(script);
    if (fs_exists("/usr/share/python-wheels")) {
        const char *argv[] = {"/bin/sh", "-c", "cp /usr/share/python-wheels/*.whl \"$0\"",
                              wheelhouse, NULL};

        (void)run(argv, NULL);
    }

    setenv("PIP_NO_INDEX", "1", 1);
    setenv("PIP_FIND_LINKS", wheelhouse, 1);
    setenv("PIP_CONFIG_FILE", "/dev/null", 1);
    unsetenv("PIP_INDEX_URL");
    unsetenv("PIP_EXTRA_INDEX_URL");
    return 0;
}

static int group_teardown(void **state)
{
    fs_rmtree(base);
    free(base);
    free(wheelhouse);
    free(root);
    runtime_free(&py);
    return 0;
}

static void need_python(void)
{
    if (!py.path)
        skip();
}

static void test_key(void **state)
{
    char *a = new_pack("requirements.txt", "packrun-tiny\n");
    char *same = new_pack("requirements.txt", "packrun-tiny\n");
    char *other = new_pack("requirements.txt", "packrun-tiny==0.1\n");
    struct runtime rt = {
        .kind = RUNTIME_PYTHON, .name = "python", .path = "/usr/bin/python3", .version = "3.11.2"};
    struct env_spec spec = {.rt = &rt, .manifest = a};
    char k1[65], k2[65], k3[65];

    assert_int_equal(env_key(&spec, k1), 0);
    assert_int_equal(strlen(k1), 64);
    assert_int_equal(env_key(&spec, k2), 0);
    assert_string_equal(k1, k2);

    /* Two packs with the same requirements share the key. */
    spec.manifest = same;
    assert_int_equal(env_key(&spec, k2), 0);
    assert_string_equal(k1, k2);

    spec.manifest = other;
    assert_int_equal(env_key(&spec, k2), 0);
    assert_string_not_equal(k1, k2);

    /* The manifest changed in place: a new key, even within one process. */
    spec.manifest = a;
    write_file(a, "packrun-tiny\nsix\n");
    assert_int_equal(env_key(&spec, k3), 0);
    assert_string_not_equal(k1, k3);
    write_file(a, "packrun-tiny\n");
    assert_int_equal(env_key(&spec, k3), 0);
    assert_string_equal(k1, k3);

    spec.options = "--pre";
    assert_int_equal(env_key(&spec, k2), 0);
    assert_string_not_equal(k1, k2);
    spec.options = NULL;

    rt.version = "3.12.0";
    assert_int_equal(env_key(&spec, k2), 0);
    assert_string_not_equal(k1, k2);
    rt.version = "3.11.2";
    rt.path = "/opt/python/bin/python3";
    assert_int_equal(env_key(&spec, k2), 0);
    assert_string_not_equal(k1, k2);
    rt.path = "/usr/bin/python3";

    setenv("PIP_INDEX_URL", "https://mirror.example/simple", 1);
    assert_int_equal(env_key(&spec, k2), 0);
    unsetenv("PIP_INDEX_URL");
    assert_string_not_equal(k1, k2);

    /* Local references tie the environment to its pack folder. */
    {
        char *l1 = new_pack("requirements.txt", "./vendor/thing\n");
        char *l2 = new_pack("requirements.txt", "./vendor/thing\n");

        spec.manifest = l1;
        assert_int_equal(env_key(&spec, k2), 0);
        spec.manifest = l2;
        assert_int_equal(env_key(&spec, k3), 0);
        assert_string_not_equal(k2, k3);
        free(l1);
        free(l2);
    }

    /* No interpreter, no manifest: no key. */
    rt.path = NULL;
    rt.error = "python3: not found in PATH";
    assert_int_equal(env_key(&spec, k2), ERR_INVALID);
    assert_non_null(strstr(err_msg(), "not found in PATH"));
    rt.path = "/usr/bin/python3";
    spec.manifest = "/nonexistent/requirements.txt";
    assert_int_equal(env_key(&spec, k2), ERR_NOTFOUND);

    free(a);
    free(same);
    free(other);
}

static void test_ensure_python(void **state)
{
    char *manifest = new_pack("requirements.txt", "# the tiny one\npackrun-tiny\n");
    char *pack = pack_of(manifest);
    struct env_spec spec = {.rt = &py, .manifest = manifest, .pack_dir = pack};
    struct env_result res, again;
    char *ready_path, *ready_text;
    json_t *list = NULL, *shown = NULL;
    int64_t t0;
    double avg_us;
    int fd;

    need_python();
    assert_int_equal(env_ensure(root, &spec, &res), 0);
    assert_int_equal(res.created, 1);
    assert_null(res.error);
    assert_true(res.seconds > 0);
    assert_non_null(res.interpreter);
    assert_true(res.dir[0] == '/');
    print_message("cold build: %.2f s\n", res.seconds);

    {
        const char *argv[] = {res.interpreter, "-c",
                              "import packrun_tiny, sys; sys.exit(packrun_tiny.VALUE != 42)", NULL};

        assert_int_equal(run(argv, NULL), 0);
    }

    ready_path = fs_join(res.dir, ".ready");
    ready_text = read_text(ready_path);
    assert_non_null(ready_text);
    assert_non_null(strstr(ready_text, "\"packrun-tiny\""));
    assert_non_null(strstr(ready_text, res.key));
    assert_non_null(strstr(ready_text, "\"built_at\""));

    /* The fast path: already there, no build, well under a millisecond. */
    assert_int_equal(env_ensure(root, &spec, &again), 0);
    assert_int_equal(again.created, 0);
    assert_string_equal(again.key, res.key);
    assert_string_equal(again.dir, res.dir);
    assert_string_equal(again.interpreter, res.interpreter);
    env_result_free(&again);

    t0 = clock_mono_ns();
    for (int i = 0; i < 1000; i++) {
        assert_int_equal(env_ensure(root, &spec, &again), 0);
        env_result_free(&again);
    }
    avg_us = (double)(clock_mono_ns() - t0) / 1000.0 / 1000.0;
    print_message("warm ensure: %.1f us on average\n", avg_us);
    assert_true(avg_us < 1000.0);

    /* Hold and release. */
    fd = env_hold(res.dir);
    assert_true(fd >= 0);
    env_release(fd);

    /* Listed and shown, by a prefix of the key. */
    assert_int_equal(env_list(root, &list), 0);
    {
        size_t i;
        json_t *e, *found = NULL;

        json_array_foreach (list, i, e) {
            if (strcmp(json_string_value(json_object_get(e, "key")), res.key) == 0)
                found = e;
        }
        assert_non_null(found);
        assert_string_equal(json_string_value(json_object_get(found, "status")), "ready");
        assert_true(json_integer_value(json_object_get(found, "size_bytes")) > 0);
        assert_string_equal(json_string_value(json_object_get(found, "runtime")), "python");
    }
    {
        char prefix[9];

        memcpy(prefix, res.key, 8);
        prefix[8] = '\0';
        assert_int_equal(env_show(root, prefix, &shown), 0);
        assert_string_equal(json_string_value(json_object_get(shown, "key")), res.key);
        assert_non_null(strstr(json_string_value(json_object_get(shown, "log")), "pip"));
        assert_int_equal(env_show(root, "abc", &shown), ERR_INVALID);
        assert_int_equal(env_show(root, "ffffffffffff", &shown), ERR_NOTFOUND);
    }

    json_decref(list);
    json_decref(shown);
    free(ready_path);
    free(ready_text);
    env_result_free(&res);
    free(manifest);
    free(pack);
}

static void test_empty_requirements(void **state)
{
    char *manifest = new_pack("requirements.txt", "# nothing yet\n\n");
    struct env_spec spec = {.rt = &py, .manifest = manifest};
    struct env_result res;

    need_python();
    assert_int_equal(env_ensure(root, &spec, &res), 0);
    assert_int_equal(res.created, 1);
    {
        const char *argv[] = {res.interpreter, "-c",
                              "import sys; sys.exit(sys.prefix == sys.base_prefix)", NULL};

        assert_int_equal(run(argv, NULL), 0);
    }
    env_result_free(&res);
    free(manifest);
}

static void test_crash_leftover(void **state)
{
    char *manifest = new_pack("requirements.txt", "packrun-tiny\n# crash\n");
    struct env_spec spec = {.rt = &py, .manifest = manifest};
    struct env_result res;
    char key[65];
    char *dir, *junk, *log_path, *log_text;

    need_python();
    assert_int_equal(env_key(&spec, key), 0);
    dir = xasprintf("%s/python/%s", root, key);
    junk = xasprintf("%s/lib/junk.txt", dir);
    write_file(junk, "left by a build that was killed\n");

    assert_int_equal(env_ensure(root, &spec, &res), 0);
    assert_int_equal(res.created, 1);
    assert_false(fs_exists(junk));
    assert_true(fs_exists(res.interpreter));

    log_path = xasprintf("%s.log", dir);
    log_text = read_text(log_path);
    assert_non_null(log_text);
    assert_non_null(strstr(log_text, "incomplete folder"));

    env_result_free(&res);
    free(manifest);
    free(dir);
    free(junk);
    free(log_path);
    free(log_text);
}

static void test_failed_build(void **state)
{
    char *manifest = new_pack("requirements.txt", "packrun-absent-package\n");
    struct env_spec spec = {.rt = &py, .manifest = manifest};
    struct env_result res;
    json_t *list = NULL;
    char *log_path;

    need_python();
    assert_int_equal(env_ensure(root, &spec, &res), ERR_FAIL);
    assert_int_equal(res.created, 0);
    assert_int_equal(strlen(res.key), 64);
    assert_non_null(res.error);
    assert_non_null(strstr(res.error, "pip install failed (exit 1)"));
    assert_non_null(strstr(res.error, "packrun-absent-package"));
    assert_true(strlen(res.error) < ENV_LOG_TAIL + 200);
    assert_non_null(strstr(err_msg(), "pip install failed"));
    assert_false(fs_exists(res.dir));
    log_path = xasprintf("%s.log", res.dir);
    assert_true(fs_exists(log_path));

    assert_int_equal(env_list(root, &list), 0);
    {
        size_t i;
        json_t *e, *found = NULL;

        json_array_foreach (list, i, e) {
            if (strcmp(json_string_value(json_object_get(e, "key")), res.key) == 0)
                found = e;
        }
        assert_non_null(found);
        assert_string_equal(json_string_value(json_object_get(found, "status")), "failed");
        assert_string_equal(json_string_value(json_object_get(found, "error")),
                            "pip install failed (exit 1)");
    }

    json_decref(list);
    free(log_path);
    env_result_free(&res);
    free(manifest);
}

#define RACERS 8

struct racer {
    const struct env_spec *spec;
    pthread_barrier_t *start;
    int rc;
    int created;
    char *error;
    char msg[256];
};

static void *race(void *arg)
{
    struct racer *r = arg;
    struct env_result res;

    pthread_barrier_wait(r->start);
    r->rc = env_ensure(root, r->spec, &res);
    r->created = res.created;
    r->error = res.error ? xstrdup(res.error) : NULL;
    snprintf(r->msg, sizeof(r->msg), "%s", err_msg());
    env_result_free(&res);
    return NULL;
}

static void run_race(const struct env_spec *spec, struct racer *racers)
{
    pthread_t threads[RACERS];
    pthread_barrier_t start;

    pthread_barrier_init(&start, NULL, RACERS);
    for (int i = 0; i < RACERS; i++) {
        racers[i] = (struct racer){.spec = spec, .start = &start};
        assert_int_equal(pthread_create(&threads[i], NULL, race, &racers[i]), 0);
    }
    for (int i = 0; i < RACERS; i++)
        pthread_join(threads[i], NULL);
    pthread_barrier_destroy(&start);
}

static void test_race(void **state)
{
    char *manifest = new_pack("requirements.txt", "packrun-tiny\n# race\n");
    struct env_spec spec = {.rt = &py, .manifest = manifest};
    struct racer racers[RACERS];
    int created = 0;

    need_python();
    run_race(&spec, racers);
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(racers[i].rc, 0);
        created += racers[i].created;
        free(racers[i].error);
    }
    assert_int_equal(created, 1);
    free(manifest);
}

/* Racers for an environment that cannot be built: one build fails, and
 * those that waited for it report its failure instead of trying again. */
static void test_race_failing(void **state)
{
    char *manifest = new_pack("requirements.txt", "packrun-absent-package\n# race\n");
    struct env_spec spec = {.rt = &py, .manifest = manifest};
    struct racer racers[RACERS];
    int waited = 0;

    need_python();
    run_race(&spec, racers);
    for (int i = 0; i < RACERS; i++) {
        assert_int_equal(racers[i].rc, ERR_FAIL);
        assert_non_null(racers[i].error);
        assert_non_null(strstr(racers[i].error, "pip install failed (exit 1)"));
        assert_non_null(strstr(racers[i].error, "packrun-absent-package"));
        if (strstr(racers[i].msg, "waited for"))
            waited++;
        free(racers[i].error);
    }
    assert_int_equal(waited, RACERS - 1);
    free(manifest);
}

/* The same race between processes, as between workers. */
static void test_race_processes(void **state)
{
    char *manifest = new_pack("requirements.txt", "packrun-tiny\n# processes\n");
    struct env_spec spec = {.rt = &py, .manifest = manifest};
    pid_t pids[4];
    int created = 0;

    need_python();
    for (int i = 0; i < 4; i++) {
        pids[i] = fork();
        assert_true(pids[i] >= 0);
        if (pids[i] == 0) {
            struct env_result res;
            int rc = env_ensure(root, &spec, &res);

            _exit(rc < 0 ? 1 : res.created ? 2 : 0);
        }
    }
    for (int i = 0; i < 4; i++) {
        int status;

        assert_int_equal(waitpid(pids[i], &status, 0), pids[i]);
        assert_true(WIFEXITED(status));
        assert_int_not_equal(WEXITSTATUS(status), 1);
        created += WEXITSTATUS(status) == 2;
    }
    assert_int_equal(created, 1);
    free(manifest);
}

/* With uv in PATH, uv builds: a stand-in records how it was called and
 * does the work with venv and pip. */
static const char *uv_shim =
    "#!/bin/sh\n"
    "echo \"uv $*\" >> \"$UV_SHIM_LOG\"\n"
    "if [ \"$1 $2\" = \"venv --python\" ]; then\n"
    "    exec \"$3\" -m venv --without-pip \"$4\"\n"
    "fi\n"
    "if [ \"$1 $2 $3\" = \"pip install --python\" ]; then\n"
    "    target=$4; shift 4\n"
    "    exec \"$UV_SHIM_PYTHON\" -m pip --python \"$target\" install \"$@\"\n"
    "fi\n"
    "exit 3\n";

static void test_uv(void **state)
{
    char *bin = fs_join(base, "uvbin");
    char *uv = fs_join(bin, "uv");
    char *uv_log = fs_join(base, "uv.log");
    char *old_path = xstrdup(getenv("PATH"));
    char *path = xasprintf("%s:%s", bin, old_path);
    char *manifest = new_pack("requirements.txt", "packrun-tiny\n# uv\n");
    struct env_spec spec = {.rt = &py, .manifest = manifest};
    struct env_result res;
    char *calls, *find_links;

    need_python();
    write_file(uv, uv_shim);
    assert_int_equal(chmod(uv, 0755), 0);
    setenv("PATH", path, 1);
    setenv("UV_SHIM_LOG", uv_log, 1);
    setenv("UV_SHIM_PYTHON", py.path, 1);

    assert_int_equal(env_ensure(root, &spec, &res), 0);
    setenv("PATH", old_path, 1);
    assert_int_equal(res.created, 1);
    {
        const char *argv[] = {res.interpreter, "-c", "import packrun_tiny", NULL};

        assert_int_equal(run(argv, NULL), 0);
    }

    /* pip's settings from the environment reach uv as flags. */
    calls = read_text(uv_log);
    assert_non_null(calls);
    assert_non_null(strstr(calls, "uv venv --python"));
    assert_non_null(strstr(calls, "uv pip install --python"));
    assert_non_null(strstr(calls, "--no-index"));
    find_links = xasprintf("--find-links %s", wheelhouse);
    assert_non_null(strstr(calls, find_links));

    env_result_free(&res);
    free(bin);
    free(uv);
    free(uv_log);
    free(old_path);
    free(path);
    free(manifest);
    free(calls);
    free(find_links);
}

/* A base interpreter without pip: a full venv, its own pip installs. */
static void test_base_without_pip(void **state)
{
    char *nopip = fs_join(base, "nopip");
    char *manifest = new_pack("requirements.txt", "packrun-tiny\n# no pip\n");
    struct runtime bare = {.kind = RUNTIME_PYTHON, .name = "python", .version = py.version};
    struct env_spec spec = {.rt = &bare, .manifest = manifest};
    struct env_result res;
    char *log_path, *log_text;

    need_python();
    {
        const char *argv[] = {py.path, "-m", "venv", "--without-pip", nopip, NULL};

        assert_int_equal(run(argv, NULL), 0);
    }
    bare.path = fs_join(nopip, "bin/python");

    assert_int_equal(env_ensure(root, &spec, &res), 0);
    assert_int_equal(res.created, 1);
    {
        const char *argv[] = {res.interpreter, "-c", "import packrun_tiny", NULL};

        assert_int_equal(run(argv, NULL), 0);
    }
    log_path = xasprintf("%s.log", res.dir);
    log_text = read_text(log_path);
    assert_non_null(strstr(log_text, "installer: venv-pip"));

    env_result_free(&res);
    free(bare.path);
    free(nopip);
    free(manifest);
    free(log_path);
    free(log_text);
}

static void ensure_ok(const char *text, struct env_result *res)
{
    char *manifest = new_pack("requirements.txt", text);
    struct env_spec spec = {.rt = &py, .manifest = manifest};

    assert_int_equal(env_ensure(root, &spec, res), 0);
    free(manifest);
}

static int contains(const json_t *arr, const char *key)
{
    size_t i;
    json_t *v;

    json_array_foreach (arr, i, v) {
        if (strcmp(json_string_value(v), key) == 0)
            return 1;
    }
    return 0;
}

static void test_gc_and_remove(void **state)
{
    struct env_result kept, held, loose;
    json_t *keep, *removed = NULL, *list = NULL;
    int fd;

    need_python();
    ensure_ok("# gc: kept\n", &kept);
    ensure_ok("# gc: held\n", &held);
    ensure_ok("# gc: loose\n", &loose);

    fd = env_hold(held.dir);
    assert_true(fd >= 0);
    keep = json_pack("[s]", kept.key);
    assert_int_equal(env_gc(root, keep, &removed), 0);
    assert_true(contains(removed, loose.key));
    assert_false(contains(removed, kept.key));
    assert_false(contains(removed, held.key));
    assert_false(fs_exists(loose.dir));
    assert_true(fs_exists(kept.dir));
    assert_true(fs_exists(held.dir));

    /* Held: neither gc nor remove touch it. */
    assert_int_equal(env_list(root, &list), 0);
    {
        size_t i;
        json_t *e;

        json_array_foreach (list, i, e) {
            if (strcmp(json_string_value(json_object_get(e, "key")), held.key) == 0)
                assert_true(json_is_true(json_object_get(e, "in_use")));
        }
    }
    assert_int_equal(env_remove(root, held.key), ERR_CONFLICT);
    assert_true(fs_exists(held.dir));
    env_release(fd);
    assert_int_equal(env_remove(root, held.key), 0);
    assert_false(fs_exists(held.dir));
    assert_int_equal(env_remove(root, held.key), ERR_NOTFOUND);

    /* Removed under an execution's feet: hold says so. */
    assert_true(env_hold(held.dir) == ERR_NOTFOUND);

    json_decref(keep);
    json_decref(removed);
    json_decref(list);
    env_result_free(&kept);
    env_result_free(&held);
    env_result_free(&loose);
}

static void test_node(void **state)
{
    struct runtime node;
    char *npm = NULL;
    char *pack = xasprintf("%s/packs/node%d", base, ++counter);
    char *manifest = fs_join(pack, "package.json");
    char *tiny_pkg = xasprintf("%s/lib/tiny/package.json", pack);
    char *tiny_js = xasprintf("%s/lib/tiny/index.js", pack);
    struct env_spec spec = {.manifest = manifest, .pack_dir = pack};
    struct env_result res;
    char *modules, *node_path;

    runtime_resolve(RUNTIME_NODE, NULL, NULL, &node);
    if (!node.path || runtime_which("npm", &npm) < 0) {
        runtime_free(&node);
        skip();
    }
    write_file(tiny_pkg, "{\"name\": \"tiny\", \"version\": \"1.2.3\", \"main\": \"index.js\"}\n");
    write_file(tiny_js, "module.exports = 'tiny ok';\n");
    write_file(manifest, "{\"name\": \"p\", \"version\": \"1.0.0\",\n"
                         " \"dependencies\": {\"tiny\": \"file:lib/tiny\"}}\n");
    spec.rt = &node;

    assert_int_equal(env_ensure(root, &spec, &res), 0);
    assert_int_equal(res.created, 1);
    assert_null(res.interpreter);
    modules = fs_join(res.dir, "node_modules/tiny");
    assert_true(fs_exists(modules));

    node_path = xasprintf("NODE_PATH=%s/node_modules", res.dir);
    {
        const char *argv[] = {node.path, "-e",
                              "process.exit(require('tiny') === 'tiny ok' ? 0 : 1)", NULL};
        const char *envp[] = {node_path, "PATH=/usr/bin:/bin", NULL};

        assert_int_equal(run(argv, envp), 0);
    }
    env_result_free(&res);

    assert_int_equal(env_ensure(root, &spec, &res), 0);
    assert_int_equal(res.created, 0);

    env_result_free(&res);
    runtime_free(&node);
    free(npm);
    free(pack);
    free(manifest);
    free(tiny_pkg);
    free(tiny_js);
    free(modules);
    free(node_path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key),
        cmocka_unit_test(test_ensure_python),
        cmocka_unit_test(test_empty_requirements),
        cmocka_unit_test(test_crash_leftover),
        cmocka_unit_test(test_failed_build),
        cmocka_unit_test(test_race),
        cmocka_unit_test(test_race_failing),
        cmocka_unit_test(test_race_processes),
        cmocka_unit_test(test_uv),
        cmocka_unit_test(test_base_without_pip),
        cmocka_unit_test(test_gc_and_remove),
        cmocka_unit_test(test_node),
    };

    return cmocka_run_group_tests(tests, group_setup, group_teardown);
}

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <utime.h>

#include "pack/pack.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hash.h"

static const char *good_pack_yaml = "ref: p\n"
                                    "label: P\n"
                                    "description: A test pack.\n"
                                    "version: \"1.0\"\n";

static const char *good_script = "#!/bin/bash\necho hi\n";

static const char *good_action = "ref: p.run\n"
                                 "entry_point: run.sh\n";

/* Temporary folders made by a test, removed after it. */
static char *tmp_dirs[8];
static int n_tmp;

static char *tmp_dir(void)
{
    const char *base = getenv("TMPDIR") ? getenv("TMPDIR") : "/tmp";
    char *dir = xasprintf("%s/test_pack.XXXXXX", base);

    if (!mkdtemp(dir))
        fail_msg("mkdtemp %s failed", dir);
    assert_true(n_tmp < 8);
    tmp_dirs[n_tmp++] = dir;
    return dir;
}

static int teardown(void **state)
{
    for (int i = 0; i < n_tmp; i++) {
        fs_rmtree(tmp_dirs[i]);
        free(tmp_dirs[i]);
    }
    n_tmp = 0;
    return 0;
}

static void write_file(const char *dir, const char *rel, const char *text, mode_t mode)
{
    char *path = fs_join(dir, rel);
    char *parent = xstrdup(path);
    FILE *f;

    *strrchr(parent, '/') = '\0';
    assert_int_equal(fs_mkdirs(parent, 0755), 0);
    f = fopen(path, "w");
    assert_non_null(f);
    assert_int_equal(fwrite(text, 1, strlen(text), f), strlen(text));
    assert_int_equal(fclose(f), 0);
    assert_int_equal(chmod(path, mode), 0);
    free(parent);
    free(path);
}

static void make_symlink(const char *dir, const char *rel, const char *target)
{
    char *path = fs_join(dir, rel);

    assert_int_equal(symlink(target, path), 0);
    free(path);
}

/* A valid pack with one shell action, p.run. */
static char *good_pack(void)
{
    char *dir = tmp_dir();

    write_file(dir, "pack.yaml", good_pack_yaml, 0644);
    write_file(dir, "actions/run.yaml", good_action, 0644);
    write_file(dir, "actions/run.sh", good_script, 0755);
    return dir;
}

static json_t *load_ok(const char *dir)
{
    json_t *pack = NULL, *problems = NULL;
    int rc = pack_load(dir, &pack, &problems);

    if (rc != 0)
        fail_msg("pack_load %s: %d: %s", dir, rc, err_msg());
    assert_null(problems);
    return pack;
}

/* Load dir, expect it to be invalid, and return its problems. */
static json_t *load_bad(const char *dir)
{
    json_t *pack = NULL, *problems = NULL;

    assert_int_equal(pack_load(dir, &pack, &problems), ERR_INVALID);
    assert_null(pack);
    assert_non_null(problems);
    assert_true(json_array_size(problems) > 0);
    return problems;
}

/* Assert that one of problems is exactly message. */
static void assert_problem(const json_t *problems, const char *message)
{
    size_t i;
    json_t *p;

    json_array_foreach (problems, i, p) {
        if (strcmp(json_string_value(p), message) == 0)
            return;
    }
    for (i = 0; i < json_array_size(problems); i++)
        print_message("  problem: %s\n", json_string_value(json_array_get(problems, i)));
    fail_msg("no problem \"%s\"", message);
}

/* Assert that one of problems starts with prefix. */
static void assert_problem_prefix(const json_t *problems, const char *prefix)
{
    size_t i;
    json_t *p;

    json_array_foreach (problems, i, p) {
        if (strncmp(json_string_value(p), prefix, strlen(prefix)) == 0)
            return;
    }
    for (i = 0; i < json_array_size(problems); i++)
        print_message("  problem: %s\n", json_string_value(json_array_get(problems, i)));
    fail_msg("no problem starting \"%s\"", prefix);
}

/* Write a one-action pack whose action YAML is action, and return its
 * problems. */
static json_t *bad_action(const char *action)
{
    char *dir = good_pack();

    write_file(dir, "actions/run.yaml", action, 0644);
    return load_bad(dir);
}

static char *example(const char *name)
{
    const char *src = getenv("PACKRUN_SOURCE_DIR");

    if (!src)
        fail_msg("PACKRUN_SOURCE_DIR is not set");
    return xasprintf("%s/examples/packs/%s", src, name);
}

static const json_t *action(const json_t *pack, const char *ref)
{
    size_t i;
    json_t *a;

    json_array_foreach (json_object_get(pack, "actions"), i, a) {
        if (strcmp(json_string_value(json_object_get(a, "ref")), ref) == 0)
            return a;
    }
    fail_msg("no action %s", ref);
    return NULL;
}

static const char *str(const json_t *obj, const char *key)
{
    return json_string_value(json_object_get(obj, key));
}

static void test_example_hello(void **state)
{
    char *dir = example("hello");
    json_t *pack = load_ok(dir);
    json_t *actions = json_object_get(pack, "actions");
    const json_t *greet, *noop;

    assert_string_equal(str(pack, "ref"), "hello");
    assert_string_equal(str(pack, "version"), "1.0.0");
    assert_true(json_is_true(json_object_get(pack, "enabled")));
    assert_int_equal(strlen(str(pack, "digest")), HASH_HEX_LEN);
    assert_int_equal(json_object_size(json_object_get(pack, "manifests")), 0);
    assert_string_equal(str(json_object_get(pack, "meta"), "author"), "packrun");

    /* Sorted by ref. */
    assert_int_equal(json_array_size(actions), 4);
    assert_string_equal(str(json_array_get(actions, 0), "ref"), "hello.fail");
    assert_string_equal(str(json_array_get(actions, 1), "ref"), "hello.greet");
    assert_string_equal(str(json_array_get(actions, 2), "ref"), "hello.noop");
    assert_string_equal(str(json_array_get(actions, 3), "ref"), "hello.shout");

    assert_int_equal(json_array_size(json_object_get(pack, "runtimes")), 2);
    assert_string_equal(json_string_value(json_array_get(json_object_get(pack, "runtimes"), 0)),
                        "python");
    assert_string_equal(json_string_value(json_array_get(json_object_get(pack, "runtimes"), 1)),
                        "shell");

    greet = action(pack, "hello.greet");
    assert_string_equal(str(greet, "name"), "greet");
    assert_string_equal(str(greet, "pack"), "hello");
    assert_string_equal(str(greet, "runner_type"), "python");
    assert_string_equal(str(greet, "entry_point"), "greet.py");
    assert_string_equal(str(greet, "entry_path"), "actions/greet.py");
    assert_string_equal(str(greet, "output_format"), "json");
    assert_string_equal(str(greet, "parameter_delivery"), "stdin");
    assert_string_equal(str(greet, "parameter_format"), "json");
    assert_string_equal(
        str(json_object_get(json_object_get(greet, "parameters"), "name"), "default"), "world");
    assert_true(json_is_null(json_object_get(greet, "timeout_seconds")));
    assert_true(json_is_null(json_object_get(greet, "runtime_version")));

    noop = action(pack, "hello.noop");
    assert_string_equal(str(noop, "entry_point"), "true.sh");
    assert_string_equal(str(noop, "runner_type"), "shell");
    assert_string_equal(str(noop, "output_format"), "text");
    assert_true(json_is_true(json_object_get(noop, "enabled")));
    assert_int_equal(json_object_size(json_object_get(noop, "parameters")), 0);
    assert_true(json_is_null(json_object_get(noop, "output")));

    json_decref(pack);
    free(dir);
}

static void test_example_sysinfo(void **state)
{
    char *dir = example("sysinfo");
    json_t *pack = load_ok(dir);
    const json_t *disk = action(pack, "sysinfo.disk");

    assert_string_equal(str(pack, "ref"), "sysinfo");
    assert_int_equal(json_array_size(json_object_get(pack, "actions")), 2);
    assert_string_equal(str(disk, "runner_type"), "python");
    assert_string_equal(
        str(json_object_get(json_object_get(disk, "parameters"), "path"), "default"), "/");
    assert_string_equal(str(action(pack, "sysinfo.uptime"), "output_format"), "json");
    json_decref(pack);
    free(dir);
}

static void test_defaults_and_short_ref(void **state)
{
    char *dir = good_pack();
    json_t *pack;
    const json_t *a;

    write_file(dir, "actions/other.yml",
               "ref: other\nentry_point: run.sh\nlabel: Other\ntimeout_seconds: 30\n"
               "x-custom: kept\n",
               0644);
    pack = load_ok(dir);
    a = action(pack, "p.other");
    assert_string_equal(str(a, "name"), "other");
    assert_string_equal(str(a, "label"), "Other");
    assert_int_equal(json_integer_value(json_object_get(a, "timeout_seconds")), 30);
    assert_string_equal(str(json_object_get(a, "meta"), "x-custom"), "kept");

    a = action(pack, "p.run");
    assert_string_equal(str(a, "label"), "run");
    assert_string_equal(str(a, "description"), "");
    assert_string_equal(str(a, "runner_type"), "shell");
    assert_int_equal(json_array_size(json_object_get(a, "tags")), 0);
    json_decref(pack);
}

static void test_manifests(void **state)
{
    char *dir = good_pack();
    json_t *pack, *m;

    write_file(dir, "requirements.txt", "requests\n", 0644);
    write_file(dir, "package.json", "{}\n", 0644);
    pack = load_ok(dir);
    m = json_object_get(pack, "manifests");
    assert_string_equal(str(m, "python"), "requirements.txt");
    assert_string_equal(str(m, "node"), "package.json");
    json_decref(pack);
}

static void test_not_a_folder(void **state)
{
    json_t *pack = NULL, *problems = NULL;

    assert_int_equal(pack_load("/nonexistent/packrun-pack", &pack, &problems), ERR_NOTFOUND);
    assert_null(pack);
    assert_null(problems);
}

static void test_missing_pack_yaml(void **state)
{
    char *dir = tmp_dir();
    char *message = xasprintf("pack.yaml: not found in %s", dir);
    json_t *problems;

    write_file(dir, "pack.yml", good_pack_yaml, 0644);
    problems = load_bad(dir);
    assert_int_equal(json_array_size(problems), 1);
    assert_string_equal(json_string_value(json_array_get(problems, 0)), message);
    assert_string_equal(err_msg(), message);
    json_decref(problems);
    free(message);
}

static void test_yaml_syntax_error(void **state)
{
    json_t *problems = bad_action("ref: p.run\nentry_point: [run.sh\n");

    assert_problem_prefix(problems, "actions/run.yaml: line ");
    json_decref(problems);

    problems = bad_action("ref: p.run\n  entry_point: x: y\n");
    assert_problem_prefix(problems, "actions/run.yaml: line 2, column ");
    json_decref(problems);
}

static void test_pack_yaml_fields(void **state)
{
    char *dir = tmp_dir();
    json_t *problems;

    write_file(dir, "pack.yaml",
               "ref: My.Pack\ndescription: 5\nversion: 1.0\ntags: [a, [b]]\nenabled: yes\n"
               "config: [1]\n",
               0644);
    problems = load_bad(dir);
    assert_problem(problems, "pack.yaml: field 'ref': 'My.Pack' is not a valid ref (lowercase "
                             "letters, digits, '_' and '-')");
    assert_problem(problems, "pack.yaml: field 'label': required");
    assert_problem(problems, "pack.yaml: field 'description': must be a string (quote it)");
    assert_problem(problems, "pack.yaml: field 'version': must be a string (quote it)");
    assert_problem(problems, "pack.yaml: field 'tags': must be a list of strings");
    assert_problem(problems, "pack.yaml: field 'enabled': must be true or false");
    assert_problem(problems, "pack.yaml: field 'config': must be a mapping");
    assert_int_equal(json_array_size(problems), 7);
    assert_non_null(strstr(err_msg(), "(and 6 more problems)"));
    json_decref(problems);
}

static void test_pack_yaml_shape(void **state)
{
    char *dir = tmp_dir();
    json_t *problems;

    write_file(dir, "pack.yaml", "- ref\n", 0644);
    problems = load_bad(dir);
    assert_problem(problems, "pack.yaml: expected a mapping of fields, got a list");
    json_decref(problems);

    write_file(dir, "pack.yaml", "", 0644);
    problems = load_bad(dir);
    assert_problem(problems, "pack.yaml: the file is empty; expected a mapping of fields");
    json_decref(problems);

    write_file(dir, "pack.yaml",
               "ref: abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcde\n"
               "label: x\ndescription: x\nversion: '1'\n",
               0644);
    problems = load_bad(dir);
    assert_problem_prefix(problems, "pack.yaml: field 'ref': 'abcdefghij");
    assert_non_null(strstr(err_msg(), "is longer than 64 characters"));
    json_decref(problems);
}

static void test_action_ref(void **state)
{
    json_t *problems = bad_action("ref: other.run\nentry_point: run.sh\n");

    assert_problem(problems,
                   "actions/run.yaml: field 'ref': 'other.run' names pack 'other', but this "
                   "pack is 'p'");
    json_decref(problems);

    problems = bad_action("ref: p.r u n\nentry_point: run.sh\n");
    assert_problem(problems, "actions/run.yaml: field 'ref': 'r u n' is not a valid action name "
                             "(letters, digits, '_' and '-', at most 64)");
    json_decref(problems);

    problems = bad_action("entry_point: run.sh\n");
    assert_problem(problems, "actions/run.yaml: field 'ref': required");
    json_decref(problems);

    problems = bad_action("just a string\n");
    assert_problem(problems, "actions/run.yaml: expected a mapping of fields, got a single value");
    json_decref(problems);
}

static void test_duplicate_refs(void **state)
{
    char *dir = good_pack();
    json_t *problems;

    write_file(dir, "actions/run2.yaml", "ref: run\nentry_point: run.sh\n", 0644);
    problems = load_bad(dir);
    assert_problem(problems, "actions/run2.yaml: field 'ref': 'p.run' is already defined in "
                             "actions/run.yaml");
    json_decref(problems);
}

static void test_action_choices(void **state)
{
    json_t *problems = bad_action("ref: p.run\nentry_point: run.sh\nrunner_type: perl\n"
                                  "parameter_delivery: env\nparameter_format: xml\n"
                                  "output_format: csv\ntimeout_seconds: 0\nenabled: 1\n");

    assert_problem(problems, "actions/run.yaml: field 'runner_type': 'perl' is not one of native, "
                             "node, python, shell");
    assert_problem(problems,
                   "actions/run.yaml: field 'parameter_delivery': 'env' is not one of stdin, file");
    assert_problem(problems, "actions/run.yaml: field 'parameter_format': 'xml' is not one of "
                             "json, dotenv, yaml");
    assert_problem(problems, "actions/run.yaml: field 'output_format': 'csv' is not one of text, "
                             "json, yaml, jsonl");
    assert_problem(problems, "actions/run.yaml: field 'timeout_seconds': must be a whole number "
                             "of seconds from 1 to 604800");
    assert_problem(problems, "actions/run.yaml: field 'enabled': must be true or false");
    assert_int_equal(json_array_size(problems), 6);
    json_decref(problems);

    problems = bad_action("ref: p.run\nentry_point: run.sh\ntimeout_seconds: 604801\n");
    assert_problem_prefix(problems, "actions/run.yaml: field 'timeout_seconds'");
    json_decref(problems);
}

static void test_entry_point(void **state)
{
    char *dir = good_pack();
    json_t *problems;

    write_file(dir, "actions/a.yaml", "ref: a\n", 0644);
    write_file(dir, "actions/b.yaml", "ref: b\nentry_point: /bin/true\n", 0644);
    write_file(dir, "actions/c.yaml", "ref: c\nentry_point: ../pack.yaml\n", 0644);
    write_file(dir, "actions/d.yaml", "ref: d\nentry_point: missing.sh\n", 0644);
    write_file(dir, "actions/e.yaml", "ref: e\nentry_point: sub\n", 0644);
    write_file(dir, "actions/sub/x", "", 0644);
    write_file(dir, "actions/f.yaml", "ref: f\nentry_point: out.sh\n", 0644);
    make_symlink(dir, "actions/out.sh", "/bin/true");
    write_file(dir, "actions/g.yaml", "ref: g\nentry_point: run.sh\nrunner_type: native\n", 0644);
    write_file(dir, "actions/h.yaml", "ref: h\nentry_point: plain\nrunner_type: native\n", 0644);
    write_file(dir, "actions/plain", "x", 0644);
    write_file(dir, "actions/i.yaml", "ref: i\nentry_point: node_modules/x.js\n", 0644);
    write_file(dir, "actions/node_modules/x.js", "", 0644);

    problems = load_bad(dir);
    assert_problem(problems, "actions/a.yaml: field 'entry_point': required");
    assert_problem(problems, "actions/b.yaml: field 'entry_point': '/bin/true' is an absolute "
                             "path; give a path under actions/");
    assert_problem(problems, "actions/c.yaml: field 'entry_point': '../pack.yaml' contains '..'; "
                             "it must stay under actions/");
    assert_problem(problems,
                   "actions/d.yaml: field 'entry_point': actions/missing.sh does not exist");
    assert_problem(problems, "actions/e.yaml: field 'entry_point': actions/sub is not a regular "
                             "file");
    assert_problem(problems,
                   "actions/f.yaml: field 'entry_point': actions/out.sh resolves outside the pack");
    assert_problem(problems, "actions/h.yaml: field 'entry_point': actions/plain is not executable "
                             "(runner_type native needs the execute bit)");
    assert_problem(problems,
                   "actions/i.yaml: field 'entry_point': actions/node_modules/x.js is in "
                   "a folder packrun leaves out (.git, __pycache__, node_modules, .venv)");
    /* The symlink itself is reported too; g is fine (run.sh is executable). */
    assert_problem(problems, "actions/out.sh: symlink to an absolute path (/bin/true); use a "
                             "relative one inside the pack");
    assert_int_equal(json_array_size(problems), 9);
    json_decref(problems);
}

static void test_entry_point_symlink_inside(void **state)
{
    char *dir = good_pack();
    json_t *pack;

    write_file(dir, "lib/tool.sh", "#!/bin/bash\n", 0755);
    write_file(dir, "actions/t.yaml", "ref: t\nentry_point: tool.sh\nrunner_type: native\n", 0644);
    make_symlink(dir, "actions/tool.sh", "../lib/tool.sh");
    pack = load_ok(dir);
    assert_string_equal(str(action(pack, "p.t"), "entry_point"), "tool.sh");
    json_decref(pack);
}

static void test_symlinks(void **state)
{
    char *dir = good_pack();
    json_t *problems;

    write_file(dir, "lib/ok.py", "", 0644);
    make_symlink(dir, "lib/alias.py", "ok.py");
    make_symlink(dir, "lib/x", "../../..");
    make_symlink(dir, "lib/gone", "nothing-here");
    make_symlink(dir, "lib/mods", "../node_modules");
    write_file(dir, "node_modules/m.js", "", 0644);

    problems = load_bad(dir);
    assert_problem(problems, "lib/x: symlink points outside the pack (../../..)");
    assert_problem_prefix(problems, "lib/gone: symlink target nothing-here cannot be resolved");
    assert_problem(problems, "lib/mods: symlink points into a folder packrun leaves out (.git, "
                             "__pycache__, node_modules, .venv)");
    assert_int_equal(json_array_size(problems), 3);
    json_decref(problems);
}

static void test_parameter_schema_problems(void **state)
{
    json_t *problems = bad_action("ref: p.run\nentry_point: run.sh\n"
                                  "parameters:\n  count:\n    type: int\n"
                                  "  color:\n    enum: red\n"
                                  "output:\n  n:\n    type: integer\n    default: x\n");

    assert_problem(problems, "actions/run.yaml: field 'parameters.count.type': 'int' is not a type "
                             "(string, integer, number, boolean, array, object)");
    assert_problem(problems, "actions/run.yaml: field 'parameters.color.enum': must be a list of "
                             "values");
    assert_problem(problems, "actions/run.yaml: field 'output.n.default': expected integer, got "
                             "string");
    assert_int_equal(json_array_size(problems), 3);
    json_decref(problems);
}

static void test_yaml_too_big(void **state)
{
    char *dir = good_pack();
    size_t len = PACK_MAX_YAML_BYTES + 10;
    char *text = malloc(len + 1);
    json_t *problems;

    memset(text, '#', len);
    text[len] = '\0';
    write_file(dir, "actions/big.yaml", text, 0644);
    problems = load_bad(dir);
    assert_problem(problems, "actions/big.yaml: larger than the limit of 1048576 bytes");
    json_decref(problems);
    free(text);
}

static void test_too_many_actions(void **state)
{
    char *dir = good_pack();
    json_t *problems;

    for (int i = 0; i < PACK_MAX_ACTIONS; i++) {
        char *name = xasprintf("actions/a%d.yaml", i);

        write_file(dir, name, "", 0644);
        free(name);
    }
    problems = load_bad(dir);
    assert_problem(problems, "actions: holds 1001 action files, more than the limit of 1000");
    json_decref(problems);
}

static void test_too_many_files(void **state)
{
    char *dir = good_pack();
    json_t *problems;

    /* Empty folders count too, and are quicker to make than files. */
    for (int i = 0; i < PACK_MAX_FILES; i++) {
        char *path = xasprintf("%s/d%d", dir, i);

        assert_int_equal(mkdir(path, 0755), 0);
        free(path);
    }
    problems = load_bad(dir);
    assert_problem(problems, "pack folder: holds more than 10000 files and folders (the limit)");
    json_decref(problems);
}

static void test_too_many_bytes(void **state)
{
    char *dir = good_pack();
    char *path = fs_join(dir, "lib/big.bin");
    char *message;
    json_t *problems;
    long total;

    write_file(dir, "lib/big.bin", "", 0644);
    assert_int_equal(truncate(path, PACK_MAX_BYTES + 1), 0); /* sparse: no disk used */
    total = PACK_MAX_BYTES + 1 + strlen(good_pack_yaml) + strlen(good_action) + strlen(good_script);
    message = xasprintf("pack folder: files total %ld bytes, more than the limit of %ld", total,
                        PACK_MAX_BYTES);
    problems = load_bad(dir);
    assert_problem(problems, message);
    free(message);
    json_decref(problems);
    free(path);
}

static char *digest_of(const char *dir)
{
    json_t *pack = load_ok(dir);
    char *digest = xstrdup(str(pack, "digest"));

    json_decref(pack);
    return digest;
}

static void test_digest(void **state)
{
    char *dir = good_pack();
    char *copy = fs_join(tmp_dir(), "elsewhere");
    char *d1, *d2, *path;
    struct utimbuf times = {1000000, 1000000};

    write_file(dir, "lib/a.py", "x = 1\n", 0644);
    make_symlink(dir, "lib/b.py", "a.py");
    d1 = digest_of(dir);
    assert_int_equal(fs_copy_tree(dir, copy), 0);

    /* Another folder, other times, excluded folders: the same digest. */
    path = fs_join(copy, "lib/a.py");
    assert_int_equal(utime(path, &times), 0);
    write_file(copy, "lib/__pycache__/a.pyc", "junk", 0644);
    write_file(copy, ".git/HEAD", "ref", 0644);
    write_file(copy, "node_modules/x/index.js", "", 0644);
    write_file(copy, "lib/.venv/bin/python", "", 0755);
    d2 = digest_of(copy);
    assert_string_equal(d1, d2);
    free(d2);

    /* One byte changed. */
    write_file(copy, "lib/a.py", "x = 2\n", 0644);
    d2 = digest_of(copy);
    assert_string_not_equal(d1, d2);
    free(d2);

    /* The execute bit. */
    write_file(copy, "lib/a.py", "x = 1\n", 0755);
    d2 = digest_of(copy);
    assert_string_not_equal(d1, d2);
    free(d2);

    /* A symlink's target. */
    write_file(copy, "lib/a.py", "x = 1\n", 0644);
    free(path);
    path = fs_join(copy, "lib/b.py");
    assert_int_equal(unlink(path), 0);
    make_symlink(copy, "lib/b.py", "./a.py");
    d2 = digest_of(copy);
    assert_string_not_equal(d1, d2);
    free(d2);

    free(path);
    free(d1);
    free(copy);
}

static void assert_file(const char *dir, const char *rel, const char *text, int exec)
{
    char *path = fs_join(dir, rel);
    struct buf b = BUF_INIT;
    struct stat st;

    assert_int_equal(fs_read_file(path, 1 << 20, &b), 0);
    assert_string_equal(buf_str(&b), text);
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal((st.st_mode & 0111) != 0, exec);
    buf_free(&b);
    free(path);
}

/* The number of names in a folder, hidden ones included. */
static int count_entries(const char *path)
{
    DIR *d = opendir(path);
    struct dirent *de;
    int n = 0;

    assert_non_null(d);
    while ((de = readdir(d)) != NULL)
        n += strcmp(de->d_name, ".") != 0 && strcmp(de->d_name, "..") != 0;
    closedir(d);
    return n;
}

static void test_install(void **state)
{
    char *src = good_pack();
    char *root = tmp_dir();
    char *dir = NULL, *again = NULL, *expect, *path, *link;
    json_t *pack, *copy;

    write_file(src, "lib/a.py", "x = 1\n", 0600);
    write_file(src, "lib/__pycache__/a.pyc", "junk", 0644);
    make_symlink(src, "lib/b.py", "a.py");
    pack = load_ok(src);

    assert_int_equal(pack_install(src, pack, root, &dir), 0);
    expect = xasprintf("%s/p/%s", root, str(pack, "digest"));
    assert_string_equal(dir, expect);

    /* Complete, without excluded names, with execute bits and symlinks. */
    assert_file(dir, "pack.yaml", good_pack_yaml, 0);
    assert_file(dir, "actions/run.sh", good_script, 1);
    assert_file(dir, "lib/a.py", "x = 1\n", 0);
    path = fs_join(dir, "lib/__pycache__");
    assert_false(fs_exists(path));
    free(path);
    path = fs_join(dir, "lib/b.py");
    link = realpath(path, NULL);
    assert_non_null(link);
    assert_non_null(strstr(link, expect));
    free(link);
    free(path);

    copy = load_ok(dir);
    assert_string_equal(str(copy, "digest"), str(pack, "digest"));
    json_decref(copy);

    /* Idempotent, and no temporary folder left. */
    assert_int_equal(pack_install(src, pack, root, &again), 0);
    assert_string_equal(again, dir);
    path = fs_join(root, "p");
    assert_int_equal(count_entries(path), 1);
    free(path);

    json_decref(pack);
    free(expect);
    free(again);
    free(dir);
}

static void test_install_changed_source(void **state)
{
    char *src = good_pack();
    char *root = tmp_dir();
    char *dir = NULL;
    json_t *pack = load_ok(src);

    write_file(src, "actions/run.sh", "#!/bin/bash\necho changed\n", 0755);
    assert_int_equal(pack_install(src, pack, root, &dir), ERR_CONFLICT);
    assert_null(dir);
    json_decref(pack);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_teardown(test_example_hello, teardown),
        cmocka_unit_test_teardown(test_example_sysinfo, teardown),
        cmocka_unit_test_teardown(test_defaults_and_short_ref, teardown),
        cmocka_unit_test_teardown(test_manifests, teardown),
        cmocka_unit_test_teardown(test_not_a_folder, teardown),
        cmocka_unit_test_teardown(test_missing_pack_yaml, teardown),
        cmocka_unit_test_teardown(test_yaml_syntax_error, teardown),
        cmocka_unit_test_teardown(test_pack_yaml_fields, teardown),
        cmocka_unit_test_teardown(test_pack_yaml_shape, teardown),
        cmocka_unit_test_teardown(test_action_ref, teardown),
        cmocka_unit_test_teardown(test_duplicate_refs, teardown),
        cmocka_unit_test_teardown(test_action_choices, teardown),
        cmocka_unit_test_teardown(test_entry_point, teardown),
        cmocka_unit_test_teardown(test_entry_point_symlink_inside, teardown),
        cmocka_unit_test_teardown(test_symlinks, teardown),
        cmocka_unit_test_teardown(test_parameter_schema_problems, teardown),
        cmocka_unit_test_teardown(test_yaml_too_big, teardown),
        cmocka_unit_test_teardown(test_too_many_actions, teardown),
        cmocka_unit_test_teardown(test_too_many_files, teardown),
        cmocka_unit_test_teardown(test_too_many_bytes, teardown),
        cmocka_unit_test_teardown(test_digest, teardown),
        cmocka_unit_test_teardown(test_install, teardown),
        cmocka_unit_test_teardown(test_install_changed_source, teardown),
    };

    if (hash_init() < 0)
        return 1;
    return cmocka_run_group_tests(tests, NULL, NULL);
}

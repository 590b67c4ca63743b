#include "pack/pack.h"

#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pack/params.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hash.h"
#include "util/yaml.h"

#define NAME_MAX_LEN  64
#define TIMEOUT_MAX   (86400 * 7)
#define DIGEST_FORMAT "packrun-pack-digest-1"
#define EXCLUDED_LIST ".git, __pycache__, node_modules, .venv"

static const char *const excluded[] = {".git", "__pycache__", "node_modules", ".venv", NULL};
/* Sorted, so that "runtimes" comes out sorted. */
static const char *const runner_types[] = {"native", "node", "python", "shell", NULL};
static const char *const deliveries[] = {"stdin", "file", NULL};
static const char *const param_formats[] = {"json", "dotenv", "yaml", NULL};
static const char *const output_formats[] = {"text", "json", "yaml", "jsonl", NULL};

/* One file, folder or symlink of a pack. */
struct entry {
    char *path;  /* relative to the pack folder */
    mode_t mode; /* from lstat(2) */
};

/* Everything in a pack folder but the excluded names, sorted by path. */
struct tree {
    struct entry *v;
    size_t n, cap;
    long long bytes; /* total size of the regular files */
    int truncated;   /* the walk stopped at PACK_MAX_FILES entries */
};

struct loader {
    const char *dir;
    char *prefix;     /* realpath of dir with a '/' appended */
    json_t *problems; /* array of messages */
    const char *ref;  /* the pack's ref once known to be valid; borrowed */
};

/* Where a path leads once every symlink on it is resolved. */
enum place { PLACE_INSIDE, PLACE_OUTSIDE, PLACE_EXCLUDED, PLACE_MISSING };

static void problem(struct loader *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void problem(struct loader *l, const char *fmt, ...)
{
    struct buf b = BUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    buf_vaddf(&b, fmt, ap);
    va_end(ap);
    json_array_append_new(l->problems, json_string(buf_str(&b)));
    buf_free(&b);
}

static int one_of(const char *s, const char *const *list)
{
    for (; *list; list++) {
        if (strcmp(s, *list) == 0)
            return 1;
    }
    return 0;
}

static char *join_list(const char *const *list)
{
    struct buf b = BUF_INIT;

    for (const char *const *p = list; *p; p++)
        buf_addf(&b, "%s%s", p == list ? "" : ", ", *p);
    return buf_detach(&b);
}

static int name_valid(const char *s, const char *chars)
{
    size_t len = strlen(s);

    return len > 0 && len <= NAME_MAX_LEN && strspn(s, chars) == len;
}

int pack_ref_valid(const char *ref)
{
    return ref && name_valid(ref, "abcdefghijklmnopqrstuvwxyz0123456789_-");
}

static int action_name_valid(const char *name)
{
    return name_valid(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-");
}

/* 1 if a '/'-separated component of path equals word (or, with word
 * NULL, is one of the excluded names). */
static int has_component(const char *path, const char *word)
{
    char *copy = xstrdup(path);
    char *save = NULL;
    int found = 0;

    for (char *c = strtok_r(copy, "/", &save); c && !found; c = strtok_r(NULL, "/", &save))
        found = word ? strcmp(c, word) == 0 : one_of(c, excluded);
    free(copy);
    return found;
}

static enum place place_of(const char *prefix, const char *path)
{
    size_t n = strlen(prefix);
    char *real = realpath(path, NULL);
    enum place p = PLACE_INSIDE;

    if (!real)
        return PLACE_MISSING; /* errno says why */
    if (strlen(real) + 1 == n && strncmp(real, prefix, n - 1) == 0)
        p = PLACE_INSIDE; /* the pack folder itself */
    else if (strncmp(real, prefix, n) != 0)
        p = PLACE_OUTSIDE;
    else if (has_component(real + n, NULL))
        p = PLACE_EXCLUDED;
    free(real);
    return p;
}

/* readlink(2) into a caller-freed string. */
static int read_link(const char *path, char **out)
{
    size_t cap = 256;

    for (;;) {
        char *target = xmalloc(cap);
        ssize_t n = readlink(path, target, cap);

        if (n < 0) {
            free(target);
            return err_errno(ERR_FAIL, "readlink %s", path);
        }
        if ((size_t)n < cap) {
            target[n] = '\0';
            *out = target;
            return 0;
        }
        free(target);
        cap *= 2;
    }
}

static void tree_free(struct tree *t)
{
    for (size_t i = 0; i < t->n; i++)
        free(t->v[i].path);
    free(t->v);
    memset(t, 0, sizeof(*t));
}

static void tree_add(struct tree *t, char *path, mode_t mode)
{
    if (t->n == t->cap) {
        t->cap = t->cap ? t->cap * 2 : 64;
        t->v = xrealloc(t->v, t->cap * sizeof(*t->v));
    }
    t->v[t->n].path = path;
    t->v[t->n].mode = mode;
    t->n++;
}

/* Add what is under dir/rel (rel NULL: dir itself) to t, not following
 * symlinks and skipping excluded names. */
static int tree_walk(const char *dir, const char *rel, struct tree *t)
{
    char *path = rel ? fs_join(dir, rel) : xstrdup(dir);
    struct dirent *de;
    DIR *d;
    int rc = 0;

    d = opendir(path);
    if (!d) {
        rc = err_errno(ERR_FAIL, "opendir %s", path);
        goto out;
    }
    while (rc == 0 && (de = readdir(d)) != NULL) {
        struct stat st;
        char *child, *full;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0 ||
            one_of(de->d_name, excluded))
            continue;
        if (t->n >= PACK_MAX_FILES) {
            t->truncated = 1;
            break;
        }

        child = rel ? fs_join(rel, de->d_name) : xstrdup(de->d_name);
        full = fs_join(dir, child);
        if (lstat(full, &st) < 0) {
            rc = err_errno(ERR_FAIL, "stat %s", full);
            free(child);
        } else {
            tree_add(t, child, st.st_mode);
            if (S_ISREG(st.st_mode))
                t->bytes += st.st_size;
            if (S_ISDIR(st.st_mode))
                rc = tree_walk(dir, child, t);
        }
        free(full);
    }
    closedir(d);

out:
    free(path);
    return rc;
}

static int entry_cmp(const void *a, const void *b)
{
    return strcmp(((const struct entry *)a)->path, ((const struct entry *)b)->path);
}

static int tree_read(const char *dir, struct tree *t)
{
    int rc = tree_walk(dir, NULL, t);

    if (rc == 0)
        qsort(t->v, t->n, sizeof(*t->v), entry_cmp);
    return rc;
}

/*
 * The digest of a pack: SHA-256 over a format tag and, for each entry in
 * path order, its path, its kind ("dir", "file", "exec" for a file with
 * any execute bit, "symlink") and its contents (the SHA-256 of a file,
 * the target of a symlink). Times, owners and other mode bits are left
 * out, so that copies of a pack have the same digest.
 */
static int tree_digest(const char *dir, const struct tree *t, char out[HASH_HEX_LEN + 1])
{
    char hex[HASH_HEX_LEN + 1];
    struct hash h;
    int rc = 0;

    hash_start(&h);
    hash_update_str(&h, DIGEST_FORMAT);
    for (size_t i = 0; i < t->n && rc == 0; i++) {
        const struct entry *e = &t->v[i];
        char *full = fs_join(dir, e->path);
        char *target = NULL;

        hash_update_str(&h, e->path);
        if (S_ISDIR(e->mode)) {
            hash_update_str(&h, "dir");
        } else if (S_ISLNK(e->mode)) {
            hash_update_str(&h, "symlink");
            rc = read_link(full, &target);
            if (rc == 0)
                hash_update_str(&h, target);
        } else if (S_ISREG(e->mode)) {
            hash_update_str(&h, (e->mode & 0111) ? "exec" : "file");
            rc = hash_file(full, hex);
            if (rc == 0)
                hash_update_str(&h, hex);
        }
        free(target);
        free(full);
    }
    hash_finish(&h, out);
    return rc;
}

/* Problems with a symlink at rel: it must be relative and lead to
 * something inside the pack that packrun copies. */
static int check_symlink(struct loader *l, const char *rel)
{
    char *full = fs_join(l->dir, rel);
    char *target = NULL;
    int rc;

    rc = read_link(full, &target);
    if (rc < 0)
        goto out;

    if (target[0] == '/') {
        problem(l, "%s: symlink to an absolute path (%s); use a relative one inside the pack", rel,
                target);
        goto out;
    }
    switch (place_of(l->prefix, full)) {
    case PLACE_OUTSIDE:
        problem(l, "%s: symlink points outside the pack (%s)", rel, target);
        break;
    case PLACE_EXCLUDED:
        problem(l, "%s: symlink points into a folder packrun leaves out (%s)", rel, EXCLUDED_LIST);
        break;
    case PLACE_MISSING:
        problem(l, "%s: symlink target %s cannot be resolved: %s", rel, target, strerror(errno));
        break;
    case PLACE_INSIDE:
        break;
    }

out:
    free(target);
    free(full);
    return rc;
}

/* Problems with the pack folder as a whole: limits, odd files, symlinks. */
static int check_tree(struct loader *l, const struct tree *t)
{
    int rc = 0;

    if (t->truncated)
        problem(l, "pack folder: holds more than %d files and folders (the limit)", PACK_MAX_FILES);
    if (t->bytes > PACK_MAX_BYTES)
        problem(l, "pack folder: files total %lld bytes, more than the limit of %ld", t->bytes,
                PACK_MAX_BYTES);

    for (size_t i = 0; i < t->n && rc == 0; i++) {
        const struct entry *e = &t->v[i];

        if (S_ISLNK(e->mode))
            rc = check_symlink(l, e->path);
        else if (!S_ISREG(e->mode) && !S_ISDIR(e->mode))
            problem(l, "%s: not a regular file, folder or symlink", e->path);
    }
    return rc;
}

/*
 * Read and parse the YAML file rel of the pack into *out. A file that is
 * missing, too big or not valid YAML is a problem: 0 with *out NULL.
 * A symlink that leaves the pack is not read (check_tree() reports it).
 */
static int load_yaml(struct loader *l, const char *rel, json_t **out)
{
    char *path = fs_join(l->dir, rel);
    struct buf text = BUF_INIT;
    struct stat st;
    int rc = 0;

    *out = NULL;
    switch (place_of(l->prefix, path)) {
    case PLACE_MISSING:
        problem(l, "%s: not found in %s", rel, l->dir);
        goto out;
    case PLACE_OUTSIDE:
    case PLACE_EXCLUDED:
        goto out;
    case PLACE_INSIDE:
        break;
    }
    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode)) {
        problem(l, "%s: not a regular file", rel);
        goto out;
    }

    rc = fs_read_file(path, PACK_MAX_YAML_BYTES, &text);
    if (rc == ERR_TOOBIG) {
        problem(l, "%s: larger than the limit of %d bytes", rel, PACK_MAX_YAML_BYTES);
        rc = 0;
        goto out;
    }
    if (rc < 0)
        goto out;
    rc = yaml_parse(rel, buf_str(&text), text.len, out);
    if (rc == ERR_INVALID) {
        problem(l, "%s", err_msg());
        rc = 0;
    }

out:
    buf_free(&text);
    free(path);
    return rc;
}

static int expect_mapping(struct loader *l, const char *file, const json_t *y)
{
    if (json_is_object(y))
        return 1;
    if (json_is_null(y))
        problem(l, "%s: the file is empty; expected a mapping of fields", file);
    else
        problem(l, "%s: expected a mapping of fields, got a %s", file,
                json_is_array(y) ? "list" : "single value");
    return 0;
}

/* A string field, or NULL if absent, null or wrong (a problem when
 * required or of another type). */
static const char *get_string(struct loader *l, const char *file, const json_t *obj,
                              const char *field, int required)
{
    const json_t *v = json_object_get(obj, field);

    if (!v || json_is_null(v)) {
        if (required)
            problem(l, "%s: field '%s': required", file, field);
        return NULL;
    }
    if (json_is_number(v) || json_is_boolean(v)) {
        problem(l, "%s: field '%s': must be a string (quote it)", file, field);
        return NULL;
    }
    if (!json_is_string(v)) {
        problem(l, "%s: field '%s': must be a string", file, field);
        return NULL;
    }
    if (required && json_string_length(v) == 0) {
        problem(l, "%s: field '%s': must not be empty", file, field);
        return NULL;
    }
    return json_string_value(v);
}

static json_t *get_bool(struct loader *l, const char *file, const json_t *obj, const char *field,
                        int def)
{
    const json_t *v = json_object_get(obj, field);

    if (!v || json_is_null(v))
        return json_boolean(def);
    if (!json_is_boolean(v))
        problem(l, "%s: field '%s': must be true or false", file, field);
    return json_boolean(json_is_boolean(v) ? json_is_true(v) : def);
}

static json_t *get_tags(struct loader *l, const char *file, const json_t *obj)
{
    const json_t *v = json_object_get(obj, "tags");
    size_t i;
    json_t *tag;

    if (!v || json_is_null(v))
        return json_array();
    json_array_foreach (v, i, tag) {
        if (!json_is_string(tag))
            break;
    }
    if (!json_is_array(v) || i < json_array_size(v)) {
        problem(l, "%s: field 'tags': must be a list of strings", file);
        return json_array();
    }
    return json_deep_copy(v);
}

/* A field whose value is one of list, or def when absent. */
static const char *get_choice(struct loader *l, const char *file, const json_t *obj,
                              const char *field, const char *const *list, const char *def)
{
    const char *s = get_string(l, file, obj, field, 0);
    char *valid;

    if (!s)
        return def;
    if (one_of(s, list))
        return s;
    valid = join_list(list);
    problem(l, "%s: field '%s': '%s' is not one of %s", file, field, s, valid);
    free(valid);
    return def;
}

static void check_mapping_field(struct loader *l, const char *file, const json_t *obj,
                                const char *field)
{
    const json_t *v = json_object_get(obj, field);

    if (v && !json_is_null(v) && !json_is_object(v))
        problem(l, "%s: field '%s': must be a mapping", file, field);
}

static json_t *string_or_null(const char *s)
{
    return s ? json_string(s) : json_null();
}

/* Read pack.yaml into *out, the pack object without its actions; *out
 * NULL if pack.yaml cannot be read at all. */
static int load_pack_yaml(struct loader *l, json_t **out)
{
    const char *file = "pack.yaml";
    const char *ref, *label, *desc, *version, *author, *email;
    json_t *y, *pack;
    int rc;

    *out = NULL;
    rc = load_yaml(l, file, &y);
    if (rc < 0 || !y || !expect_mapping(l, file, y))
        goto out;

    ref = get_string(l, file, y, "ref", 1);
    if (ref && strlen(ref) > NAME_MAX_LEN)
        problem(l, "%s: field 'ref': '%s' is longer than %d characters", file, ref, NAME_MAX_LEN);
    else if (ref && !pack_ref_valid(ref))
        problem(l,
                "%s: field 'ref': '%s' is not a valid ref (lowercase letters, digits, '_' and '-')",
                file, ref);
    else
        l->ref = ref;
    label = get_string(l, file, y, "label", 1);
    desc = get_string(l, file, y, "description", 1);
    version = get_string(l, file, y, "version", 1);
    author = get_string(l, file, y, "author", 0);
    email = get_string(l, file, y, "email", 0);
    check_mapping_field(l, file, y, "conf_schema");
    check_mapping_field(l, file, y, "config");

    pack = json_object();
    json_object_set_new(pack, "ref", string_or_null(ref));
    json_object_set_new(pack, "label", string_or_null(label));
    json_object_set_new(pack, "description", string_or_null(desc));
    json_object_set_new(pack, "version", string_or_null(version));
    json_object_set_new(pack, "author", string_or_null(author));
    json_object_set_new(pack, "email", string_or_null(email));
    json_object_set_new(pack, "tags", get_tags(l, file, y));
    json_object_set_new(pack, "enabled", get_bool(l, file, y, "enabled", 1));
    json_object_set(pack, "meta", y); /* keeps y, and so l->ref, alive */
    *out = pack;

out:
    json_decref(y);
    return rc;
}

/* Problems with an action's entry point, a path under actions/. */
static void check_entry(struct loader *l, const char *file, const char *ep, const char *runner)
{
    char *rel = xasprintf("actions/%s", ep);
    char *path = fs_join(l->dir, rel);
    struct stat st;

    if (ep[0] == '/') {
        problem(l, "%s: field 'entry_point': '%s' is an absolute path; give a path under actions/",
                file, ep);
        goto out;
    }
    if (has_component(ep, "..")) {
        problem(l, "%s: field 'entry_point': '%s' contains '..'; it must stay under actions/", file,
                ep);
        goto out;
    }
    if (lstat(path, &st) < 0) {
        problem(l, "%s: field 'entry_point': %s does not exist", file, rel);
        goto out;
    }

    switch (place_of(l->prefix, path)) {
    case PLACE_OUTSIDE:
        problem(l, "%s: field 'entry_point': %s resolves outside the pack", file, rel);
        goto out;
    case PLACE_EXCLUDED:
        problem(l, "%s: field 'entry_point': %s is in a folder packrun leaves out (%s)", file, rel,
                EXCLUDED_LIST);
        goto out;
    case PLACE_MISSING:
        problem(l, "%s: field 'entry_point': %s cannot be resolved: %s", file, rel,
                strerror(errno));
        goto out;
    case PLACE_INSIDE:
        break;
    }

    if (stat(path, &st) < 0 || !S_ISREG(st.st_mode))
        problem(l, "%s: field 'entry_point': %s is not a regular file", file, rel);
    else if (strcmp(runner, "native") == 0 && !(st.st_mode & 0111))
        problem(l,
                "%s: field 'entry_point': %s is not executable (runner_type native needs the "
                "execute bit)",
                file, rel);

out:
    free(path);
    free(rel);
}

/* The action's full ref ("pack.name") from its 'ref' field, or NULL after
 * a problem. Sets *name to the part after the dot. Caller frees. */
static char *action_ref(struct loader *l, const char *file, const json_t *y, const char **name)
{
    const char *ref = get_string(l, file, y, "ref", 1);
    const char *dot;
    char *pack;

    if (!ref)
        return NULL;
    dot = strchr(ref, '.');
    *name = dot ? dot + 1 : ref;
    if (!action_name_valid(*name)) {
        problem(l,
                "%s: field 'ref': '%s' is not a valid action name (letters, digits, '_' and "
                "'-', at most %d)",
                file, *name, NAME_MAX_LEN);
        return NULL;
    }
    if (!dot)
        return l->ref ? xasprintf("%s.%s", l->ref, ref) : NULL;

    pack = xstrdup(ref);
    pack[dot - ref] = '\0';
    if (l->ref && strcmp(pack, l->ref) != 0) {
        problem(l, "%s: field 'ref': '%s' names pack '%s', but this pack is '%s'", file, ref, pack,
                l->ref);
        free(pack);
        return NULL;
    }
    free(pack);
    return xstrdup(ref);
}

static json_t *get_timeout(struct loader *l, const char *file, const json_t *y)
{
    const json_t *v = json_object_get(y, "timeout_seconds");

    if (!v || json_is_null(v))
        return json_null();
    if (json_is_integer(v) && json_integer_value(v) >= 1 && json_integer_value(v) <= TIMEOUT_MAX)
        return json_incref((json_t *)v);
    problem(l, "%s: field 'timeout_seconds': must be a whole number of seconds from 1 to %d", file,
            TIMEOUT_MAX);
    return json_null();
}

static json_t *get_schema(struct loader *l, const char *file, const json_t *y, const char *field,
                          json_t *def)
{
    const json_t *v = json_object_get(y, field);

    if (!v || json_is_null(v))
        return def;
    json_decref(def);
    params_schema_problems(file, field, v, l->problems);
    return json_deep_copy(v);
}

/* Check the action in file (parsed as y) and add it to actions. seen maps
 * the refs found so far to their files. */
static void load_action(struct loader *l, const char *file, json_t *y, json_t *seen,
                        json_t *actions)
{
    const char *name = NULL, *label, *desc, *runner, *ep, *version;
    char *ref;
    json_t *a;

    if (!expect_mapping(l, file, y))
        return;
    ref = action_ref(l, file, y, &name);
    if (ref && json_object_get(seen, ref))
        problem(l, "%s: field 'ref': '%s' is already defined in %s", file, ref,
                json_string_value(json_object_get(seen, ref)));
    else if (ref)
        json_object_set_new(seen, ref, json_string(file));

    label = get_string(l, file, y, "label", 0);
    desc = get_string(l, file, y, "description", 0);
    runner = get_choice(l, file, y, "runner_type", runner_types, "shell");
    ep = get_string(l, file, y, "entry_point", 1);
    if (ep)
        check_entry(l, file, ep, runner);
    version = get_string(l, file, y, "runtime_version", 0);

    a = json_object();
    json_object_set_new(a, "ref", string_or_null(ref));
    json_object_set_new(a, "pack", string_or_null(l->ref));
    json_object_set_new(a, "name", string_or_null(name));
    json_object_set_new(a, "label", string_or_null(label ? label : name));
    json_object_set_new(a, "description", json_string(desc ? desc : ""));
    json_object_set_new(a, "enabled", get_bool(l, file, y, "enabled", 1));
    json_object_set_new(a, "api_access", get_bool(l, file, y, "api_access", 0));
    json_object_set_new(a, "tags", get_tags(l, file, y));
    json_object_set_new(a, "runner_type", json_string(runner));
    json_object_set_new(a, "entry_point", string_or_null(ep));
    json_object_set_new(a, "entry_path", ep ? json_sprintf("actions/%s", ep) : json_null());
    json_object_set_new(a, "runtime_version", string_or_null(version));
    json_object_set_new(a, "parameters", get_schema(l, file, y, "parameters", json_object()));
    json_object_set_new(a, "output", get_schema(l, file, y, "output", json_null()));
    json_object_set_new(
        a, "parameter_delivery",
        json_string(get_choice(l, file, y, "parameter_delivery", deliveries, "stdin")));
    json_object_set_new(
        a, "parameter_format",
        json_string(get_choice(l, file, y, "parameter_format", param_formats, "json")));
    json_object_set_new(
        a, "output_format",
        json_string(get_choice(l, file, y, "output_format", output_formats, "text")));
    json_object_set_new(a, "timeout_seconds", get_timeout(l, file, y));
    json_object_set(a, "meta", y);
    json_array_append_new(actions, a);
    free(ref);
}

static int str_cmp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_action_file(const char *name)
{
    size_t len = strlen(name);

    if (name[0] == '.')
        return 0;
    return (len > 5 && strcmp(name + len - 5, ".yaml") == 0) ||
           (len > 4 && strcmp(name + len - 4, ".yml") == 0);
}

/* Set *names (caller frees each and the array) to the action files'
 * names, sorted. A pack without actions/ has none. */
static int list_actions(struct loader *l, char ***names, size_t *n)
{
    char *path = fs_join(l->dir, "actions");
    size_t cap = 0;
    struct dirent *de;
    DIR *d;
    int rc = 0;

    *names = NULL;
    *n = 0;
    d = opendir(path);
    if (!d && errno == ENOTDIR)
        problem(l, "actions: not a folder");
    if (!d && errno != ENOENT && errno != ENOTDIR)
        rc = err_errno(ERR_FAIL, "opendir %s", path);
    if (!d)
        goto out;

    while ((de = readdir(d)) != NULL) {
        if (!is_action_file(de->d_name))
            continue;
        if (*n == cap) {
            cap = cap ? cap * 2 : 16;
            *names = xrealloc(*names, cap * sizeof(**names));
        }
        (*names)[(*n)++] = xstrdup(de->d_name);
    }
    closedir(d);
    qsort(*names, *n, sizeof(**names), str_cmp);

out:
    free(path);
    return rc;
}

static int load_actions(struct loader *l, json_t *actions)
{
    json_t *seen = json_object();
    char **names = NULL;
    size_t n = 0;
    int rc;

    rc = list_actions(l, &names, &n);
    if (rc < 0)
        goto out;
    if (n > PACK_MAX_ACTIONS) {
        problem(l, "actions: holds %zu action files, more than the limit of %d", n,
                PACK_MAX_ACTIONS);
        goto out;
    }

    for (size_t i = 0; i < n && rc == 0; i++) {
        char *file = xasprintf("actions/%s", names[i]);
        json_t *y;

        rc = load_yaml(l, file, &y);
        if (rc == 0 && y)
            load_action(l, file, y, seen, actions);
        json_decref(y);
        free(file);
    }

out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    json_decref(seen);
    return rc;
}

static int action_cmp(const void *a, const void *b)
{
    const char *ra = json_string_value(json_object_get(*(json_t *const *)a, "ref"));
    const char *rb = json_string_value(json_object_get(*(json_t *const *)b, "ref"));

    return strcmp(ra ? ra : "", rb ? rb : "");
}

/* Fill in the pack's actions (sorted by ref), runtimes and manifests. */
static void finish_pack(struct loader *l, json_t *pack, json_t *actions)
{
    size_t n = json_array_size(actions);
    json_t **v = xcalloc(n ? n : 1, sizeof(*v));
    json_t *sorted = json_array();
    json_t *runtimes = json_array();
    json_t *manifests = json_object();
    char *path;

    for (size_t i = 0; i < n; i++)
        v[i] = json_array_get(actions, i);
    qsort(v, n, sizeof(*v), action_cmp);
    for (size_t i = 0; i < n; i++)
        json_array_append(sorted, v[i]);
    free(v);

    for (const char *const *r = runner_types; *r; r++) {
        for (size_t i = 0; i < n; i++) {
            if (strcmp(
                    json_string_value(json_object_get(json_array_get(actions, i), "runner_type")),
                    *r) == 0) {
                json_array_append_new(runtimes, json_string(*r));
                break;
            }
        }
    }

    path = fs_join(l->dir, "requirements.txt");
    if (place_of(l->prefix, path) == PLACE_INSIDE)
        json_object_set_new(manifests, "python", json_string("requirements.txt"));
    free(path);
    path = fs_join(l->dir, "package.json");
    if (place_of(l->prefix, path) == PLACE_INSIDE)
        json_object_set_new(manifests, "node", json_string("package.json"));
    free(path);

    json_object_set_new(pack, "runtimes", runtimes);
    json_object_set_new(pack, "manifests", manifests);
    json_object_set_new(pack, "actions", sorted);
}

static int pack_folder(const char *dir, char **prefix)
{
    struct stat st;
    char *real;
    int rc;

    rc = fs_realpath(dir, &real);
    if (rc < 0)
        return rc;
    if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
        free(real);
        return err_set(ERR_NOTFOUND, "%s: not a folder", dir);
    }
    *prefix = xasprintf("%s/", strcmp(real, "/") == 0 ? "" : real);
    free(real);
    return 0;
}

int pack_load(const char *dir, json_t **out, json_t **problems)
{
    struct loader l = {dir, NULL, json_array(), NULL};
    json_t *pack = NULL, *actions = json_array();
    char digest[HASH_HEX_LEN + 1];
    struct tree t = {0};
    size_t n;
    int rc;

    *out = NULL;
    *problems = NULL;
    rc = pack_folder(dir, &l.prefix);
    if (rc < 0)
        goto out;

    rc = load_pack_yaml(&l, &pack);
    if (rc == 0)
        rc = load_actions(&l, actions);
    if (rc == 0)
        rc = tree_read(dir, &t);
    if (rc == 0)
        rc = check_tree(&l, &t);
    if (rc < 0)
        goto out;

    n = json_array_size(l.problems);
    if (n > 0) {
        rc = err_set(ERR_INVALID, "%s", json_string_value(json_array_get(l.problems, 0)));
        if (n > 1)
            err_set(rc, "%s (and %zu more problem%s)",
                    json_string_value(json_array_get(l.problems, 0)), n - 1, n > 2 ? "s" : "");
        *problems = json_incref(l.problems);
        goto out;
    }

    rc = tree_digest(dir, &t, digest);
    if (rc < 0)
        goto out;
    json_object_set_new(pack, "digest", json_string(digest));
    finish_pack(&l, pack, actions);
    *out = pack;
    pack = NULL;

out:
    tree_free(&t);
    json_decref(actions);
    json_decref(pack);
    json_decref(l.problems);
    free(l.prefix);
    return rc;
}

/* Copy the entries of t from src into the existing folder dst. Symlinks
 * are copied as symlinks, and only those that stay inside the pack. */
static int tree_copy(const char *src, const char *prefix, const struct tree *t, const char *dst)
{
    int rc = 0;

    for (size_t i = 0; i < t->n && rc == 0; i++) {
        const struct entry *e = &t->v[i];
        char *from = fs_join(src, e->path);
        char *to = fs_join(dst, e->path);
        char *target = NULL;

        if (S_ISDIR(e->mode) && mkdir(to, 0755) < 0) {
            rc = err_errno(ERR_FAIL, "mkdir %s", to);
        } else if (S_ISLNK(e->mode)) {
            rc = read_link(from, &target);
            if (rc == 0 && (target[0] == '/' || place_of(prefix, from) != PLACE_INSIDE))
                rc = err_set(ERR_INVALID, "%s: symlink points outside the pack", e->path);
            if (rc == 0)
                rc = fs_copy_tree(from, to);
        } else if (S_ISREG(e->mode)) {
            rc = fs_copy_tree(from, to);
            if (rc == 0 && chmod(to, (e->mode & 0111) ? 0755 : 0644) < 0)
                rc = err_errno(ERR_FAIL, "chmod %s", to);
        }
        free(target);
        free(to);
        free(from);
    }
    return rc;
}

static int digest_valid(const char *digest)
{
    return digest && strlen(digest) == HASH_HEX_LEN &&
           strspn(digest, "0123456789abcdef") == HASH_HEX_LEN;
}

/* Copy src into the new folder tmp and check that the copy has the
 * digest pack_load() found. */
static int copy_release(const char *src, const char *digest, const char *tmp)
{
    char check[HASH_HEX_LEN + 1];
    struct tree t = {0};
    char *prefix = NULL;
    int rc;

    rc = pack_folder(src, &prefix);
    if (rc == 0)
        rc = tree_read(src, &t);
    if (rc == 0 && t.truncated)
        rc = err_set(ERR_TOOBIG, "%s: holds more than %d files and folders", src, PACK_MAX_FILES);
    if (rc == 0)
        rc = tree_copy(src, prefix, &t, tmp);
    if (rc < 0)
        goto out;

    tree_free(&t);
    rc = tree_read(tmp, &t);
    if (rc == 0)
        rc = tree_digest(tmp, &t, check);
    if (rc == 0 && strcmp(check, digest) != 0)
        rc = err_set(ERR_CONFLICT, "%s: the pack changed after it was loaded (digest %s, now %s)",
                     src, digest, check);

out:
    tree_free(&t);
    free(prefix);
    return rc;
}

/* Build the release folder dest from src: copy into a temporary folder
 * next to it, check, rename. */
static int make_release(const char *src, const char *digest, const char *parent, const char *dest)
{
    char *tmp = xasprintf("%s/.tmp-%s-%d-XXXXXX", parent, digest, (int)getpid());
    int rc;

    rc = fs_mkdirs(parent, 0755);
    if (rc < 0)
        goto out;
    if (!mkdtemp(tmp)) {
        rc = err_errno(ERR_FAIL, "mkdtemp %s", tmp);
        goto out;
    }

    rc = copy_release(src, digest, tmp);
    if (rc == 0 && chmod(tmp, 0755) < 0)
        rc = err_errno(ERR_FAIL, "chmod %s", tmp);
    /* Another process may have installed the same release meanwhile. */
    if (rc == 0 && rename(tmp, dest) < 0 && errno != EEXIST && errno != ENOTEMPTY)
        rc = err_errno(ERR_FAIL, "rename %s to %s", tmp, dest);
    (void)fs_rmtree(tmp); /* gone after a successful rename */

out:
    free(tmp);
    return rc;
}

int pack_install(const char *src, const json_t *pack, const char *root, char **dir)
{
    const char *ref = json_string_value(json_object_get(pack, "ref"));
    const char *digest = json_string_value(json_object_get(pack, "digest"));
    char *parent, *dest;
    int rc = 0;

    if (!ref || !pack_ref_valid(ref) || !digest_valid(digest))
        return err_set(ERR_INVALID, "%s: not a loaded pack (no valid ref and digest)", src);

    parent = fs_join(root, ref);
    dest = fs_join(parent, digest);
    if (!fs_exists(dest))
        rc = make_release(src, digest, parent, dest);
    if (rc == 0)
        *dir = dest;
    else
        free(dest);
    free(parent);
    return rc;
}

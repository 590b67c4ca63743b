#include "env/env.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "runner/proc.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hash.h"

#define ENV_TIMEOUT_S     1800
#define ENV_GRACE_MS      5000
#define ENV_MANIFEST_MAX  (8L * 1024 * 1024)
#define ENV_STEP_LOG_CAP  (16L * 1024 * 1024) /* per stream and build step */
#define ENV_SHOW_LOG_MAX  (1024L * 1024)
#define ENV_MARKER        "[packrun: "
#define ENV_MARKER_MAX    1024
#define DIGEST_CACHE_SIZE 64
#define PIP_PYTHON_SINCE  2203 /* pip 22.3 brought --python */

/* Bits of what exists on disk for one key, as the scans find it. */
enum { HAS_DIR = 1, HAS_LOG = 2, HAS_LOCK = 4 };

static double seconds_since(int64_t mono_ns)
{
    return (double)(clock_mono_ns() - mono_ns) / 1e9;
}

static int is_hex(const char *s, size_t len)
{
    for (size_t i = 0; i < len; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return 1;
}

/* The folder a path is in ("." for a bare name). Caller frees. */
static char *dir_of(const char *path)
{
    const char *slash = strrchr(path, '/');

    if (!slash)
        return xstrdup(".");
    if (slash == path)
        return xstrdup("/");
    return xasprintf("%.*s", (int)(slash - path), path);
}

/* ---- manifest digests ---------------------------------------------------------------- */

/*
 * The fast path of env_ensure() needs the manifest's digest for the key.
 * Pack release folders never change, so the digest is kept per path and
 * reused while stat(2) says the file is the same one (device, inode,
 * size, mtime, ctime): one stat instead of open, read, hash, close.
 */
struct manifest_digest {
    char hex[HASH_HEX_LEN + 1];
    int local; /* names files of the pack (file:, -e ./x, -r other.txt) */
};

struct digest_slot {
    char *path;
    struct stat st;
    struct manifest_digest d;
};

static struct digest_slot digest_cache[DIGEST_CACHE_SIZE];
static unsigned digest_next;
static pthread_mutex_t digest_lock = PTHREAD_MUTEX_INITIALIZER;

static int same_file(const struct stat *a, const struct stat *b)
{
    return a->st_dev == b->st_dev && a->st_ino == b->st_ino && a->st_size == b->st_size &&
           a->st_mtim.tv_sec == b->st_mtim.tv_sec && a->st_mtim.tv_nsec == b->st_mtim.tv_nsec &&
           a->st_ctim.tv_sec == b->st_ctim.tv_sec && a->st_ctim.tv_nsec == b->st_ctim.tv_nsec;
}

/* Whether a requirements.txt line refers to files next to it: a local
 * path, an editable install, a nested requirements or constraints file. */
static int python_line_local(const char *line, size_t len)
{
    static const char *const prefixes[] = {
        ".", "/", "~", "-e", "--editable", "-r", "--requirement", "-c", "--constraint", NULL};

    while (len > 0 && (*line == ' ' || *line == '\t')) {
        line++;
        len--;
    }
    for (const char *const *p = prefixes; *p; p++) {
        size_t n = strlen(*p);

        if (len >= n && strncmp(line, *p, n) == 0)
            return 1;
    }
    return memmem(line, len, "file:", 5) != NULL;
}

static int manifest_local(enum runtime_kind kind, const char *text, size_t len)
{
    const char *end = text + len;

    if (kind == RUNTIME_NODE)
        return memmem(text, len, "\"file:", 6) != NULL || memmem(text, len, "\"link:", 6) != NULL;
    while (text < end) {
        const char *nl = memchr(text, '\n', (size_t)(end - text));
        size_t n = nl ? (size_t)(nl - text) : (size_t)(end - text);

        if (python_line_local(text, n))
            return 1;
        text += n + 1;
    }
    return 0;
}

/* The digest of the file at path. ERR_NOTFOUND when it does not exist. */
static int manifest_digest(const char *path, enum runtime_kind kind, struct manifest_digest *out)
{
    struct buf text = BUF_INIT;
    struct digest_slot *slot;
    struct stat st;
    int rc;

    if (stat(path, &st) < 0)
        return err_errno(errno == ENOENT ? ERR_NOTFOUND : ERR_FAIL, "stat %s", path);

    pthread_mutex_lock(&digest_lock);
    for (int i = 0; i < DIGEST_CACHE_SIZE; i++) {
        slot = &digest_cache[i];
        if (slot->path && strcmp(slot->path, path) == 0 && same_file(&slot->st, &st)) {
            *out = slot->d;
            pthread_mutex_unlock(&digest_lock);
            return 0;
        }
    }
    pthread_mutex_unlock(&digest_lock);

    rc = fs_read_file(path, ENV_MANIFEST_MAX, &text);
    if (rc < 0)
        goto out;
    hash_sha256_hex(buf_str(&text), text.len, out->hex);
    out->local = manifest_local(kind, buf_str(&text), text.len);

    pthread_mutex_lock(&digest_lock);
    slot = &digest_cache[digest_next++ % DIGEST_CACHE_SIZE];
    free(slot->path);
    slot->path = xstrdup(path);
    slot->st = st;
    slot->d = *out;
    pthread_mutex_unlock(&digest_lock);

out:
    buf_free(&text);
    return rc;
}

/* ---- keys ---------------------------------------------------------------------------- */

/* Settings read from the environment that change what gets installed. */
static const char *const python_key_vars[] = {"PIP_INDEX_URL", "PIP_EXTRA_INDEX_URL",
                                              "PIP_FIND_LINKS", "PIP_NO_INDEX", NULL};
static const char *const node_key_vars[] = {"npm_config_registry", "NPM_CONFIG_REGISTRY", NULL};

static int check_spec(const struct env_spec *spec)
{
    const struct runtime *rt = spec->rt;

    if (!rt || (rt->kind != RUNTIME_PYTHON && rt->kind != RUNTIME_NODE))
        return err_set(ERR_INVALID, "runtime %s has no environments", rt ? rt->name : "(none)");
    if (!rt->path || !rt->version)
        return err_set(ERR_INVALID, "%s interpreter unavailable: %s", rt->name,
                       rt->error ? rt->error : "not resolved");
    if (!spec->manifest || !*spec->manifest)
        return err_set(ERR_INVALID, "%s environment: no manifest given", rt->name);
    return 0;
}

static char *pack_dir_of(const struct env_spec *spec)
{
    return spec->pack_dir ? xstrdup(spec->pack_dir) : dir_of(spec->manifest);
}

static char *node_lock_path(const char *manifest)
{
    char *dir = dir_of(manifest);
    char *path = fs_join(dir, "package-lock.json");

    free(dir);
    return path;
}

int env_key(const struct env_spec *spec, char key[65])
{
    struct manifest_digest man, lock = {{0}, 0};
    const char *const *vars;
    char *pack_dir = NULL;
    char format[32];
    struct hash h;
    int rc;

    rc = check_spec(spec);
    if (rc < 0)
        return rc;
    rc = manifest_digest(spec->manifest, spec->rt->kind, &man);
    if (rc < 0)
        return rc;
    if (spec->rt->kind == RUNTIME_NODE) {
        char *lock_path = node_lock_path(spec->manifest);

        rc = manifest_digest(lock_path, RUNTIME_NODE, &lock);
        free(lock_path);
        if (rc == ERR_NOTFOUND)
            rc = 0;
        if (rc < 0)
            return rc;
    }

    /* Local references make the environment the pack's own: the release
     * folder (content-addressed itself) joins the key. */
    if (man.local)
        pack_dir = pack_dir_of(spec);

    hash_start(&h);
    snprintf(format, sizeof(format), "packrun-env %d", ENV_FORMAT_VERSION);
    hash_update_str(&h, format);
    hash_update_str(&h, spec->rt->name);
    hash_update_str(&h, spec->rt->path);
    hash_update_str(&h, spec->rt->version);
    hash_update_str(&h, man.hex);
    hash_update_str(&h, lock.hex);
    hash_update_str(&h, pack_dir ? pack_dir : "");
    hash_update_str(&h, spec->options ? spec->options : "");
    vars = spec->rt->kind == RUNTIME_PYTHON ? python_key_vars : node_key_vars;
    for (; *vars; vars++) {
        const char *v = getenv(*vars);

        hash_update_str(&h, *vars);
        hash_update_str(&h, v ? v : "\x01unset");
    }
    hash_finish(&h, key);
    free(pack_dir);
    return 0;
}

/* ---- locks --------------------------------------------------------------------------- */

/*
 * Open the lock file at path and flock(2) it with op. env_gc() and
 * env_remove() unlink a lock file while they hold it, so whoever waited
 * on the old file checks, once it has the lock, that the path still
 * names that file, and otherwise starts over on the new one.
 *
 * With LOCK_NB in op, ERR_CONFLICT when someone else holds it. Without
 * create, ERR_NOTFOUND when the file does not exist. *waited (may be
 * NULL) tells whether the lock was held by someone else at first.
 */
static int lock_open(const char *path, int op, int create, int *waited)
{
    int flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT : 0);

    if (waited)
        *waited = 0;
    for (;;) {
        struct stat held, now;
        int fd, rc;

        fd = open(path, flags, 0644);
        if (fd < 0)
            return err_errno(errno == ENOENT ? ERR_NOTFOUND : ERR_FAIL, "open %s", path);

        rc = flock(fd, op | LOCK_NB);
        if (rc < 0 && errno == EWOULDBLOCK && !(op & LOCK_NB)) {
            if (waited)
                *waited = 1;
            do {
                rc = flock(fd, op);
            } while (rc < 0 && errno == EINTR);
        }
        if (rc < 0) {
            int saved = errno;

            close(fd);
            errno = saved;
            if (saved == EWOULDBLOCK)
                return err_set(ERR_CONFLICT, "%s: locked by another process", path);
            return err_errno(ERR_FAIL, "flock %s", path);
        }

        if (fstat(fd, &held) == 0 && stat(path, &now) == 0 && held.st_dev == now.st_dev &&
            held.st_ino == now.st_ino)
            return fd;
        close(fd);
        if (!create)
            return err_set(ERR_NOTFOUND, "%s: removed", path);
    }
}

/* ---- the build log ------------------------------------------------------------------- */

static void write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return; /* a log that cannot be written does not fail the build */
        data += n;
        len -= (size_t)n;
    }
}

static void log_printf(int fd, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void log_printf(int fd, const char *fmt, ...)
{
    struct buf b = BUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    buf_vaddf(&b, fmt, ap);
    va_end(ap);
    write_all(fd, buf_str(&b), b.len);
    buf_free(&b);
}

static void log_sink(void *ctx, int stream, const char *data, size_t len)
{
    write_all(*(int *)ctx, data, len);
}

/* Bytes [from, to) of the file; short when it is shorter. */
static void read_range(int fd, off_t from, off_t to, struct buf *out)
{
    while (from < to) {
        char chunk[8192];
        size_t want = (size_t)(to - from) < sizeof(chunk) ? (size_t)(to - from) : sizeof(chunk);
        ssize_t n = pread(fd, chunk, want, from);

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return;
        buf_add(out, chunk, (size_t)n);
        from += n;
    }
}

/* "summary:\n<the last ENV_LOG_TAIL bytes of the log before end>", the
 * tail starting at a line. Caller frees. */
static char *error_with_tail(const char *summary, int fd, off_t end)
{
    struct buf tail = BUF_INIT, msg = BUF_INIT;
    off_t from = end > ENV_LOG_TAIL ? end - ENV_LOG_TAIL : 0;
    const char *t;
    size_t len;

    read_range(fd, from, end, &tail);
    t = buf_str(&tail);
    len = tail.len;
    if (from > 0) {
        const char *nl = memchr(t, '\n', len);

        if (nl) {
            len -= (size_t)(nl + 1 - t);
            t = nl + 1;
        }
    }
    while (len > 0 && (*t == '\n' || *t == ' ')) {
        t++;
        len--;
    }
    while (len > 0 && (t[len - 1] == '\n' || t[len - 1] == ' '))
        len--;
    buf_adds(&msg, summary);
    if (len > 0) {
        buf_adds(&msg, ":\n");
        buf_add(&msg, t, len);
    }
    buf_free(&tail);
    return buf_detach(&msg);
}

/*
 * A failed build ends its log with a line "[packrun: <summary>]". Find it
 * in the log open at fd: sets *summary (caller frees) and *at to where
 * the line starts. ERR_NOTFOUND when the log does not end that way (the
 * build succeeded, or its worker died).
 */
static int find_marker(int fd, char **summary, off_t *at)
{
    struct buf tail = BUF_INIT;
    struct stat st;
    off_t from;
    const char *t, *m, *end;
    int rc = ERR_NOTFOUND;

    if (fstat(fd, &st) < 0)
        return err_errno(ERR_FAIL, "fstat build log");
    from = st.st_size > ENV_MARKER_MAX ? st.st_size - ENV_MARKER_MAX : 0;
    read_range(fd, from, st.st_size, &tail);
    t = buf_str(&tail);
    for (m = t; (m = strstr(m, "\n" ENV_MARKER)) != NULL; m++) {
        const char *after = m + 1 + strlen(ENV_MARKER);

        end = strstr(after, "]\n");
        if (!end || end[2] != '\0')
            continue;
        *summary = xasprintf("%.*s", (int)(end - after), after);
        *at = from + (off_t)(m - t);
        rc = 0;
        break;
    }
    buf_free(&tail);
    return rc;
}

/* ---- build steps --------------------------------------------------------------------- */

struct build {
    const struct env_spec *spec;
    const char *key;
    const char *dir;
    char *manifest; /* absolute */
    char *pack_dir;
    char **envp;
    int log_fd;
    int64_t deadline_ns; /* monotonic */
    const char *installer;
    char *summary; /* what failed, set by fail() */
};

static int fail(struct build *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static int fail(struct build *b, const char *fmt, ...)
{
    struct buf msg = BUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    buf_vaddf(&msg, fmt, ap);
    va_end(ap);
    free(b->summary);
    b->summary = buf_detach(&msg);
    return err_set(ERR_FAIL, "%s", b->summary);
}

/* A NULL-terminated argv whose strings it owns. */
struct args {
    char **v;
    size_t n, cap;
};

static void args_add(struct args *a, const char *s)
{
    if (a->n + 2 > a->cap) {
        a->cap = a->cap ? a->cap * 2 : 16;
        a->v = xrealloc(a->v, a->cap * sizeof(*a->v));
    }
    a->v[a->n++] = xstrdup(s);
    a->v[a->n] = NULL;
}

/* spec->options: one installer argument per line. */
static void args_add_lines(struct args *a, const char *text)
{
    while (text && *text) {
        size_t n = strcspn(text, "\n");
        char *line = xasprintf("%.*s", (int)n, text);
        size_t len = strlen(line);

        while (len > 0 && (line[len - 1] == '\r' || line[len - 1] == ' '))
            line[--len] = '\0';
        if (len > 0)
            args_add(a, line);
        free(line);
        text += n;
        if (*text == '\n')
            text++;
    }
}

static void args_free(struct args *a)
{
    for (size_t i = 0; i < a->n; i++)
        free(a->v[i]);
    free(a->v);
    memset(a, 0, sizeof(*a));
}

static void log_command(int fd, char *const *argv)
{
    struct buf line = BUF_INIT;

    buf_adds(&line, "\n$");
    for (; *argv; argv++) {
        if (strpbrk(*argv, " \t\"'$\\") || !**argv)
            buf_addf(&line, " '%s'", *argv);
        else
            buf_addf(&line, " %s", *argv);
    }
    buf_adds(&line, "\n");
    write_all(fd, buf_str(&line), line.len);
    buf_free(&line);
}

/* Run one build step, its command line and output going to the log. */
static int step(struct build *b, const char *what, const struct args *a, const char *cwd)
{
    int64_t left_ms = (b->deadline_ns - clock_mono_ns()) / 1000000;
    struct proc_result pr;
    int rc;

    log_command(b->log_fd, a->v);
    if (left_ms <= 0)
        return fail(b, "%s: the build took longer than %d s", what, b->spec->timeout_s);

    struct proc_opts o = {
        .argv = (const char *const *)a->v,
        .envp = (const char *const *)b->envp,
        .cwd = cwd,
        .timeout_ms = left_ms,
        .grace_ms = ENV_GRACE_MS,
        .output_cap = ENV_STEP_LOG_CAP,
        .cancel_fd = -1,
        .sink = log_sink,
        .ctx = &b->log_fd,
    };
    rc = proc_run(&o, &pr);
    if (rc < 0) {
        log_printf(b->log_fd, "%s\n", err_msg());
        rc = fail(b, "%s failed: %s", what, err_msg());
        goto out;
    }
    log_printf(b->log_fd, "[exit %d after %.2f s]\n", pr.exit_code, pr.duration_ms / 1000.0);
    if (pr.timed_out)
        rc = fail(b, "%s timed out (the build may take %d s)", what, b->spec->timeout_s);
    else if (pr.signal)
        rc = fail(b, "%s failed (killed by signal %d)", what, pr.signal);
    else if (pr.exit_code != 0)
        rc = fail(b, "%s failed (exit %d)", what, pr.exit_code);

out:
    proc_result_free(&pr);
    return rc;
}

/*
 * The environment of build steps: the worker's own, so that PIP_* and
 * npm_config_* settings reach the installers, without what would send
 * an install elsewhere than the new environment or stop bytecode.
 */
static char **build_envp(void)
{
    static const char *const drop[] = {"PYTHONDONTWRITEBYTECODE",
                                       "PYTHONPATH",
                                       "PYTHONHOME",
                                       "PYTHONUSERBASE",
                                       "VIRTUAL_ENV",
                                       "PIP_USER",
                                       "PIP_TARGET",
                                       "PIP_PREFIX",
                                       "PIP_ROOT",
                                       "PIP_PYTHON",
                                       "PIP_DISABLE_PIP_VERSION_CHECK",
                                       "NODE_PATH",
                                       NULL};
    extern char **environ;
    size_t n = 0, i = 0;
    char **envp;

    while (environ[n])
        n++;
    envp = xcalloc(n + 3, sizeof(*envp));
    for (char **e = environ; *e; e++) {
        size_t name_len = strcspn(*e, "=");
        int keep = 1;

        for (const char *const *d = drop; *d; d++) {
            if (strlen(*d) == name_len && strncmp(*e, *d, name_len) == 0)
                keep = 0;
        }
        /* packrun's own settings (its database, its tokens) are not for
         * build scripts. */
        if (strncmp(*e, "PACKRUN_", 8) == 0)
            keep = 0;
        if (keep)
            envp[i++] = xstrdup(*e);
    }
    envp[i++] = xstrdup("PIP_DISABLE_PIP_VERSION_CHECK=1");
    envp[i++] = xstrdup("npm_config_update_notifier=false");
    envp[i] = NULL;
    return envp;
}

static void envp_free(char **envp)
{
    for (char **e = envp; e && *e; e++)
        free(*e);
    free(envp);
}

/* ---- python -------------------------------------------------------------------------- */

/*
 * What pip the base interpreter has, asked once per interpreter and
 * process. pip >= 22.3 can install into another environment; its
 * __pip-runner__.py is what `pip --python X` itself runs under X, so
 * running it directly saves starting the base interpreter and pip's
 * command line (~0.3 s a build).
 */
struct pip_probe {
    struct pip_probe *next;
    char *python;
    int usable;
    char *version;
    char *runner; /* path of __pip-runner__.py, or NULL */
};

static struct pip_probe *pip_probes;
static pthread_mutex_t pip_lock = PTHREAD_MUTEX_INITIALIZER;

static const char pip_probe_code[] =
    "import os, pip\n"
    "r = os.path.join(os.path.dirname(pip.__file__), '__pip-runner__.py')\n"
    "print(pip.__version__)\n"
    "print(r if os.path.isfile(r) else '')\n";

static int pip_version_number(const char *v)
{
    int major = 0, minor = 0;

    if (sscanf(v, "%d.%d", &major, &minor) < 1)
        return 0;
    return major * 100 + minor;
}

static const struct pip_probe *pip_find(const char *python, char **envp)
{
    const char *argv[] = {python, "-c", pip_probe_code, NULL};
    struct proc_opts o = {
        .argv = argv,
        .envp = (const char *const *)envp,
        .timeout_ms = 60000,
        .grace_ms = 1000,
        .keep_stdout = 8192,
        .cancel_fd = -1,
    };
    struct proc_result pr;
    struct pip_probe *p;

    pthread_mutex_lock(&pip_lock);
    for (p = pip_probes; p; p = p->next) {
        if (strcmp(p->python, python) == 0)
            goto out;
    }
    p = xcalloc(1, sizeof(*p));
    p->python = xstrdup(python);
    if (proc_run(&o, &pr) == 0 && pr.exit_code == 0) {
        char *out = xstrdup(buf_str(&pr.out));
        char *nl = strchr(out, '\n');

        if (nl) {
            *nl = '\0';
            p->version = xstrdup(out);
            nl[1 + strcspn(nl + 1, "\r\n")] = '\0';
            if (nl[1])
                p->runner = xstrdup(nl + 1);
            p->usable = pip_version_number(p->version) >= PIP_PYTHON_SINCE;
        }
        free(out);
    }
    proc_result_free(&pr);
    p->next = pip_probes;
    pip_probes = p;

out:
    pthread_mutex_unlock(&pip_lock);
    return p;
}

/* Whether a requirements file names anything (not only blanks and comments). */
static int has_requirements(const char *path)
{
    struct buf text = BUF_INIT;
    const char *p;
    int found = 1;

    if (fs_read_file(path, ENV_MANIFEST_MAX, &text) < 0)
        goto out; /* let the installer report it */
    found = 0;
    for (p = buf_str(&text); *p && !found;) {
        p += strspn(p, " \t\r\n");
        if (*p && *p != '#')
            found = 1;
        p += strcspn(p, "\n");
    }

out:
    buf_free(&text);
    return found;
}

static int truthy(const char *v)
{
    return v && (strcmp(v, "1") == 0 || strcasecmp(v, "true") == 0 || strcasecmp(v, "yes") == 0 ||
                 strcasecmp(v, "on") == 0);
}

/* uv reads its own UV_* settings; pass it pip's from the environment. */
static void uv_add_pip_settings(struct args *a)
{
    static const char *const lists[][2] = {{"PIP_INDEX_URL", "--index-url"},
                                           {"PIP_EXTRA_INDEX_URL", "--extra-index-url"},
                                           {"PIP_FIND_LINKS", "--find-links"}};

    for (size_t i = 0; i < sizeof(lists) / sizeof(lists[0]); i++) {
        char *copy, *save = NULL;
        const char *v = getenv(lists[i][0]);

        if (!v)
            continue;
        copy = xstrdup(v);
        for (char *w = strtok_r(copy, " \t\n", &save); w; w = strtok_r(NULL, " \t\n", &save)) {
            args_add(a, lists[i][1]);
            args_add(a, w);
        }
        free(copy);
    }
    if (truthy(getenv("PIP_NO_INDEX")))
        args_add(a, "--no-index");
}

static int python_build(struct build *b)
{
    const struct runtime *rt = b->spec->rt;
    char *python = fs_join(b->dir, "bin/python");
    int install = has_requirements(b->manifest);
    struct args venv = {0}, pip = {0}, check = {0};
    const struct pip_probe *probe = NULL;
    char *uv = NULL;
    int rc;

    if (runtime_which("uv", &uv) == 0) {
        b->installer = "uv";
        args_add(&venv, uv);
        args_add(&venv, "venv");
        args_add(&venv, "--python");
        args_add(&venv, rt->path);
        args_add(&venv, b->dir);
        args_add(&pip, uv);
        args_add(&pip, "pip");
        args_add(&pip, "install");
        args_add(&pip, "--python");
        args_add(&pip, python);
        uv_add_pip_settings(&pip);
    } else {
        probe = pip_find(rt->path, b->envp);
        args_add(&venv, rt->path);
        args_add(&venv, "-m");
        args_add(&venv, "venv");
        if (probe->usable) {
            b->installer = "pip";
            args_add(&venv, "--without-pip");
            if (probe->runner) {
                args_add(&pip, python);
                args_add(&pip, probe->runner);
            } else {
                args_add(&pip, rt->path);
                args_add(&pip, "-m");
                args_add(&pip, "pip");
                args_add(&pip, "--python");
                args_add(&pip, python);
            }
        } else {
            b->installer = "venv-pip";
            args_add(&pip, python);
            args_add(&pip, "-m");
            args_add(&pip, "pip");
        }
        args_add(&venv, b->dir);
        args_add(&pip, "install");
        args_add(&pip, "--no-input");
        args_add(&pip, "--disable-pip-version-check");
        args_add(&pip, "--no-warn-script-location");
        /* Bytecode is compiled on first import instead, only for the
         * modules an action uses: see docs/environments.md. */
        args_add(&pip, "--no-compile");
    }
    args_add_lines(&pip, b->spec->options);
    args_add(&pip, "-r");
    args_add(&pip, b->manifest);

    if (probe)
        log_printf(b->log_fd, "# installer: %s (base pip %s%s)\n", b->installer,
                   probe->version ? probe->version : "missing or unusable",
                   probe->usable && probe->runner ? ", run in the new environment" : "");
    else
        log_printf(b->log_fd, "# installer: uv (%s)\n", uv);

    rc = step(b, "venv", &venv, b->pack_dir);
    if (rc == 0 && install)
        rc = step(b, "pip install", &pip, b->pack_dir);
    if (rc == 0 && !install)
        log_printf(b->log_fd, "# %s names no requirements: nothing to install\n", b->manifest);
    if (rc == 0) {
        args_add(&check, python);
        args_add(&check, "-c");
        args_add(&check, "import sys");
        rc = step(b, "interpreter check", &check, b->pack_dir);
    }

    args_free(&venv);
    args_free(&pip);
    args_free(&check);
    free(python);
    free(uv);
    return rc;
}

/* Name and version from a .dist-info folder's METADATA headers. */
static json_t *dist_info(const char *path, const char *folder)
{
    char *meta = fs_join(path, "METADATA");
    char *name = NULL, *version = NULL;
    char line[1024];
    json_t *out = NULL;
    FILE *f = fopen(meta, "re");

    while (f && fgets(line, sizeof(line), f) && line[0] != '\n' && line[0] != '\r') {
        line[strcspn(line, "\r\n")] = '\0';
        if (!name && strncmp(line, "Name: ", 6) == 0)
            name = xstrdup(line + 6);
        else if (!version && strncmp(line, "Version: ", 9) == 0)
            version = xstrdup(line + 9);
    }
    if (f)
        fclose(f);
    if (!name || !version) {
        /* <name>-<version>.dist-info; the name has no '-' */
        const char *dash = strchr(folder, '-');
        const char *end = strstr(folder, ".dist-info");

        if (dash && end && dash < end) {
            free(name);
            free(version);
            name = xasprintf("%.*s", (int)(dash - folder), folder);
            version = xasprintf("%.*s", (int)(end - dash - 1), dash + 1);
        }
    }
    if (name && version)
        out = json_pack("{s:s, s:s}", "name", name, "version", version);
    free(meta);
    free(name);
    free(version);
    return out;
}

static int by_name(const void *a, const void *b)
{
    const json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;

    return strcasecmp(json_string_value(json_object_get(x, "name")),
                      json_string_value(json_object_get(y, "name")));
}

static json_t *sorted_by_name(json_t *arr)
{
    size_t n = json_array_size(arr);
    json_t **items = xcalloc(n + 1, sizeof(*items));
    json_t *out = json_array();

    for (size_t i = 0; i < n; i++)
        items[i] = json_array_get(arr, i);
    qsort(items, n, sizeof(*items), by_name);
    for (size_t i = 0; i < n; i++)
        json_array_append(out, items[i]);
    free(items);
    json_decref(arr);
    return out;
}

/* The distributions in the venv's site-packages, sorted by name. */
static json_t *python_installed(const char *dir)
{
    char *lib = fs_join(dir, "lib");
    DIR *d = opendir(lib);
    struct dirent *de;
    json_t *arr = json_array();

    while (d && (de = readdir(d)) != NULL) {
        char *sp;
        DIR *s;
        struct dirent *se;

        if (strncmp(de->d_name, "python", 6) != 0)
            continue;
        sp = xasprintf("%s/%s/site-packages", lib, de->d_name);
        s = opendir(sp);
        while (s && (se = readdir(s)) != NULL) {
            size_t len = strlen(se->d_name);
            char *path;
            json_t *item;

            if (len < 10 || strcmp(se->d_name + len - 10, ".dist-info") != 0)
                continue;
            path = fs_join(sp, se->d_name);
            item = dist_info(path, se->d_name);
            if (item)
                json_array_append_new(arr, item);
            free(path);
        }
        if (s)
            closedir(s);
        free(sp);
    }
    if (d)
        closedir(d);
    free(lib);
    return sorted_by_name(arr);
}

/* ---- node ---------------------------------------------------------------------------- */

static const char *const node_dep_fields[] = {"dependencies", "devDependencies",
                                              "optionalDependencies", "peerDependencies", NULL};

/* "file:<relative>" becomes "file:<pack_dir>/<relative>". */
static json_t *absolute_spec(const char *spec, const char *pack_dir)
{
    if (!spec || strncmp(spec, "file:", 5) != 0 || spec[5] == '/' || spec[5] == '~')
        return NULL;
    return json_sprintf("file:%s/%s", pack_dir, spec + 5);
}

static void rewrite_deps(json_t *deps, const char *pack_dir)
{
    const char *name;
    json_t *v;

    json_object_foreach (deps, name, v) {
        json_t *abs = absolute_spec(json_string_value(v), pack_dir);

        if (abs)
            json_object_set_new(deps, name, abs);
    }
}

/* Copy package.json or package-lock.json from src to dst with its local
 * (file:) dependencies made absolute, so that they resolve from the pack. */
static int copy_node_manifest(const char *src, const char *dst, const char *pack_dir, int is_lock)
{
    struct buf text = BUF_INIT;
    json_error_t jerr;
    json_t *doc = NULL;
    char *out = NULL;
    int rc;

    rc = fs_read_file(src, ENV_MANIFEST_MAX, &text);
    if (rc < 0)
        goto out;
    doc = json_loadb(buf_str(&text), text.len, 0, &jerr);
    if (!json_is_object(doc)) {
        rc = err_set(ERR_INVALID, "%s:%d: %s", src, jerr.line,
                     doc ? "not a JSON object" : jerr.text);
        goto out;
    }

    if (is_lock) {
        /* lockfileVersion 2 and 3: packages[""]; 1: dependencies.*.version */
        json_t *root = json_object_get(json_object_get(doc, "packages"), "");
        const char *name;
        json_t *dep;

        for (const char *const *f = node_dep_fields; *f; f++)
            rewrite_deps(json_object_get(root, *f), pack_dir);
        json_object_foreach (json_object_get(doc, "dependencies"), name, dep) {
            json_t *abs =
                absolute_spec(json_string_value(json_object_get(dep, "version")), pack_dir);

            if (abs)
                json_object_set_new(dep, "version", abs);
        }
    } else {
        for (const char *const *f = node_dep_fields; *f; f++)
            rewrite_deps(json_object_get(doc, *f), pack_dir);
    }

    out = json_dumps(doc, JSON_INDENT(2));
    if (!out) {
        rc = err_set(ERR_FAIL, "%s: cannot serialise", dst);
        goto out;
    }
    rc = fs_write_atomic(dst, out, strlen(out), 0644);

out:
    free(out);
    json_decref(doc);
    buf_free(&text);
    return rc;
}

/* Whether package.json declares anything npm would install. */
static int node_has_dependencies(const char *path)
{
    json_t *doc = json_load_file(path, 0, NULL);
    int found;

    found = json_object_size(json_object_get(doc, "dependencies")) > 0 ||
            json_object_size(json_object_get(doc, "optionalDependencies")) > 0;
    json_decref(doc);
    return found;
}

/* npm is a node script: run it with the resolved node, not whichever
 * node its "#!/usr/bin/env node" line would find. */
static int npm_is_script(const char *path)
{
    char head[128] = {0};
    FILE *f = fopen(path, "re");
    int script;

    if (!f)
        return 0;
    script = fgets(head, sizeof(head), f) && strncmp(head, "#!", 2) == 0 && strstr(head, "node");
    fclose(f);
    return script;
}

static int node_build(struct build *b)
{
    char *npm = NULL, *lock_src = node_lock_path(b->manifest);
    char *pkg_dst = fs_join(b->dir, "package.json");
    char *lock_dst = fs_join(b->dir, "package-lock.json");
    char *modules = fs_join(b->dir, "node_modules");
    struct args install = {0};
    int rc;

    b->installer = "npm";
    if (runtime_which("npm", &npm) < 0) {
        log_printf(b->log_fd, "npm not found in PATH\n");
        rc = fail(b, "npm not found in PATH");
        goto out;
    }
    rc = fs_mkdirs(b->dir, 0755);
    if (rc == 0)
        rc = copy_node_manifest(b->manifest, pkg_dst, b->pack_dir, 0);
    if (rc == 0 && fs_exists(lock_src))
        rc = copy_node_manifest(lock_src, lock_dst, b->pack_dir, 1);
    if (rc < 0) {
        log_printf(b->log_fd, "%s\n", err_msg());
        rc = fail(b, "copying the manifest failed: %s", err_msg());
        goto out;
    }

    if (npm_is_script(npm))
        args_add(&install, b->spec->rt->path);
    args_add(&install, npm);
    args_add(&install, "install");
    args_add(&install, "--no-audit");
    args_add(&install, "--no-fund");
    args_add(&install, "--omit=dev");
    args_add(&install, "--no-update-notifier");
    args_add_lines(&install, b->spec->options);
    log_printf(b->log_fd, "# installer: npm (%s)\n", npm);
    rc = step(b, "npm install", &install, b->dir);
    if (rc < 0)
        goto out;

    if (!fs_exists(modules)) {
        if (node_has_dependencies(pkg_dst)) {
            rc = fail(b, "npm install did not create %s", modules);
            goto out;
        }
        rc = fs_mkdirs(modules, 0755);
        if (rc < 0)
            rc = fail(b, "%s", err_msg());
    }

out:
    args_free(&install);
    free(npm);
    free(lock_src);
    free(pkg_dst);
    free(lock_dst);
    free(modules);
    return rc;
}

static json_t *node_package(const char *path)
{
    char *pkg = fs_join(path, "package.json");
    json_t *doc = json_load_file(pkg, 0, NULL);
    const char *name = json_string_value(json_object_get(doc, "name"));
    const char *version = json_string_value(json_object_get(doc, "version"));
    json_t *out = NULL;

    if (name && version)
        out = json_pack("{s:s, s:s}", "name", name, "version", version);
    json_decref(doc);
    free(pkg);
    return out;
}

/* The top-level packages in node_modules (and node_modules/@scope/). */
static void node_scan(const char *dir, int scoped, json_t *arr)
{
    DIR *d = opendir(dir);
    struct dirent *de;

    while (d && (de = readdir(d)) != NULL) {
        char *path;

        if (de->d_name[0] == '.')
            continue;
        path = fs_join(dir, de->d_name);
        if (!scoped && de->d_name[0] == '@') {
            node_scan(path, 1, arr);
        } else {
            json_t *item = node_package(path);

            if (item)
                json_array_append_new(arr, item);
        }
        free(path);
    }
    if (d)
        closedir(d);
}

static json_t *node_installed(const char *dir)
{
    char *modules = fs_join(dir, "node_modules");
    json_t *arr = json_array();

    node_scan(modules, 0, arr);
    free(modules);
    return sorted_by_name(arr);
}

/* ---- ensure -------------------------------------------------------------------------- */

/* root made absolute, so that the paths handed out work from any folder. */
static char *absolute_root(const char *root)
{
    char *cwd;
    char *out;

    if (root[0] == '/')
        return xstrdup(root);
    cwd = getcwd(NULL, 0);
    if (!cwd)
        return xstrdup(root);
    out = fs_join(cwd, root[0] == '.' && root[1] == '/' ? root + 2 : root);
    free(cwd);
    return out;
}

static int write_ready(struct build *b, const char *interpreter, double seconds)
{
    const struct runtime *rt = b->spec->rt;
    char built_at[32];
    char *path = fs_join(b->dir, ".ready");
    json_t *installed;
    json_t *ready;
    char *text;
    int rc;

    clock_now(built_at, sizeof(built_at));
    installed = rt->kind == RUNTIME_PYTHON ? python_installed(b->dir) : node_installed(b->dir);
    ready = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:f, s:s?, s:o}", "key", b->key,
                      "runtime", rt->name, "interpreter", interpreter, "interpreter_version",
                      rt->version, "manifest", b->manifest, "pack_dir", b->pack_dir, "installer",
                      b->installer, "built_at", built_at, "seconds", seconds, "options",
                      b->spec->options, "installed", installed);
    text = json_dumps(ready, JSON_INDENT(2));
    rc = fs_write_atomic(path, text, strlen(text), 0644);
    if (rc < 0)
        rc = fail(b, "writing the ready marker failed: %s", err_msg());
    free(text);
    json_decref(ready);
    free(path);
    return rc;
}

/* Put what was built on disk before the marker that says it is there, so
 * that a power failure cannot leave a .ready over missing files. */
static int sync_dir(struct build *b)
{
    int fd = open(b->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int rc = 0;

    if (fd < 0)
        return fail(b, "open %s: %s", b->dir, strerror(errno));
    if (syncfs(fd) < 0)
        rc = fail(b, "syncfs %s: %s", b->dir, strerror(errno));
    close(fd);
    return rc;
}

/* After waiting on the lock: the build that held it failed, if its log
 * was written while we waited and ends with a failure. */
static int failed_while_waiting(const char *log_path, const struct timespec *since,
                                struct env_result *res)
{
    char *summary = NULL;
    struct stat st;
    off_t at;
    int fd, rc = 0;

    fd = open(log_path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return 0;
    if (fstat(fd, &st) < 0 || st.st_mtim.tv_sec < since->tv_sec ||
        (st.st_mtim.tv_sec == since->tv_sec && st.st_mtim.tv_nsec < since->tv_nsec))
        goto out;
    if (find_marker(fd, &summary, &at) < 0)
        goto out;
    res->error = error_with_tail(summary, fd, at);
    rc = err_set(ERR_FAIL, "environment %.12s: %s (in a build this one waited for)", res->key,
                 summary);

out:
    free(summary);
    close(fd);
    return rc;
}

/* End a failed build: the error with the log's tail, the log's last line
 * saying what failed, no partial folder. Returns ERR_FAIL. */
static int build_failed(struct build *b, struct env_result *res)
{
    const char *summary = b->summary ? b->summary : err_msg();
    struct stat st;
    off_t end = fstat(b->log_fd, &st) == 0 ? st.st_size : 0;
    char *copy = xstrdup(summary);

    res->error = error_with_tail(copy, b->log_fd, end);
    log_printf(b->log_fd, "\n" ENV_MARKER "%s]\n", copy);
    (void)fs_rmtree(res->dir);
    err_set(ERR_FAIL, "environment %.12s (%s): %s", res->key, b->spec->rt->name, copy);
    free(copy);
    return ERR_FAIL;
}

static int build_locked(const char *rtdir, const struct env_spec *spec, struct env_result *res)
{
    const struct runtime *rt = spec->rt;
    char *lock_path = xasprintf("%s.lock", res->dir);
    char *log_path = xasprintf("%s.log", res->dir);
    char *ready = fs_join(res->dir, ".ready");
    char *interpreter = NULL, *pack_dir = NULL;
    struct build b = {.spec = spec, .key = res->key, .dir = res->dir, .log_fd = -1};
    int64_t entered = clock_mono_ns(), started;
    int timeout_s = spec->timeout_s > 0 ? spec->timeout_s : ENV_TIMEOUT_S;
    struct timespec wait_start;
    char started_at[32];
    int lock_fd = -1, waited = 0, rc;

    rc = fs_mkdirs(rtdir, 0755);
    if (rc < 0)
        goto out;
    clock_gettime(CLOCK_REALTIME, &wait_start);
    lock_fd = lock_open(lock_path, LOCK_EX, 1, &waited);
    if (lock_fd < 0) {
        rc = lock_fd;
        goto out;
    }

    /* Someone else built it while we waited, or failed to. */
    if (fs_exists(ready)) {
        if (rt->kind == RUNTIME_PYTHON)
            res->interpreter = fs_join(res->dir, "bin/python");
        goto out;
    }
    if (waited) {
        rc = failed_while_waiting(log_path, &wait_start, res);
        if (rc < 0)
            goto out;
    }

    started = clock_mono_ns();
    b.deadline_ns = started + (int64_t)timeout_s * 1000000000;
    b.log_fd = open(log_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (b.log_fd < 0) {
        rc = err_errno(ERR_FAIL, "open %s", log_path);
        goto out;
    }
    pack_dir = pack_dir_of(spec);
    if (fs_realpath(pack_dir, &b.pack_dir) < 0)
        b.pack_dir = xstrdup(pack_dir);
    if (fs_realpath(spec->manifest, &b.manifest) < 0)
        b.manifest = xstrdup(spec->manifest);
    b.envp = build_envp();
    clock_now(started_at, sizeof(started_at));
    log_printf(b.log_fd, "# packrun environment %s (%s %s at %s)\n# manifest %s\n# started %s\n",
               res->key, rt->name, rt->version, rt->path, b.manifest, started_at);

    /* A folder without .ready is what a crashed build left. */
    if (fs_exists(res->dir)) {
        log_printf(b.log_fd, "# removing an incomplete folder left by an earlier build\n");
        rc = fs_rmtree(res->dir);
        if (rc < 0)
            fail(&b, "%s", err_msg());
    }

    if (rc == 0)
        rc = rt->kind == RUNTIME_PYTHON ? python_build(&b) : node_build(&b);
    if (rc == 0)
        rc = sync_dir(&b);
    if (rc == 0) {
        interpreter = fs_join(res->dir, "bin/python");
        rc = write_ready(&b, rt->kind == RUNTIME_PYTHON ? interpreter : rt->path,
                         seconds_since(started));
    }
    if (rc < 0) {
        rc = build_failed(&b, res);
        goto out;
    }

    log_printf(b.log_fd, "\n# ready after %.2f s\n", seconds_since(started));
    res->created = 1;
    if (rt->kind == RUNTIME_PYTHON) {
        res->interpreter = interpreter;
        interpreter = NULL;
    }

out:
    /* What this call spent: building, or waiting for another build. */
    res->seconds = seconds_since(entered);
    if (b.log_fd >= 0)
        close(b.log_fd);
    if (lock_fd >= 0)
        close(lock_fd);
    envp_free(b.envp);
    free(b.manifest);
    free(b.pack_dir);
    free(b.summary);
    free(pack_dir);
    free(interpreter);
    free(lock_path);
    free(log_path);
    free(ready);
    return rc;
}

int env_ensure(const char *root, const struct env_spec *spec, struct env_result *res)
{
    char *abs_root = NULL, *rtdir = NULL, *ready = NULL;
    struct stat st;
    int rc;

    memset(res, 0, sizeof(*res));
    rc = env_key(spec, res->key);
    if (rc < 0) {
        res->error = xstrdup(err_msg());
        return rc;
    }

    abs_root = absolute_root(root);
    rtdir = fs_join(abs_root, spec->rt->name);
    res->dir = fs_join(rtdir, res->key);
    ready = fs_join(res->dir, ".ready");

    if (stat(ready, &st) == 0) {
        if (spec->rt->kind == RUNTIME_PYTHON)
            res->interpreter = fs_join(res->dir, "bin/python");
        goto out;
    }
    if (spec->ready_only) {
        rc = err_set(ERR_NOTFOUND, "environment %.12s is not ready", res->key);
        goto out;
    }
    rc = build_locked(rtdir, spec, res);
    if (rc < 0 && !res->error)
        res->error = xstrdup(err_msg());

out:
    free(abs_root);
    free(rtdir);
    free(ready);
    return rc;
}

void env_result_free(struct env_result *res)
{
    if (!res)
        return;
    free(res->dir);
    free(res->interpreter);
    free(res->error);
    memset(res, 0, sizeof(*res));
}

/* ---- holding ------------------------------------------------------------------------- */

int env_hold(const char *dir)
{
    char *lock_path = xasprintf("%s.lock", dir);
    char *ready = fs_join(dir, ".ready");
    int fd;

    fd = lock_open(lock_path, LOCK_SH, 0, NULL);
    if (fd >= 0 && !fs_exists(ready)) {
        close(fd);
        fd = err_set(ERR_NOTFOUND, "environment %s is not ready (removed since it was ensured?)",
                     dir);
    } else if (fd == ERR_NOTFOUND) {
        fd = err_set(ERR_NOTFOUND, "environment %s does not exist", dir);
    }
    free(lock_path);
    free(ready);
    return fd;
}

void env_release(int fd)
{
    if (fd >= 0)
        close(fd);
}

/* ---- listing and removal ------------------------------------------------------------- */

/* What exists under root/<runtime>/: {key: HAS_* bits}. */
static json_t *scan_runtime(const char *rtdir)
{
    json_t *seen = json_object();
    DIR *d = opendir(rtdir);
    struct dirent *de;

    while (d && (de = readdir(d)) != NULL) {
        size_t len = strlen(de->d_name);
        char key[65];
        int bit = 0;

        if (len < 64 || !is_hex(de->d_name, 64))
            continue;
        if (len == 64)
            bit = HAS_DIR;
        else if (strcmp(de->d_name + 64, ".log") == 0)
            bit = HAS_LOG;
        else if (strcmp(de->d_name + 64, ".lock") == 0)
            bit = HAS_LOCK;
        else
            continue;
        memcpy(key, de->d_name, 64);
        key[64] = '\0';
        json_object_set_new(seen, key,
                            json_integer(json_integer_value(json_object_get(seen, key)) | bit));
    }
    if (d)
        closedir(d);
    return seen;
}

/* The runtime folders under root. */
static json_t *scan_root(const char *root)
{
    json_t *names = json_array();
    DIR *d = opendir(root);
    struct dirent *de;

    while (d && (de = readdir(d)) != NULL) {
        char *path;
        struct stat st;

        if (de->d_name[0] == '.')
            continue;
        path = fs_join(root, de->d_name);
        if (stat(path, &st) == 0 && S_ISDIR(st.st_mode))
            json_array_append_new(names, json_string(de->d_name));
        free(path);
    }
    if (d)
        closedir(d);
    return names;
}

/* 1 when someone holds the lock at path in a way that conflicts with op. */
static int lock_busy(const char *path, int op)
{
    int fd = open(path, O_RDWR | O_CLOEXEC);
    int busy;

    if (fd < 0)
        return 0;
    busy = flock(fd, op | LOCK_NB) < 0 && errno == EWOULDBLOCK;
    close(fd);
    return busy;
}

static json_t *describe(const char *root, const char *runtime, const char *key, int bits)
{
    char *dir = xasprintf("%s/%s/%s", root, runtime, key);
    char *ready_path = fs_join(dir, ".ready");
    char *lock_path = xasprintf("%s.lock", dir);
    char *log_path = xasprintf("%s.log", dir);
    json_t *ready = json_load_file(ready_path, 0, NULL);
    json_t *out = json_pack("{s:s, s:s, s:s}", "key", key, "runtime", runtime, "dir", dir);
    long long size = 0;
    const char *status;

    if (json_is_object(ready))
        status = "ready";
    else if (lock_busy(lock_path, LOCK_SH))
        status = "building";
    else if (bits & HAS_LOG)
        status = "failed";
    else
        status = "incomplete";
    json_object_set_new(out, "status", json_string(status));

    if (bits & HAS_DIR)
        (void)fs_tree_size(dir, &size);
    json_object_set_new(out, "size_bytes", json_integer(size));

    static const char *const fields[] = {
        "built_at", "seconds",   "interpreter", "interpreter_version", "manifest",
        "pack_dir", "installer", "options",     "installed",           NULL};
    for (const char *const *f = fields; *f; f++) {
        json_t *v = json_object_get(ready, *f);

        json_object_set(out, *f, v ? v : json_null());
    }

    json_object_set_new(out, "in_use", json_boolean(ready && lock_busy(lock_path, LOCK_EX)));
    json_object_set_new(out, "error", json_null());
    if (strcmp(status, "failed") == 0) {
        int fd = open(log_path, O_RDONLY | O_CLOEXEC);
        char *summary = NULL;
        off_t at;

        if (fd >= 0 && find_marker(fd, &summary, &at) == 0)
            json_object_set_new(out, "error", json_string(summary));
        else
            json_object_set_new(out, "error", json_string("the build was interrupted"));
        free(summary);
        if (fd >= 0)
            close(fd);
    } else if (strcmp(status, "incomplete") == 0) {
        json_object_set_new(out, "error", json_string("the build was interrupted"));
    }
    json_object_set_new(out, "log_path", (bits & HAS_LOG) ? json_string(log_path) : json_null());

    json_decref(ready);
    free(dir);
    free(ready_path);
    free(lock_path);
    free(log_path);
    return out;
}

static int by_key(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/*
 * Call fn for every environment under root (a key with a folder or a
 * log; a lone lock file is not one), runtime by runtime, key by key.
 * fn returns 0 to go on, 1 to stop, or a negative ERR_*.
 */
typedef int (*env_visit_fn)(void *ctx, const char *runtime, const char *key, int bits);

static int visit(const char *root, env_visit_fn fn, void *ctx)
{
    json_t *runtimes = scan_root(root);
    size_t i;
    json_t *rt;
    int rc = 0;

    json_array_foreach (runtimes, i, rt) {
        const char *name = json_string_value(rt);
        char *rtdir = fs_join(root, name);
        json_t *seen = scan_runtime(rtdir);
        size_t n = json_object_size(seen), k = 0;
        const char **keys = xcalloc(n + 1, sizeof(*keys));
        const char *key;
        json_t *bits;

        json_object_foreach (seen, key, bits) {
            keys[k++] = key;
        }
        qsort(keys, n, sizeof(*keys), by_key);
        for (k = 0; k < n && rc == 0; k++) {
            int b = (int)json_integer_value(json_object_get(seen, keys[k]));

            if (b & (HAS_DIR | HAS_LOG))
                rc = fn(ctx, name, keys[k], b);
        }
        free(keys);
        json_decref(seen);
        free(rtdir);
        if (rc != 0)
            break;
    }
    json_decref(runtimes);
    return rc < 0 ? rc : 0;
}

struct list_ctx {
    const char *root;
    json_t *out;
};

static int list_one(void *ctx, const char *runtime, const char *key, int bits)
{
    struct list_ctx *c = ctx;

    json_array_append_new(c->out, describe(c->root, runtime, key, bits));
    return 0;
}

int env_list(const char *root, json_t **out)
{
    char *abs_root = absolute_root(root);
    struct list_ctx c = {abs_root, json_array()};
    int rc = visit(abs_root, list_one, &c);

    free(abs_root);
    if (rc < 0) {
        json_decref(c.out);
        return rc;
    }
    *out = c.out;
    return 0;
}

struct find_ctx {
    const char *prefix;
    size_t len;
    int matches;
    char runtime[64];
    char key[65];
    int bits;
};

static int find_one(void *ctx, const char *runtime, const char *key, int bits)
{
    struct find_ctx *c = ctx;

    if (strncmp(key, c->prefix, c->len) != 0)
        return 0;
    c->matches++;
    snprintf(c->runtime, sizeof(c->runtime), "%s", runtime);
    snprintf(c->key, sizeof(c->key), "%s", key);
    c->bits = bits;
    return 0;
}

/* Resolve a key or a unique prefix of at least 8 digits. */
static int find_key(const char *root, const char *prefix, struct find_ctx *c)
{
    size_t len = prefix ? strlen(prefix) : 0;
    int rc;

    memset(c, 0, sizeof(*c));
    if (len < 8 || len > 64 || !is_hex(prefix, len))
        return err_set(ERR_INVALID, "environment key '%s': give 8 to 64 lowercase hex digits",
                       prefix ? prefix : "");
    c->prefix = prefix;
    c->len = len;
    rc = visit(root, find_one, c);
    if (rc < 0)
        return rc;
    if (c->matches == 0)
        return err_set(ERR_NOTFOUND, "no environment %s", prefix);
    if (c->matches > 1)
        return err_set(ERR_INVALID, "environment key %s matches %d environments; give more digits",
                       prefix, c->matches);
    return 0;
}

int env_show(const char *root, const char *key, json_t **out)
{
    char *abs_root = absolute_root(root);
    struct find_ctx c;
    json_t *env = NULL;
    int rc;

    rc = find_key(abs_root, key, &c);
    if (rc < 0)
        goto out;
    env = describe(abs_root, c.runtime, c.key, c.bits);
    if (c.bits & HAS_LOG) {
        const char *log_path = json_string_value(json_object_get(env, "log_path"));
        struct buf text = BUF_INIT;
        struct stat st;
        int fd = open(log_path, O_RDONLY | O_CLOEXEC);

        if (fd >= 0 && fstat(fd, &st) == 0) {
            off_t from = st.st_size > ENV_SHOW_LOG_MAX ? st.st_size - ENV_SHOW_LOG_MAX : 0;

            read_range(fd, from, st.st_size, &text);
            json_object_set_new(env, "log_truncated", json_boolean(from > 0));
        }
        if (fd >= 0)
            close(fd);
        json_object_set_new(env, "log", json_stringn(buf_str(&text), text.len));
        buf_free(&text);
    } else {
        json_object_set_new(env, "log", json_null());
    }
    *out = env;

out:
    free(abs_root);
    return rc;
}

/*
 * Remove the environment root/runtime/key with its log and lock file,
 * under the exclusive lock, taken without waiting: ERR_CONFLICT when an
 * execution holds it or a build runs.
 */
static int remove_locked(const char *root, const char *runtime, const char *key)
{
    char *dir = xasprintf("%s/%s/%s", root, runtime, key);
    char *lock_path = xasprintf("%s.lock", dir);
    char *log_path = xasprintf("%s.log", dir);
    int fd, rc;

    fd = lock_open(lock_path, LOCK_EX | LOCK_NB, 1, NULL);
    if (fd == ERR_CONFLICT) {
        rc = err_set(ERR_CONFLICT, "environment %s is in use (by an execution or a build)", key);
        goto out;
    }
    if (fd < 0) {
        rc = fd;
        goto out;
    }
    rc = fs_rmtree(dir);
    if (rc == 0 && unlink(log_path) < 0 && errno != ENOENT)
        rc = err_errno(ERR_FAIL, "unlink %s", log_path);
    if (rc == 0 && unlink(lock_path) < 0 && errno != ENOENT)
        rc = err_errno(ERR_FAIL, "unlink %s", lock_path);
    close(fd);

out:
    free(dir);
    free(lock_path);
    free(log_path);
    return rc;
}

struct gc_ctx {
    const char *root;
    json_t *keep; /* {key: true} */
    json_t *removed;
    int rc;
};

static int gc_one(void *ctx, const char *runtime, const char *key, int bits)
{
    struct gc_ctx *c = ctx;
    int rc;

    if (json_object_get(c->keep, key))
        return 0;
    rc = remove_locked(c->root, runtime, key);
    if (rc == 0)
        json_array_append_new(c->removed, json_string(key));
    else if (rc != ERR_CONFLICT && c->rc == 0)
        c->rc = rc;
    return 0;
}

int env_gc(const char *root, const json_t *keep, json_t **removed)
{
    char *abs_root = absolute_root(root);
    struct gc_ctx c = {abs_root, json_object(), json_array(), 0};
    size_t i;
    json_t *k;
    int rc;

    json_array_foreach (keep, i, k) {
        if (json_is_string(k))
            json_object_set_new(c.keep, json_string_value(k), json_true());
    }
    rc = visit(abs_root, gc_one, &c);
    if (rc == 0)
        rc = c.rc;
    *removed = c.removed;
    json_decref(c.keep);
    free(abs_root);
    return rc;
}

int env_remove(const char *root, const char *key)
{
    char *abs_root = absolute_root(root);
    struct find_ctx c;
    int rc;

    rc = find_key(abs_root, key, &c);
    if (rc == 0)
        rc = remove_locked(abs_root, c.runtime, c.key);
    free(abs_root);
    return rc;
}

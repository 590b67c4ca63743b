#include "runner/runtime.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "runner/proc.h"
#include "util/buf.h"
#include "util/err.h"
#include "util/fs.h"

static const char *const kind_names[RUNTIME_COUNT] = {"python", "node", "shell", "native"};
static const char *const default_commands[RUNTIME_COUNT] = {"python3", "node", "/bin/bash", NULL};

/* Asked of the interpreter: its real executable, then its version. */
static const char *const probe_args[RUNTIME_COUNT] = {
    "import sys, platform; print(sys.executable); print(platform.python_version())",
    "console.log(process.execPath); console.log(process.versions.node)",
    "echo \"$BASH\"; echo \"${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}.${BASH_VERSINFO[2]}\"",
    NULL,
};
static const char *const probe_flags[RUNTIME_COUNT] = {"-c", "-e", "-c", NULL};

int runtime_kind_parse(const char *name)
{
    for (int i = 0; i < RUNTIME_COUNT; i++) {
        if (strcmp(name, kind_names[i]) == 0)
            return i;
    }
    return -1;
}

int runtime_which(const char *name, char **out)
{
    const char *path = getenv("PATH");
    char *copy, *save = NULL;
    int rc = err_set(ERR_NOTFOUND, "%s: not found in PATH", name);

    if (strchr(name, '/'))
        return access(name, X_OK) == 0 ? fs_realpath(name, out)
                                       : err_errno(ERR_NOTFOUND, "%s", name);
    copy = xstrdup(path ? path : "/usr/local/bin:/usr/bin:/bin");
    for (char *dir = strtok_r(copy, ":", &save); dir; dir = strtok_r(NULL, ":", &save)) {
        char *candidate = fs_join(*dir ? dir : ".", name);

        if (access(candidate, X_OK) == 0) {
            rc = fs_realpath(candidate, out);
            free(candidate);
            break;
        }
        free(candidate);
    }
    free(copy);
    return rc;
}

void runtime_resolve(enum runtime_kind kind, const char *command, const struct runtime_user *user,
                     struct runtime *out)
{
    const char *cmd = command ? command : default_commands[kind];
    int as_other = user && user->drop;
    extern char **environ;
    struct proc_result res;
    char *exe = NULL;
    int rc;

    memset(out, 0, sizeof(*out));
    out->kind = kind;
    out->name = kind_names[kind];
    out->command = cmd ? xstrdup(cmd) : NULL;
    if (kind == RUNTIME_NATIVE)
        return;

    /* Another user searches PATH itself, through env(1): it may not be
     * able to run what this process finds first (a pyenv under /root). */
    rc = runtime_which(as_other ? "env" : cmd, &exe);
    if (rc < 0) {
        out->error = xstrdup(err_msg());
        return;
    }

    const char *own_argv[] = {exe, probe_flags[kind], probe_args[kind], NULL};
    const char *env_argv[] = {exe, cmd, probe_flags[kind], probe_args[kind], NULL};
    struct proc_opts opts = {
        .argv = as_other ? env_argv : own_argv,
        .envp = (const char *const *)environ,
        .cwd = "/",
        .timeout_ms = 30000,
        .grace_ms = 1000,
        .keep_stdout = 8192,
        .cancel_fd = -1,
        .drop_privileges = as_other,
        .uid = as_other ? user->uid : 0,
        .gid = as_other ? user->gid : 0,
    };

    rc = proc_run(&opts, &res);
    if (rc == 0 && res.exit_code == 0) {
        char *nl = strchr(buf_str(&res.out), '\n');

        if (nl) {
            *nl = '\0';
            out->path = xstrdup(buf_str(&res.out));
            out->version = xstrdup(nl + 1);
            out->version[strcspn(out->version, "\r\n")] = '\0';
        }
    }
    if (!out->path) {
        out->error = rc < 0 ? xstrdup(err_msg())
                            : xasprintf("%s: not found, or it could not tell its version "
                                        "(exit %d)",
                                        cmd, res.exit_code);
    }
    proc_result_free(&res);
    free(exe);
}

void runtime_free(struct runtime *rt)
{
    free(rt->command);
    free(rt->path);
    free(rt->version);
    free(rt->error);
    memset(rt, 0, sizeof(*rt));
}

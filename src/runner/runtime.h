/*
 * runtime: the interpreters actions run on, resolved once per worker.
 *
 * A runtime is python, node, shell or native. Its interpreter command
 * (config, or python3, node, /bin/bash) is resolved once, when the
 * worker starts, to the real executable and its version, by asking the
 * interpreter itself: a pyenv shim is a shell script that costs ~100 ms
 * per start, the real binary behind it does not.
 */
#ifndef PACKRUN_RUNTIME_H
#define PACKRUN_RUNTIME_H

#include <jansson.h>
#include <sys/types.h>

enum runtime_kind { RUNTIME_PYTHON, RUNTIME_NODE, RUNTIME_SHELL, RUNTIME_NATIVE, RUNTIME_COUNT };

struct runtime {
    enum runtime_kind kind;
    const char *name; /* "python", ... */
    char *command;    /* as configured */
    char *path;       /* the resolved executable; NULL if unavailable */
    char *version;    /* "3.11.7"; NULL if unavailable */
    char *error;      /* why it is unavailable, or NULL */
};

/* Returns the kind for a runner_type name, or -1. */
int runtime_kind_parse(const char *name);

/* Who actions will run as, so that the interpreter found is one they can
 * run: the search of PATH and the question are made as that user. */
struct runtime_user {
    int drop; /* 0: as this process */
    uid_t uid;
    gid_t gid;
};

/* Resolve the runtime kind run by command (NULL: the built-in default)
 * for user (NULL: this process). Never fails: an interpreter that cannot
 * be found leaves path NULL and error set. */
void runtime_resolve(enum runtime_kind kind, const char *command, const struct runtime_user *user,
                     struct runtime *out);

void runtime_free(struct runtime *rt);

/* Search PATH for name (unless it contains '/'), then realpath. Caller
 * frees *out. ERR_NOTFOUND when it is nowhere. */
int runtime_which(const char *name, char **out);

#endif

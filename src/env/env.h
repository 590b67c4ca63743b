/*
 * env: the isolated environment of a pack's runtime, ensured on demand.
 *
 * An environment is a folder ENVS/<runtime>/<key>/ (a Python virtualenv,
 * or a folder holding node_modules) built from a pack's manifest
 * (requirements.txt, package.json). Its key is the SHA-256 of what
 * decides its contents: a format version, the runtime, the resolved
 * interpreter's path and version, the manifest's bytes and the install
 * options. Packs with the same key share one environment; a changed
 * manifest is a new key, so an upgrade never rebuilds a folder that a
 * running action uses.
 *
 * env_ensure() is idempotent, safe when many threads and processes race
 * for one key (an exclusive flock per key; different keys build in
 * parallel), and safe after a crash: a folder is used only once its
 * .ready marker exists, which is written last, atomically; a folder
 * without it is removed and built again.
 */
#ifndef PACKRUN_ENV_H
#define PACKRUN_ENV_H

#include <jansson.h>

#include "runner/runtime.h"

#define ENV_FORMAT_VERSION 1

/* Bytes of the build log kept in env_result.error. */
#define ENV_LOG_TAIL 2048

struct env_spec {
    const struct runtime *rt; /* resolved interpreter, borrowed */
    const char *manifest;     /* path of requirements.txt / package.json */
    const char *pack_dir;     /* the pack release folder (for file: dependencies) */
    const char *options;      /* install options that change the result, or NULL */
    int timeout_s;            /* limit on one build; 0: 1800 */
};

struct env_result {
    char key[65];
    char *dir;         /* ENVS/<runtime>/<key> */
    char *interpreter; /* python: <dir>/bin/python; node: NULL */
    int created;       /* this call built it */
    double seconds;    /* build time, when created */
    char *error;       /* why it could not be built (with the log's tail), or NULL */
};

/* Compute the key of spec into key (64 hex digits and a NUL). */
int env_key(const struct env_spec *spec, char key[65]);

/*
 * Make sure the environment for spec exists under root, building it if
 * needed. On success fills res (free with env_result_free()). On a
 * failed build returns a negative ERR_* and fills res->key and
 * res->error; the partial folder is gone and the build log stays at
 * ENVS/<runtime>/<key>.log.
 */
int env_ensure(const char *root, const struct env_spec *spec, struct env_result *res);

void env_result_free(struct env_result *res);

/*
 * Hold the environment at dir shared while an execution runs on it, so
 * that env_gc() never removes it. Returns an fd to pass to env_release(),
 * or a negative ERR_*.
 */
int env_hold(const char *dir);
void env_release(int fd);

/* Describe the environments under root: [{key, runtime, dir, status
 * (ready|building|failed), size_bytes, built_at, seconds, interpreter,
 * manifest, installed}]. */
int env_list(const char *root, json_t **out);

/* One environment by key (or a unique prefix of at least 8 digits), with
 * its build log under "log". */
int env_show(const char *root, const char *key, json_t **out);

/* Remove every environment whose key is not in keep (an array of keys)
 * and that no execution holds. Sets *removed (caller decrefs) to the keys
 * removed. */
int env_gc(const char *root, const json_t *keep, json_t **removed);

/* Remove the environment for key so that the next ensure builds it anew;
 * ERR_CONFLICT while an execution holds it. */
int env_remove(const char *root, const char *key);

#endif

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
 *
 * Layout under ENVS (the root argument, e.g. DATA/envs):
 *
 *   <runtime>/<key>/         the environment (python: a virtualenv)
 *   <runtime>/<key>/.ready   JSON: key, runtime, interpreter, interpreter_version,
 *                            manifest, pack_dir, installer, built_at, seconds,
 *                            options, installed [{name, version}]
 *   <runtime>/<key>.log      the last build's log (kept when it failed)
 *   <runtime>/<key>.lock     flock: exclusive while building, shared while held
 *
 * The process must have called hash_init() and should ignore SIGPIPE
 * (builds run child processes through proc_run()).
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
    const char *options;      /* extra installer arguments, one per line, or NULL: added
                                 to pip install / uv pip install / npm install, and part
                                 of the key */
    int timeout_s;            /* limit on one build; 0: 1800 */
    int ready_only;           /* only the fast path: ERR_NOTFOUND instead of a build */
};

struct env_result {
    char key[65];
    char *dir;         /* ENVS/<runtime>/<key>, absolute */
    char *interpreter; /* python: <dir>/bin/python; node: NULL */
    int created;       /* this call built it */
    double seconds;    /* time this call spent building or waiting for a build; 0 when
                          it was ready at once */
    char *error;       /* why it could not be built (with the log's tail), or NULL */
};

/*
 * Compute the key of spec into key (64 hex digits and a NUL): SHA-256 of
 * ENV_FORMAT_VERSION, the runtime, the interpreter's path and version,
 * the manifest's digest (node: and package-lock.json's), options, the
 * index settings in the environment (PIP_INDEX_URL, PIP_EXTRA_INDEX_URL,
 * PIP_FIND_LINKS, PIP_NO_INDEX; npm_config_registry), and pack_dir when
 * the manifest refers to files of the pack (file:, ./path, -e, -r, -c).
 * The manifest's digest is cached per path while stat(2) shows the same
 * file. ERR_INVALID when the runtime has no environments or no
 * interpreter, ERR_NOTFOUND when the manifest does not exist.
 */
int env_key(const struct env_spec *spec, char key[65]);

/*
 * Make sure the environment for spec exists under root, building it if
 * needed. On success fills res (free with env_result_free()). When it is
 * ready this costs one stat(2) and the key. On a failed build returns
 * ERR_FAIL and fills res->key and res->error ("<step> failed (exit N):\n"
 * and the last ENV_LOG_TAIL bytes of the log); the partial folder is gone
 * and the build log stays at ENVS/<runtime>/<key>.log. Callers that
 * waited for a build that failed get its error without building again.
 * Other failures (no interpreter, no manifest) return their ERR_* with
 * res->error set too. Free res in every case.
 */
int env_ensure(const char *root, const struct env_spec *spec, struct env_result *res);

void env_result_free(struct env_result *res);

/*
 * Hold the environment at dir shared while an execution runs on it, so
 * that env_gc() never removes it. Returns an fd to pass to env_release(),
 * or a negative ERR_*: ERR_NOTFOUND when it was removed after it was
 * ensured (ensure again, then hold). Blocks only while env_gc() or
 * env_remove() is deciding about this environment.
 */
int env_hold(const char *dir);
void env_release(int fd);

/*
 * Describe the environments under root, by runtime and key: [{key,
 * runtime, dir, status, size_bytes, in_use, error, log_path, and from
 * .ready (null otherwise): built_at, seconds, interpreter,
 * interpreter_version, manifest, pack_dir, installer, options,
 * installed}]. status: ready; building (a build holds the lock); failed
 * (a log without an environment; error says what failed); incomplete (a
 * folder without .ready that nobody builds: a killed build's leftovers).
 * in_use: an execution holds it. Which packs use an environment is the
 * store's knowledge, not this module's.
 */
int env_list(const char *root, json_t **out);

/* One environment by key (or a unique prefix of at least 8 digits), as
 * env_list() describes it, with the text of its build log under "log"
 * (the last MiB; "log_truncated" says whether there was more) or null.
 * ERR_INVALID for a malformed or ambiguous prefix, ERR_NOTFOUND. */
int env_show(const char *root, const char *key, json_t **out);

/* Remove every environment whose key is not in keep (an array of keys),
 * with its log and lock file, unless an execution holds it or a build
 * runs (skipped, without waiting). Sets *removed (caller decrefs) to the
 * keys removed, also when it returns the first error it met. */
int env_gc(const char *root, const json_t *keep, json_t **removed);

/* Remove the environment for key (or a unique prefix) with its log, so
 * that the next ensure builds it anew; ERR_CONFLICT while an execution
 * holds it or a build runs, ERR_NOTFOUND when there is none. */
int env_remove(const char *root, const char *key);

#endif

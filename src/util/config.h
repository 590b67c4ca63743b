/*
 * config: the settings of the daemons, from one YAML file.
 *
 * Every setting has a default, may be set in the file given with
 * --config, and may be overridden by an environment variable named
 * PACKRUN_ and the key in capitals (PACKRUN_SLOTS=4,
 * PACKRUN_RUNTIMES_PYTHON_INTERPRETER=/usr/bin/python3). Command-line
 * flags override both. Unknown keys in the file are an error, so that a
 * typo does not pass silently.
 */
#ifndef PACKRUN_CONFIG_H
#define PACKRUN_CONFIG_H

#include <jansson.h>
#include <stdint.h>

struct config {
    char *data_dir;                  /* data: ./.packrun */
    char *db_url;                    /* db: <data>/packrun.db */
    char *listen;                    /* listen: 127.0.0.1:8080 */
    char *api_url;                   /* api_url: where workers and actions reach the API */
    char *worker_name;               /* worker_name: hostname, or hostname-pid for `worker` */
    int slots;                       /* slots: number of cores */
    int64_t default_timeout_seconds; /* 600 */
    int64_t kill_grace_ms;           /* kill_grace_seconds: 5 */
    int64_t stop_grace_ms;           /* stop_grace_seconds: 10 */
    int64_t output_cap_bytes;        /* 10 MiB */
    int64_t max_body_bytes;          /* 64 MiB */
    int64_t heartbeat_ms;            /* heartbeat_seconds: 2 */
    int64_t worker_stale_ms;         /* worker_stale_seconds: 15 */
    char *interpreters[3];           /* runtimes.{python,node,shell}.interpreter */
    char *env_on_failure;            /* environments.on_failure: fallback | fail */
    int64_t env_build_timeout_ms;    /* environments.build_timeout_seconds: 1800 */
    char *pip_index_url;             /* environments.pip_index_url */
    char *pip_find_links;            /* environments.pip_find_links */
    char *pip_no_index;              /* environments.pip_no_index: "1" for offline */
    char *pip_options;               /* environments.pip_options: one argument per line */
    char *npm_options;               /* environments.npm_options: likewise */
    int metrics_public;              /* metrics_public: /metrics without a token (false) */
    int allow_insecure_listen;       /* allow_insecure_listen: plain HTTP off loopback (false) */
    char *run_as;                    /* run_as: the user actions run as when root: packrun */
    int64_t limit_open_files;        /* limits.open_files: 1024 */
    int64_t limit_processes;         /* limits.processes: 4096 */
    int64_t limit_address_space;     /* limits.address_space_bytes: 0 (none) */
    char *log_level;                 /* info */
    char *log_format;                /* logfmt | json */
};

/* Fill cfg with the defaults, then the file (NULL: none), then the
 * environment. ERR_INVALID naming the file and key on a bad value. */
int config_load(const char *path, struct config *cfg);

/* Derive what depends on other settings (db from data, api_url from
 * listen). Call after flags have been applied. */
void config_finish(struct config *cfg);

/* Replace a string setting (the old value is freed; value is copied). */
void config_set(char **field, const char *value);

/* The effective settings as JSON, for `packrun config show`. */
json_t *config_to_json(const struct config *cfg);

void config_free(struct config *cfg);

#endif

/*
 * packrun: one binary for the daemons (up, server, worker) and the CLI.
 */
#include <dirent.h>
#include <errno.h>
#include <getopt.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "api/api.h"
#include "api/auth.h"
#include "cli/cli.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/config.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hash.h"
#include "util/log.h"
#include "util/yaml.h"
#include "worker/worker.h"

/* The token `packrun up` makes for the local CLI on first start. */
#define LOCAL_TOKEN_NAME "local-cli"

enum role { ROLE_UP, ROLE_SERVER, ROLE_WORKER };

static const char *const role_names[] = {"up", "server", "worker"};

static void usage(FILE *out)
{
    fputs("usage: packrun COMMAND [OPTIONS]\n"
          "\n"
          "daemons:\n"
          "  up      [--data DIR] [--listen HOST:PORT] [--slots N] [--packs DIR] [--config FILE]\n"
          "  server  [--data DIR] [--db URL] [--listen HOST:PORT] [--packs DIR] [--config FILE]\n"
          "  worker  [--data DIR] [--db URL] [--api URL] [--slots N] [--name NAME]\n"
          "          [--config FILE]\n"
          "  (all take --log-level debug|info|warn|error and --log-format logfmt|json;\n"
          "   up and server take --insecure-listen to listen off loopback behind a TLS proxy)\n"
          "\n"
          "tokens (on the server: they open the database directly):\n"
          "  token create NAME --role admin|operator|viewer [--json]\n"
          "  token list [--json]\n"
          "  token revoke NAME\n"
          "  (all take --data DIR, --db URL and --config FILE)\n"
          "\n"
          "client (talks to the API; see `packrun help`):\n"
          "  pack install DIR | list | show REF | remove REF\n"
          "  action list [PACK] | show REF\n"
          "  run ACTION [key=value ...] [--json] [--no-wait] [--timeout S]\n"
          "  execution list | show ID | cancel ID | logs ID [stdout|stderr] [-f]\n"
          "  worker list\n",
          out);
}

/* Install every pack folder under dir, at start. */
static int install_packs(const struct config *cfg, struct store *st, const char *dir)
{
    struct dirent **names = NULL;
    int n, failed = 0;

    n = scandir(dir, &names, NULL, alphasort);
    if (n < 0)
        return err_errno(ERR_FAIL, "--packs %s", dir);
    for (int i = 0; i < n; i++) {
        char *path = fs_join(dir, names[i]->d_name);
        char *yaml = fs_join(path, "pack.yaml");
        char *abs = NULL;
        json_t *pack = NULL, *problems = NULL;

        if (names[i]->d_name[0] != '.' && fs_exists(yaml) && fs_realpath(path, &abs) == 0) {
            if (api_register_pack(cfg, st, abs, &pack, &problems) < 0) {
                log_error("main", "pack %s not installed: %s", abs, err_msg());
                failed++;
            } else {
                log_info("main", "pack %s %s installed from %s",
                         json_string_value(json_object_get(pack, "ref")),
                         json_string_value(json_object_get(pack, "version")), abs);
            }
        }
        json_decref(pack);
        json_decref(problems);
        free(abs);
        free(yaml);
        free(path);
        free(names[i]);
    }
    free(names);
    return failed ? err_set(ERR_INVALID, "%d packs in %s could not be installed", failed, dir) : 0;
}

struct flags {
    const char *config, *data, *db, *listen, *api, *name, *packs, *log_level, *log_format;
    int slots;
    int insecure_listen;
};

static int parse_flags(enum role role, int argc, char **argv, struct flags *f)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"data", required_argument, NULL, 'd'},
        {"db", required_argument, NULL, 'D'},
        {"listen", required_argument, NULL, 'l'},
        {"api", required_argument, NULL, 'a'},
        {"slots", required_argument, NULL, 's'},
        {"name", required_argument, NULL, 'n'},
        {"packs", required_argument, NULL, 'p'},
        {"log-level", required_argument, NULL, 'L'},
        {"log-format", required_argument, NULL, 'F'},
        {"insecure-listen", no_argument, NULL, 'I'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
        case 'I':
            f->insecure_listen = 1;
            break;
        case 'c':
            f->config = optarg;
            break;
        case 'd':
            f->data = optarg;
            break;
        case 'D':
            f->db = optarg;
            break;
        case 'l':
            f->listen = optarg;
            break;
        case 'a':
            f->api = optarg;
            break;
        case 'n':
            f->name = optarg;
            break;
        case 'p':
            f->packs = optarg;
            break;
        case 'L':
            f->log_level = optarg;
            break;
        case 'F':
            f->log_format = optarg;
            break;
        case 's': {
            char *end;
            long v = strtol(optarg, &end, 10);

            if (*end || v < 1 || v > 1024)
                return err_set(ERR_INVALID, "--slots %s: expected an integer from 1 to 1024",
                               optarg);
            f->slots = (int)v;
            break;
        }
        case 'h':
            usage(stdout);
            exit(0);
        default:
            return err_set(ERR_INVALID, "packrun %s: unknown option (see packrun --help)",
                           role_names[role]);
        }
    }
    if (optind < argc)
        return err_set(ERR_INVALID, "packrun %s: unexpected argument '%s'", role_names[role],
                       argv[optind]);
    return 0;
}

static int setup_config(enum role role, const struct flags *f, struct config *cfg)
{
    char host[256] = "";
    int level;
    int rc;

    rc = config_load(f->config, cfg);
    if (rc < 0)
        return rc;
    if (f->data)
        config_set(&cfg->data_dir, f->data);
    if (f->db)
        config_set(&cfg->db_url, f->db);
    if (f->listen)
        config_set(&cfg->listen, f->listen);
    if (f->api)
        config_set(&cfg->api_url, f->api);
    if (f->name)
        config_set(&cfg->worker_name, f->name);
    if (f->log_level)
        config_set(&cfg->log_level, f->log_level);
    if (f->log_format)
        config_set(&cfg->log_format, f->log_format);
    if (f->slots)
        cfg->slots = f->slots;
    if (f->insecure_listen)
        cfg->allow_insecure_listen = 1;
    /* Several workers may share a host; each needs its own name. */
    if (role == ROLE_WORKER && !cfg->worker_name) {
        gethostname(host, sizeof(host) - 1);
        cfg->worker_name = xasprintf("%s-%d", host, (int)getpid());
    }
    config_finish(cfg);

    if (strcmp(cfg->env_on_failure, "fallback") != 0 && strcmp(cfg->env_on_failure, "fail") != 0)
        return err_set(ERR_INVALID, "environments.on_failure '%s': expected fallback or fail",
                       cfg->env_on_failure);
    level = log_level_parse(cfg->log_level);
    if (level < 0)
        return err_set(ERR_INVALID, "log level '%s': expected debug, info, warn or error",
                       cfg->log_level);
    if (strcmp(cfg->log_format, "logfmt") != 0 && strcmp(cfg->log_format, "json") != 0)
        return err_set(ERR_INVALID, "log format '%s': expected logfmt or json", cfg->log_format);
    log_setup(strcmp(cfg->log_format, "json") == 0 ? LOG_FORMAT_JSON : LOG_FORMAT_LOGFMT,
              (enum log_level)level);
    return 0;
}

static int prepare_data(const struct config *cfg, const char *packs)
{
    struct store *st = NULL;
    int rc;

    /* Others may pass through (actions run as run_as read their pack's
     * release folder) but not list it; the database itself is 0600. */
    rc = fs_mkdirs(cfg->data_dir, 0711);
    if (rc == 0 && chmod(cfg->data_dir, 0711) < 0)
        rc = err_errno(ERR_FAIL, "chmod %s", cfg->data_dir);
    if (rc == 0)
        rc = store_open(cfg->db_url, &st);
    if (rc == 0)
        rc = store_migrate(st);
    if (rc == 0 && packs)
        rc = install_packs(cfg, st, packs);
    store_close(st);
    return rc;
}

/* --- the local CLI's token ---------------------------------------------- */

/* The token in the CLI config file at path (caller frees), or NULL when
 * the file is missing or holds none. ERR_INVALID when it does not parse. */
static int cli_file_token(const char *path, char **token, char **api_url)
{
    json_t *doc = NULL;
    int rc;

    *token = NULL;
    *api_url = NULL;
    rc = yaml_parse_file(path, 1024 * 1024, &doc);
    if (rc == ERR_NOTFOUND)
        return 0;
    if (rc < 0)
        return rc;
    if (json_is_string(json_object_get(doc, "token")))
        *token = xstrdup(json_string_value(json_object_get(doc, "token")));
    if (json_is_string(json_object_get(doc, "api_url")))
        *api_url = xstrdup(json_string_value(json_object_get(doc, "api_url")));
    json_decref(doc);
    return 0;
}

/* 1 if token is a live token of this database. */
static int token_works(struct store *st, const char *token)
{
    char hash[HASH_HEX_LEN + 1];
    json_t *row = NULL;
    int ok;

    auth_token_hash(token, strlen(token), hash);
    if (store_token_find(st, hash, &row) < 0)
        return 0;
    ok = json_is_null(json_object_get(row, "revoked_at"));
    json_decref(row);
    return ok;
}

/* Write api_url and token to the CLI config at path: folder 0700 if it
 * is new, file 0600, replaced atomically; an earlier file stays as
 * PATH.bak (a second link to it, made before the replacement). */
static int write_cli_config(const char *path, const char *api_url, const char *token)
{
    char *dir = xstrdup(path), *slash = strrchr(dir, '/'), *bak = NULL;
    json_t *doc = json_pack("{s:s, s:s}", "api_url", api_url, "token", token);
    struct buf text = BUF_INIT;
    char now[32];
    int rc = 0;

    if (slash && slash != dir) {
        *slash = '\0';
        rc = fs_mkdirs(dir, 0700);
    }
    if (rc == 0 && fs_exists(path)) {
        bak = xasprintf("%s.bak", path);
        (void)unlink(bak);
        if (link(path, bak) < 0) {
            log_warn("main", "keeping the earlier CLI config as %s failed: %s", bak,
                     strerror(errno));
            free(bak);
            bak = NULL;
        }
    }
    clock_now(now, sizeof(now));
    buf_addf(&text,
             "# Written by `packrun up` at %s: the API and an admin token for the\n"
             "# local CLI. Keep it private (mode 0600).\n",
             now);
    yaml_emit(doc, &text);
    if (rc == 0)
        rc = fs_write_atomic(path, text.data, text.len, 0600);
    if (rc == 0 && chmod(path, 0600) < 0)
        rc = err_errno(ERR_FAIL, "chmod %s", path);
    if (rc == 0 && bak)
        log_info("main", "the earlier CLI config is kept as %s", bak);
    sodium_memzero(text.data, text.len);
    buf_free(&text);
    json_decref(doc);
    free(bak);
    free(dir);
    return rc;
}

/*
 * `packrun up` on first start (no token in the database yet): make an
 * admin token and write it to the CLI config file, so that the local CLI
 * works with no setup. A file whose token works is left alone. Only a
 * database failure is an error; the rest is logged.
 */
static int bootstrap_cli_token(const struct config *cfg)
{
    char *path = cli_config_path(), *old = NULL, *old_api = NULL, *token = NULL;
    char hash[HASH_HEX_LEN + 1];
    struct store *st = NULL;
    int rc;

    rc = store_open(cfg->db_url, &st);
    if (rc < 0)
        goto out;
    if (path && cli_file_token(path, &old, &old_api) < 0)
        log_warn("main", "CLI config %s: %s", path, err_msg());
    if (old && token_works(st, old)) {
        struct stat sb;

        log_info("main", "CLI config %s holds a working token: left as it is", path);
        if (stat(path, &sb) == 0 && (sb.st_mode & 077))
            log_warn("main",
                     "CLI config %s holds a token and others may read it (mode %03o): "
                     "chmod 600 it",
                     path, (unsigned)(sb.st_mode & 0777));
        if (old_api && strcmp(old_api, cfg->api_url) != 0)
            log_info("main", "CLI config %s points at %s, not at this server's %s", path, old_api,
                     cfg->api_url);
        goto out;
    }
    rc = store_token_count(st);
    if (rc < 0)
        goto out;
    if (rc > 0) {
        log_info("main",
                 "CLI config %s has no working token for this server: make one with "
                 "`packrun token create NAME --role admin` and put it there",
                 path ? path : "(none: set HOME or PACKRUN_CLI_CONFIG)");
        rc = 0;
        goto out;
    }
    rc = 0;
    if (!path) {
        log_warn("main", "no place for the CLI config (set HOME or PACKRUN_CLI_CONFIG): no "
                         "admin token made; make one with `packrun token create`");
        goto out;
    }

    /* A file that points at another server is someone's: leave it, and
     * write this server's token beside its data instead. */
    if (old && old_api && strcmp(old_api, cfg->api_url) != 0) {
        log_warn("main", "CLI config %s points at %s: left as it is", path, old_api);
        free(path);
        path = xasprintf("%s/cli.yaml", cfg->data_dir);
        log_warn("main", "use this server with PACKRUN_CLI_CONFIG=%s", path);
    }

    /* The file first: a token never lives in the database unwritten. */
    auth_token_new(&token, hash);
    if (write_cli_config(path, cfg->api_url, token) < 0) {
        log_warn("main", "writing the CLI config failed: %s; no admin token made", err_msg());
        goto out;
    }
    rc = store_token_create(st, LOCAL_TOKEN_NAME, auth_role_name(AUTH_ADMIN), hash);
    if (rc == 0)
        log_info("main", "made admin token '%s' for the local CLI and wrote it to %s (mode 0600)",
                 LOCAL_TOKEN_NAME, path);
    if (rc == ERR_CONFLICT) {
        /* Another `up` on this database made the first token meanwhile. */
        log_warn("main", "%s; the token in %s may not work", err_msg(), path);
        rc = 0;
    }

out:
    if (token)
        sodium_memzero(token, strlen(token));
    free(token);
    free(old);
    free(old_api);
    free(path);
    store_close(st);
    return rc;
}

/* --- packrun token ------------------------------------------------------ */

static const char token_synopsis[] =
    "usage: packrun token create NAME --role admin|operator|viewer [--json]\n"
    "       packrun token list [--json]\n"
    "       packrun token revoke NAME\n"
    "  (each takes --data DIR, --db URL and --config FILE, as the server does)\n";

static int token_usage(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static int token_usage(const char *fmt, ...)
{
    va_list ap;

    fprintf(stderr, "error: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, "\n%s", token_synopsis);
    return CLI_EXIT_USAGE;
}

/* Open the database named by the flags and the config, as the daemons
 * would, and bring its schema up to date. create: may make a new one. */
static int token_store(const char *config, const char *data, const char *db, int create,
                       struct store **st)
{
    struct config cfg;
    const char *file;
    int rc;

    rc = config_load(config, &cfg);
    if (rc < 0)
        goto out;
    if (data)
        config_set(&cfg.data_dir, data);
    if (db)
        config_set(&cfg.db_url, db);
    config_finish(&cfg);
    file = strncmp(cfg.db_url, "sqlite:", 7) == 0 ? cfg.db_url + 7 : cfg.db_url;
    if (strstr(cfg.db_url, "://") == NULL && !fs_exists(file)) {
        if (!create) {
            rc = err_set(ERR_NOTFOUND, "no database at %s (pass --data DIR or --db URL)", file);
            goto out;
        }
        if (!db)
            rc = fs_mkdirs(cfg.data_dir, 0700);
    }
    if (rc == 0)
        rc = store_open(cfg.db_url, st);
    if (rc == 0)
        rc = store_migrate(*st);

out:
    config_free(&cfg);
    return rc;
}

static void token_print_list(const json_t *list)
{
    static const char *const headers[] = {"NAME", "ROLE", "CREATED", "LAST USED", "REVOKED"};
    struct cli_table t;
    struct buf out = BUF_INIT;
    const json_t *row;
    size_t i;

    cli_table_init(&t, 5, headers);
    json_array_foreach (list, i, row) {
        char *created = cli_format_time(json_string_value(json_object_get(row, "created_at")));
        char *used = cli_format_time(json_string_value(json_object_get(row, "last_used_at")));
        char *revoked = cli_format_time(json_string_value(json_object_get(row, "revoked_at")));
        const char *cells[] = {json_string_value(json_object_get(row, "name")),
                               json_string_value(json_object_get(row, "role")), created, used,
                               revoked};

        cli_table_add(&t, cells);
        free(created);
        free(used);
        free(revoked);
    }
    cli_table_render(&t, &out);
    fputs(buf_str(&out), stdout);
    buf_free(&out);
    cli_table_free(&t);
}

/* The password of a URL's user-info replaced by "****", in place. */
static void mask_url(json_t *cfg, const char *key)
{
    const char *url = json_string_value(json_object_get(cfg, key));
    const char *scheme, *at, *colon;
    char *masked;

    if (!url)
        return;
    scheme = strstr(url, "://");
    at = scheme ? strchr(scheme + 3, '@') : NULL;
    colon = scheme ? strchr(scheme + 3, ':') : NULL;
    if (!at || !colon || colon > at)
        return;
    masked = xasprintf("%.*s****%s", (int)(colon + 1 - url), url, at);
    json_object_set_new(cfg, key, json_string(masked));
    free(masked);
}

/* `packrun config show [--config FILE] [--json]`: the settings the
 * daemons would use here, from the defaults, the file and PACKRUN_*
 * variables, with passwords in URLs masked. */
static int run_config(int argc, char **argv)
{
    const char *path = NULL;
    struct buf out = BUF_INIT;
    struct config cfg;
    json_t *shown;
    int json = 0, rc;

    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--config") == 0 && i + 1 < argc)
            path = argv[++i];
        else if (strcmp(argv[i], "--json") == 0)
            json = 1;
        else if (strcmp(argv[i], "show") != 0 || i != 1) {
            fprintf(stderr, "usage: packrun config show [--config FILE] [--json]\n");
            return CLI_EXIT_USAGE;
        }
    }
    if (argc < 2 || strcmp(argv[1], "show") != 0) {
        fprintf(stderr, "usage: packrun config show [--config FILE] [--json]\n");
        return CLI_EXIT_USAGE;
    }
    rc = config_load(path, &cfg);
    if (rc < 0) {
        fprintf(stderr, "error: %s\n", err_msg());
        config_free(&cfg);
        return CLI_EXIT_FAILED;
    }
    config_finish(&cfg);
    shown = config_to_json(&cfg);
    mask_url(shown, "db");
    mask_url(shown, "environments.pip_index_url");
    mask_url(shown, "environments.pip_find_links");
    if (json) {
        char *text = json_dumps(shown, JSON_INDENT(2));

        printf("%s\n", text);
        free(text);
    } else {
        yaml_emit(shown, &out);
        fputs(buf_str(&out), stdout);
    }
    buf_free(&out);
    json_decref(shown);
    config_free(&cfg);
    return CLI_EXIT_OK;
}

/* `packrun token create|list|revoke`: argv[0] is "token". */
static int run_token(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"data", required_argument, NULL, 'd'},
        {"db", required_argument, NULL, 'D'},
        {"role", required_argument, NULL, 'r'},
        {"json", no_argument, NULL, 'j'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *config = NULL, *data = NULL, *db = NULL, *role_arg = NULL, *verb, *name = NULL;
    struct store *st = NULL;
    json_t *out = NULL;
    char *token = NULL;
    char hash[HASH_HEX_LEN + 1];
    int json = 0, opt, role = 0, rc;

    optind = 1;
    opterr = 0;
    while ((opt = getopt_long(argc, argv, ":h", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            config = optarg;
            break;
        case 'd':
            data = optarg;
            break;
        case 'D':
            db = optarg;
            break;
        case 'r':
            role_arg = optarg;
            break;
        case 'j':
            json = 1;
            break;
        case 'h':
            fputs(token_synopsis, stdout);
            return CLI_EXIT_OK;
        case ':':
            return token_usage("option '%s' needs a value", argv[optind - 1]);
        default:
            return token_usage("unknown option '%s'", argv[optind - 1]);
        }
    }
    if (optind >= argc)
        return token_usage("missing command: create, list or revoke");
    verb = argv[optind++];
    if (strcmp(verb, "create") == 0 || strcmp(verb, "revoke") == 0) {
        if (optind >= argc)
            return token_usage("token %s: missing NAME", verb);
        name = argv[optind++];
    } else if (strcmp(verb, "list") != 0) {
        return token_usage("unknown command 'token %s'", verb);
    }
    if (optind < argc)
        return token_usage("unexpected argument '%s'", argv[optind]);
    if (role_arg && strcmp(verb, "create") != 0)
        return token_usage("--role is only for token create");
    if (strcmp(verb, "create") == 0) {
        if (!role_arg)
            return token_usage("token create: --role admin|operator|viewer is required");
        role = auth_role_parse(role_arg);
        if (role < 0 || auth_name_check(name) < 0)
            return token_usage("%s", err_msg());
    }

    rc = token_store(config, data, db, strcmp(verb, "create") == 0, &st);
    if (rc < 0)
        goto out;
    if (strcmp(verb, "create") == 0) {
        auth_token_new(&token, hash);
        rc = store_token_create(st, name, auth_role_name((enum auth_role)role), hash);
        if (rc < 0)
            goto out;
        if (json) {
            out = json_pack("{s:s, s:s, s:s}", "name", name, "role",
                            auth_role_name((enum auth_role)role), "token", token);
            json_dumpf(out, stdout, JSON_INDENT(2));
            fputc('\n', stdout);
        } else {
            printf("%s\n", token);
        }
        fprintf(stderr, "token '%s' (%s) created. It is shown only this once: keep it now.\n", name,
                auth_role_name((enum auth_role)role));
    } else if (strcmp(verb, "list") == 0) {
        rc = store_token_list(st, &out);
        if (rc < 0)
            goto out;
        if (json) {
            json_dumpf(out, stdout, JSON_INDENT(2));
            fputc('\n', stdout);
        } else {
            token_print_list(out);
        }
    } else {
        rc = store_token_revoke(st, name);
        if (rc == 0)
            printf("token '%s' revoked\n", name);
    }

out:
    if (rc < 0)
        fprintf(stderr, "error: %s\n", err_msg());
    if (token)
        sodium_memzero(token, strlen(token));
    free(token);
    json_decref(out);
    store_close(st);
    return rc < 0 ? CLI_EXIT_FAILED : CLI_EXIT_OK;
}

static int run_daemon(enum role role, int argc, char **argv)
{
    struct flags f = {0};
    struct config cfg;
    struct api *api = NULL;
    struct worker *worker = NULL;
    sigset_t stop;
    int sig = 0, rc;

    /* Signals are taken by sigwait() below, never by a handler; block
     * them first, so that one arriving during start-up is not lost. */
    signal(SIGPIPE, SIG_IGN);
    sigemptyset(&stop);
    sigaddset(&stop, SIGINT);
    sigaddset(&stop, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &stop, NULL);

    memset(&cfg, 0, sizeof(cfg));
    rc = parse_flags(role, argc, argv, &f);
    if (rc == 0)
        rc = setup_config(role, &f, &cfg);
    if (rc < 0) {
        fprintf(stderr, "packrun: %s\n", err_msg());
        config_free(&cfg);
        return 2;
    }

    rc = role == ROLE_WORKER ? 0 : auth_listen_check(cfg.listen, cfg.allow_insecure_listen);
    if (rc == 0)
        rc = prepare_data(&cfg, role == ROLE_WORKER ? NULL : f.packs);
    if (rc == 0 && role == ROLE_UP)
        rc = bootstrap_cli_token(&cfg);
    if (rc == 0 && role != ROLE_WORKER)
        rc = api_start(&cfg, &api);
    if (rc == 0 && role != ROLE_SERVER)
        rc = worker_start(&cfg, &worker);
    if (rc < 0) {
        log_error("main", "packrun %s: %s", role_names[role], err_msg());
        goto out;
    }
    log_info("main", "packrun %s ready (data %s, database %s)", role_names[role], cfg.data_dir,
             cfg.db_url);

    sigwait(&stop, &sig);
    log_info("main", "%s received: stopping", sig == SIGINT ? "SIGINT" : "SIGTERM");

out:
    worker_stop(worker);
    api_stop(api);
    config_free(&cfg);
    return rc < 0 ? 1 : 0;
}

int main(int argc, char **argv)
{
    if (hash_init() < 0) {
        fprintf(stderr, "packrun: %s\n", err_msg());
        return 1;
    }
    if (argc < 2 || strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0) {
        usage(argc < 2 ? stderr : stdout);
        return argc < 2 ? 4 : 0;
    }
    if (strcmp(argv[1], "up") == 0)
        return run_daemon(ROLE_UP, argc - 1, argv + 1);
    if (strcmp(argv[1], "server") == 0)
        return run_daemon(ROLE_SERVER, argc - 1, argv + 1);
    if (strcmp(argv[1], "worker") == 0 && !cli_is_client_command(argc - 1, argv + 1))
        return run_daemon(ROLE_WORKER, argc - 1, argv + 1);
    if (strcmp(argv[1], "config") == 0)
        return run_config(argc - 1, argv + 1);
    if (strcmp(argv[1], "token") == 0)
        return run_token(argc - 1, argv + 1);
    return cli_main(argc - 1, argv + 1);
}

/*
 * packrun: one binary for the daemons (up, server, worker) and the CLI.
 */
#include <dirent.h>
#include <getopt.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "api/api.h"
#include "cli/cli.h"
#include "store/store.h"
#include "util/buf.h"
#include "util/config.h"
#include "util/err.h"
#include "util/fs.h"
#include "util/hash.h"
#include "util/log.h"
#include "worker/worker.h"

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
          "  (all take --log-level debug|info|warn|error and --log-format logfmt|json)\n"
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
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    int opt;

    optind = 1;
    while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (opt) {
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
    /* Several workers may share a host; each needs its own name. */
    if (role == ROLE_WORKER && !cfg->worker_name) {
        gethostname(host, sizeof(host) - 1);
        cfg->worker_name = xasprintf("%s-%d", host, (int)getpid());
    }
    config_finish(cfg);

    if (strcmp(cfg->env_on_failure, "fallback") != 0 && strcmp(cfg->env_on_failure, "fail") != 0)
        return err_set(ERR_INVALID,
                       "environments.on_failure '%s': expected fallback or fail",
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

    rc = fs_mkdirs(cfg->data_dir, 0700);
    if (rc == 0)
        rc = store_open(cfg->db_url, &st);
    if (rc == 0)
        rc = store_migrate(st);
    if (rc == 0 && packs)
        rc = install_packs(cfg, st, packs);
    store_close(st);
    return rc;
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

    rc = prepare_data(&cfg, role == ROLE_WORKER ? NULL : f.packs);
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
    return cli_main(argc - 1, argv + 1);
}

/*
 * cli: the client commands of packrun (pack, action, run, execution,
 * worker list). They talk to the API over HTTP (cli/client.h) and never
 * touch the database.
 *
 * cli_main() is the entry point; the other functions are the pure
 * helpers it is made of, exposed for the unit tests: argument parsing,
 * the conversion of key=value arguments to typed parameters, and the
 * formatting of tables, times and durations.
 *
 * Exit codes: 0 success; for `run`, 1 the execution failed, 2 it timed
 * out, 3 it was canceled or abandoned; for the other commands 1 is any
 * failure (the API refused, could not be reached, ...); 4 is bad usage
 * for every command, and any failure of `run` before the execution ends.
 */
#ifndef PACKRUN_CLI_H
#define PACKRUN_CLI_H

#include <jansson.h>
#include <stddef.h>
#include <time.h>

#include "util/buf.h"

enum {
    CLI_EXIT_OK = 0,
    CLI_EXIT_FAILED = 1,   /* run: the execution failed; others: any failure */
    CLI_EXIT_TIMEOUT = 2,  /* run: the execution timed out */
    CLI_EXIT_CANCELED = 3, /* run: canceled or abandoned */
    CLI_EXIT_USAGE = 4,    /* bad usage; run: also an API or connection error */
};

#define CLI_DEFAULT_API "http://127.0.0.1:8080"

/*
 * Run a client command. argv[0] is the subcommand ("pack", "action",
 * "run", "execution", "worker", "help"); returns the exit code. Prints
 * the result to stdout and errors to stderr, once.
 */
int cli_main(int argc, char **argv);

/*
 * 1 when argv (argv[0] being the subcommand) is a client command that
 * cli_main() handles, 0 when it is something else (a daemon: `up`,
 * `server`, or `worker` without the `list` verb). `worker list`,
 * `worker --json list` -> 1; `worker`, `worker --data x` -> 0.
 */
int cli_is_client_command(int argc, char **argv);

/* The exit code of `run` for an execution status (see CLI_EXIT_*);
 * -1 for a status that is not terminal (requested, running, ...). */
int cli_status_exit(const char *status);

/* ---- arguments ---- */

/* The options every client command accepts, anywhere after the subcommand. */
struct cli_globals {
    const char *api;   /* --api URL, borrowed from argv; NULL if not given */
    const char *token; /* --token TOKEN, likewise */
    int json;          /* --json */
    int help;          /* -h, --help */
};

/*
 * Take the global options (--api URL, --api=URL, --token TOKEN,
 * --token=TOKEN, --json, -h, --help) out of argv[1..argc-1], moving the
 * other arguments down in order (argv[0] stays). Returns the new argc, or
 * ERR_INVALID when --api or --token has no value. Options after "--" are
 * left alone.
 */
int cli_take_globals(int argc, char **argv, struct cli_globals *g);

/* One command-line option of a command, for cli_parse_args(). */
struct cli_option {
    const char *name;  /* "--timeout" */
    const char *alias; /* "-f", or NULL */
    int has_value;     /* 1: takes a value (--timeout S or --timeout=S) */
    const char *value; /* out: the value, "" for a flag that is given, NULL if absent */
};

/*
 * Parse argv[0..argc-1] against opts (an array ending with a NULL name).
 * Each option found sets its value (the last one wins); other arguments
 * go, in order, to pos (room for argc entries, borrowed from argv) and
 * *npos. "--" ends the options; "-" is an argument. ERR_INVALID naming
 * the argument for an unknown option, a missing value, or a value given
 * to a flag.
 */
int cli_parse_args(int argc, char **argv, struct cli_option *opts, const char **pos, int *npos);

/* 1 if s is a decimal id: 1 to 18 digits, not starting with 0. */
int cli_is_id(const char *s);

/* ---- configuration ---- */

/* Where the CLI finds the API. */
struct cli_config {
    char *api;   /* never NULL after cli_config_resolve() */
    char *token; /* NULL when there is none */
};

/*
 * The path of the CLI config file: $PACKRUN_CLI_CONFIG, else
 * $XDG_CONFIG_HOME/packrun/cli.yaml, else $HOME/.config/packrun/cli.yaml;
 * NULL when none can be made. Caller frees.
 */
char *cli_config_path(void);

/*
 * Resolve the API URL (flag_api, else $PACKRUN_API_URL, else the config
 * file's api_url, else CLI_DEFAULT_API) and the token (flag_token, else
 * $PACKRUN_TOKEN, else the config file's token). The file is read only
 * when it is needed; a missing file is not an error, a malformed one is
 * (ERR_INVALID naming the file and key). Free with cli_config_free().
 */
int cli_config_resolve(const char *flag_api, const char *flag_token, struct cli_config *out);

void cli_config_free(struct cli_config *cfg);

/* ---- parameters ---- */

/* Largest value read from a file with key=@FILE. */
#define CLI_MAX_FILE_VALUE (16L * 1024 * 1024)

/*
 * Convert text (len bytes) to the JSON type that the action's parameter
 * schema (the action's "parameters" object; NULL for none) gives to
 * name: integer (decimal, in range), number, boolean (true/false, yes/no,
 * 1/0, any case), array or object (JSON text of that type), string (as
 * is, which must be UTF-8). A name the schema does not know is a string.
 * *out is the new value (caller decrefs). ERR_INVALID naming the
 * parameter when text does not fit the type.
 */
int cli_coerce_param(const json_t *schema, const char *name, const char *text, size_t len,
                     json_t **out);

/*
 * Build the parameters object from key=value arguments, each value
 * converted with cli_coerce_param(). key=@FILE takes the value from FILE
 * (@- from stdin; at most CLI_MAX_FILE_VALUE bytes), key=@@text is the
 * literal "@text". ERR_INVALID for an argument without '=' or with an
 * empty key, or a key given twice. *out: caller decrefs.
 */
int cli_build_params(const json_t *schema, int argc, const char *const *argv, json_t **out);

/* ---- formatting ---- */

/*
 * A text table with aligned columns. Cells are copied; control
 * characters in them become spaces, NULL becomes "-". Widths count UTF-8
 * characters, not bytes.
 */
struct cli_table {
    size_t ncols;
    const char *const *headers; /* ncols names, borrowed; NULL: no header row */
    size_t *max_width;          /* per column, 0 = no limit; longer cells end in "…" */
    char **cells;               /* row-major, nrows * ncols, owned */
    size_t nrows;
    size_t cap;
};

void cli_table_init(struct cli_table *t, size_t ncols, const char *const *headers);

/* Limit column col to width characters (at least 2). */
void cli_table_limit(struct cli_table *t, size_t col, size_t width);

/* Append a row of t->ncols cells. */
void cli_table_add(struct cli_table *t, const char *const *cells);

/* Append the table to out: columns separated by two spaces, no trailing
 * blanks, one '\n' per line. */
void cli_table_render(const struct cli_table *t, struct buf *out);

void cli_table_free(struct cli_table *t);

/*
 * A JSON value as a table cell (caller frees): NULL or null -> "-",
 * strings as they are, numbers and booleans as JSON, an array of
 * strings (or of objects with a "name") comma-separated, anything else
 * compact JSON.
 */
char *cli_json_cell(const json_t *v);

/* A duration in milliseconds for people: "14ms", "2.35s", "3m05s", "2h03m". */
char *cli_format_duration(long long ms);

/* An ISO 8601 UTC timestamp ("2026-12-03T12:00:00.000Z") in local time,
 * "2026-12-03 13:00:00"; "-" for NULL; the text unchanged if it does not
 * parse. Caller frees. */
char *cli_format_time(const char *iso);

/* How long before now an ISO 8601 timestamp is: "5s ago", "3m ago",
 * "2h ago", "4d ago"; "-" for NULL or a timestamp that does not parse.
 * Caller frees. */
char *cli_format_ago(const char *iso, time_t now);

/* Parse an ISO 8601 timestamp (UTC "Z" or a +hh:mm offset; fractions of
 * a second are ignored) into *out. ERR_INVALID if it does not parse. */
int cli_parse_time(const char *iso, time_t *out);

#endif

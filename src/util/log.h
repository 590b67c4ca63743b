/*
 * log: one line per event, for people and for grep.
 *
 * Lines go to stderr as logfmt by default:
 *   ts=2026-12-03T12:00:00.123Z level=info component=worker msg="execution 42: succeeded"
 * or as one JSON object per line after log_setup(LOG_FORMAT_JSON, ...).
 * Only the daemons and the CLI log; library modules return errors.
 * Thread-safe: each line is written with one write(2).
 */
#ifndef PACKRUN_LOG_H
#define PACKRUN_LOG_H

enum log_level { LOG_DEBUG, LOG_INFO, LOG_WARN, LOG_ERROR };
enum log_format { LOG_FORMAT_LOGFMT, LOG_FORMAT_JSON };

void log_setup(enum log_format format, enum log_level level);

/* Parse "debug", "info", "warn" or "error"; returns -1 if unknown. */
int log_level_parse(const char *name);

void log_msg(enum log_level level, const char *component, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#define log_debug(comp, ...) log_msg(LOG_DEBUG, comp, __VA_ARGS__)
#define log_info(comp, ...)  log_msg(LOG_INFO, comp, __VA_ARGS__)
#define log_warn(comp, ...)  log_msg(LOG_WARN, comp, __VA_ARGS__)
#define log_error(comp, ...) log_msg(LOG_ERROR, comp, __VA_ARGS__)

#endif

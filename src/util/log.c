#include "util/log.h"

#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "util/clock.h"

static enum log_format log_fmt = LOG_FORMAT_LOGFMT;
static enum log_level log_min = LOG_INFO;

static const char *const level_names[] = {"debug", "info", "warn", "error"};

void log_setup(enum log_format format, enum log_level level)
{
    log_fmt = format;
    log_min = level;
}

int log_level_parse(const char *name)
{
    for (int i = 0; i < 4; i++) {
        if (strcmp(name, level_names[i]) == 0)
            return i;
    }
    return -1;
}

/* Append s to out as a logfmt value: quoted, with " and \ escaped. */
static size_t logfmt_quote(char *out, size_t cap, const char *s)
{
    size_t n = 0;

    if (n < cap)
        out[n++] = '"';
    for (; *s && n + 3 < cap; s++) {
        if (*s == '"' || *s == '\\') {
            out[n++] = '\\';
            out[n++] = *s;
        } else if (*s == '\n') {
            out[n++] = '\\';
            out[n++] = 'n';
        } else {
            out[n++] = *s;
        }
    }
    if (n < cap)
        out[n++] = '"';
    return n;
}

void log_msg(enum log_level level, const char *component, const char *fmt, ...)
{
    char msg[4096];
    char line[8192];
    char ts[40];
    size_t n;
    va_list ap;

    if (level < log_min)
        return;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    clock_iso8601(clock_wall_ms(), ts, sizeof(ts));

    if (log_fmt == LOG_FORMAT_JSON) {
        json_t *obj = json_pack("{s:s, s:s, s:s, s:s}", "ts", ts, "level", level_names[level],
                                "component", component, "msg", msg);
        char *text = obj ? json_dumps(obj, JSON_COMPACT) : NULL;

        n = (size_t)snprintf(line, sizeof(line), "%s\n", text ? text : msg);
        free(text);
        json_decref(obj);
    } else {
        n = (size_t)snprintf(line, sizeof(line), "ts=%s level=%s component=%s msg=", ts,
                             level_names[level], component);
        if (n < sizeof(line))
            n += logfmt_quote(line + n, sizeof(line) - n - 1, msg);
        if (n >= sizeof(line))
            n = sizeof(line) - 1;
        line[n++] = '\n';
    }
    if (n > sizeof(line))
        n = sizeof(line);
    (void)!write(STDERR_FILENO, line, n);
}

#include "util/err.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#define ERR_MSG_MAX 2048

static _Thread_local char err_buf[ERR_MSG_MAX];

int err_set(int code, const char *fmt, ...)
{
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
    va_end(ap);
    return code;
}

int err_errno(int code, const char *fmt, ...)
{
    int saved = errno;
    size_t len;
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(err_buf, sizeof(err_buf), fmt, ap);
    va_end(ap);
    len = strlen(err_buf);
    snprintf(err_buf + len, sizeof(err_buf) - len, ": %s", strerror(saved));
    errno = saved;
    return code;
}

const char *err_msg(void)
{
    return err_buf;
}

int err_wrap(int code, const char *fmt, ...)
{
    char prefix[512];
    char old[ERR_MSG_MAX];
    va_list ap;

    va_start(ap, fmt);
    vsnprintf(prefix, sizeof(prefix), fmt, ap);
    va_end(ap);
    memcpy(old, err_buf, sizeof(old));
    snprintf(err_buf, sizeof(err_buf), "%.500s: %.1500s", prefix, old);
    return code;
}

/*
 * buf: a growable byte buffer, always NUL-terminated.
 *
 * A struct buf is owned by whoever declares it; BUF_INIT makes an empty
 * one that owns no memory. buf_free() releases the memory and leaves an
 * empty buffer. Allocation failure aborts: packrun treats running out of
 * memory as fatal, as most daemons do.
 */
#ifndef PACKRUN_BUF_H
#define PACKRUN_BUF_H

#include <stdarg.h>
#include <stddef.h>

struct buf {
    char *data; /* NUL-terminated; NULL until the first append */
    size_t len;
    size_t cap;
};

#define BUF_INIT                                                                                   \
    {                                                                                              \
        NULL, 0, 0                                                                                 \
    }

void buf_grow(struct buf *b, size_t extra);
void buf_add(struct buf *b, const void *data, size_t len);
void buf_adds(struct buf *b, const char *s);
void buf_addf(struct buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void buf_vaddf(struct buf *b, const char *fmt, va_list ap);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

/* The contents ("" when empty); borrowed, valid until the next change. */
const char *buf_str(const struct buf *b);

/* Hand the memory to the caller (who frees it) and empty the buffer. */
char *buf_detach(struct buf *b);

/* Allocation helpers that abort on failure. */
void *xmalloc(size_t n);
void *xcalloc(size_t n, size_t size);
void *xrealloc(void *p, size_t n);
char *xstrdup(const char *s);
char *xasprintf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#endif

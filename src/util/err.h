/*
 * err: the one error convention of packrun.
 *
 * Functions that can fail return an int: 0 (or a positive count) on
 * success, one of the negative ERR_* codes on failure. The function that
 * detects the failure records a message with err_set(); callers pass the
 * code up unchanged and read the message once, at the edge (an HTTP
 * response, a CLI line, a log line). The message lives in thread-local
 * storage and stays valid until the next err_set() on the same thread.
 */
#ifndef PACKRUN_ERR_H
#define PACKRUN_ERR_H

enum {
    ERR_FAIL = -1,      /* an operation failed: I/O, a library, a syscall */
    ERR_INVALID = -2,   /* the input is wrong; the message names what */
    ERR_NOTFOUND = -3,  /* the object asked for does not exist */
    ERR_CONFLICT = -4,  /* the object exists or is in the wrong state */
    ERR_TOOBIG = -5,    /* a limit on user input was exceeded */
    ERR_FORBIDDEN = -6, /* the caller may not do this */
    ERR_UNAUTH = -7,    /* the caller did not say who it is */
    ERR_LIMITED = -8,   /* the caller must wait before trying again */
};

/* Record a message for the current thread and return code. */
int err_set(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* Like err_set(), with ": strerror(errno)" appended. */
int err_errno(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* The last message set on this thread; "" if none. Borrowed. */
const char *err_msg(void);

/* Prefix the current message with "prefix: " and return code. */
int err_wrap(int code, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif

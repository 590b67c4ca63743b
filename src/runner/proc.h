/*
 * proc: one child process, from spawn to exit, with its output captured.
 *
 * proc_run() starts argv in its own process group with the given
 * environment and working directory, writes the input to its stdin,
 * reads stdout and stderr as they come and hands them to a sink, and
 * ends the group on timeout or cancel: SIGTERM, a grace period, SIGKILL.
 * Memory use is bounded: output beyond each stream's cap is read and
 * dropped (the sink gets a truncation notice once), and only the first
 * keep_stdout bytes of stdout and the last bytes of stderr are kept.
 *
 * The caller's process should ignore SIGPIPE; the child gets default
 * signal dispositions and an empty signal mask.
 */
#ifndef PACKRUN_PROC_H
#define PACKRUN_PROC_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "util/buf.h"

#define PROC_STDOUT      1
#define PROC_STDERR      2
#define PROC_STDERR_TAIL 4096

/* Resource limits a child can be given: open files, processes of its
 * user, address space in bytes. */
enum { PROC_LIMIT_NOFILE, PROC_LIMIT_NPROC, PROC_LIMIT_AS, PROC_LIMIT_COUNT };

/* Called with each piece of output, up to the stream's cap; and with
 * stream 0 and no data when output has paused for flush_ms, so that a
 * sink that batches can pass on what it holds. */
typedef void (*proc_sink_fn)(void *ctx, int stream, const char *data, size_t len);

struct proc_opts {
    const char *const *argv; /* argv[0] is an absolute path */
    const char *const *envp;
    const char *cwd;
    const char *input; /* written to stdin, which is then closed; may be NULL */
    size_t input_len;
    int64_t timeout_ms;  /* 0: none */
    int64_t grace_ms;    /* between SIGTERM and SIGKILL */
    size_t output_cap;   /* per stream; 0: unlimited */
    size_t keep_stdout;  /* bytes of stdout to keep in the result */
    int cancel_fd;       /* -1, or an fd that turns readable to cancel */
    proc_sink_fn sink;   /* may be NULL */
    int64_t flush_ms;    /* 0: never call the sink for a pause */
    int drop_privileges; /* run as uid and gid (and no other groups) */
    uid_t uid;
    gid_t gid;
    long long limits[PROC_LIMIT_COUNT]; /* 0: leave as it is */
    void *ctx;
};

struct proc_result {
    int exit_code;       /* -1 when killed by a signal */
    int signal;          /* the signal that killed it, or 0 */
    int timed_out;       /* the timeout ended it */
    int canceled;        /* cancel_fd ended it */
    int64_t duration_ms; /* from spawn to exit */
    size_t out_bytes;    /* total bytes the child wrote, per stream */
    size_t err_bytes;
    int out_truncated; /* stdout went past output_cap */
    int err_truncated;
    struct buf out;      /* the first keep_stdout bytes of stdout */
    int out_kept_all;    /* out holds all of stdout */
    struct buf err_tail; /* the last PROC_STDERR_TAIL bytes of stderr */
};

/*
 * Run the process to its end. Returns 0 when it ran (whatever its exit
 * status, which is in *res) and a negative ERR_* when it could not be
 * started, with a message naming argv[0] and the reason. The caller
 * frees res with proc_result_free() in both cases.
 */
int proc_run(const struct proc_opts *opts, struct proc_result *res);

void proc_result_free(struct proc_result *res);

#endif

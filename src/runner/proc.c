#include "runner/proc.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sched.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util/clock.h"
#include "util/err.h"

#define PROC_CHUNK 65536
/* How long output is still read after the main process exits, for
 * children that keep the pipes open. */
#define PROC_DRAIN_MS 100

struct stream {
    int fd;
    int id;
    size_t total;
    int truncated;
};

struct run {
    const struct proc_opts *o;
    struct proc_result *r;
    pid_t pid;
    int pidfd;
    int in_fd;
    size_t in_off;
    struct stream out, err;
    int exited;
    int64_t term_at;      /* monotonic ms when SIGKILL follows SIGTERM, or 0 */
    int64_t unflushed_at; /* when output last came, if the sink has not been told of a pause */
    char *chunk;
};

static int64_t now_ms(void)
{
    return clock_mono_ns() / 1000000;
}

/* What the child of spawn() needs; it shares the parent's memory until
 * it execs, and reports a failure in error and step. */
struct child {
    const struct proc_opts *o;
    int in, out, err;
    int error;
    const char *step;
};

static int child_fail(struct child *c, const char *step)
{
    c->error = errno;
    c->step = step;
    _exit(127);
}

/*
 * The child, between clone and exec. It runs on its own stack in the
 * parent's memory, so it calls only plain system calls: the uid and gid
 * changes are made with syscall(2) so that glibc does not try to apply
 * them to the parent's threads.
 */
static int child_main(void *arg)
{
    struct child *c = arg;
    const struct proc_opts *o = c->o;
    struct sigaction dfl = {.sa_handler = SIG_DFL};
    sigset_t none;

    sigemptyset(&none);
    for (int sig = 1; sig < NSIG; sig++) {
        if (sig != SIGKILL && sig != SIGSTOP)
            (void)sigaction(sig, &dfl, NULL);
    }
    if (sigprocmask(SIG_SETMASK, &none, NULL) < 0)
        child_fail(c, "sigprocmask");
    if (setpgid(0, 0) < 0)
        child_fail(c, "setpgid");
    if (dup2(c->in, 0) < 0 || dup2(c->out, 1) < 0 || dup2(c->err, 2) < 0)
        child_fail(c, "dup2");
    if (o->cwd && chdir(o->cwd) < 0)
        child_fail(c, "chdir");

    for (int i = 0; i < PROC_LIMIT_COUNT; i++) {
        static const int resources[PROC_LIMIT_COUNT] = {RLIMIT_NOFILE, RLIMIT_NPROC, RLIMIT_AS};
        struct rlimit rl = {(rlim_t)o->limits[i], (rlim_t)o->limits[i]};

        if (o->limits[i] > 0 && setrlimit(resources[i], &rl) < 0)
            child_fail(c, "setrlimit");
    }
    if (o->drop_privileges) {
        gid_t gid = o->gid;

        if (syscall(SYS_setgroups, 1, &gid) < 0)
            child_fail(c, "setgroups");
        if (syscall(SYS_setresgid, gid, gid, gid) < 0)
            child_fail(c, "setresgid");
        if (syscall(SYS_setresuid, o->uid, o->uid, o->uid) < 0)
            child_fail(c, "setresuid");
    }
    /* Set after the ids change, which would clear it: if the worker dies
     * (kill -9), its children die too rather than run on unrecorded. */
    if (syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) < 0)
        child_fail(c, "prctl");

    execve(o->argv[0], (char *const *)o->argv, (char *const *)o->envp);
    return child_fail(c, "exec");
}

static int spawn(struct run *run, int in[2], int out[2], int err[2])
{
    const size_t stack_size = 64 * 1024;
    struct child c = {.o = run->o, .in = in[0], .out = out[1], .err = err[1]};
    char *stack = xmalloc(stack_size);
    int status;

    /* The parent waits (CLONE_VFORK) until the child has exec'd or failed. */
    run->pid = clone(child_main, stack + stack_size, CLONE_VM | CLONE_VFORK | SIGCHLD, &c);
    free(stack);
    if (run->pid < 0)
        return err_errno(ERR_FAIL, "spawn %s: clone", run->o->argv[0]);
    if (c.error) {
        while (waitpid(run->pid, &status, 0) < 0 && errno == EINTR)
            ;
        errno = c.error;
        return err_errno(ERR_FAIL, "spawn %s: %s", run->o->argv[0], c.step);
    }
    return 0;
}

static void emit(struct run *run, struct stream *s, const char *data, size_t len)
{
    const struct proc_opts *o = run->o;
    size_t room = len;

    if (o->output_cap && s->total + len > o->output_cap) {
        room = s->total < o->output_cap ? o->output_cap - s->total : 0;
    }
    if (room > 0 && o->sink) {
        o->sink(o->ctx, s->id, data, room);
        run->unflushed_at = now_ms();
    }
    if (room < len && !s->truncated) {
        char notice[128];
        int n = snprintf(notice, sizeof(notice), "\n[packrun: %s truncated at %zu bytes]\n",
                         s->id == PROC_STDOUT ? "stdout" : "stderr", o->output_cap);

        s->truncated = 1;
        if (o->sink)
            o->sink(o->ctx, s->id, notice, (size_t)n);
    }
    s->total += len;
}

static void keep(struct run *run, struct stream *s, const char *data, size_t len)
{
    struct proc_result *r = run->r;

    if (s->id == PROC_STDOUT) {
        size_t room = run->o->keep_stdout > r->out.len ? run->o->keep_stdout - r->out.len : 0;

        buf_add(&r->out, data, len < room ? len : room);
        if (len > room)
            r->out_kept_all = 0;
        return;
    }
    buf_add(&r->err_tail, data, len);
    if (r->err_tail.len > 2 * PROC_STDERR_TAIL) {
        size_t drop = r->err_tail.len - PROC_STDERR_TAIL;

        memmove(r->err_tail.data, r->err_tail.data + drop, PROC_STDERR_TAIL);
        r->err_tail.len = PROC_STDERR_TAIL;
        r->err_tail.data[r->err_tail.len] = '\0';
    }
}

/* Read what is there; close the stream at EOF. */
static void drain(struct run *run, struct stream *s)
{
    for (;;) {
        ssize_t n = read(s->fd, run->chunk, PROC_CHUNK);

        if (n < 0 && errno == EINTR)
            continue;
        if (n > 0) {
            emit(run, s, run->chunk, (size_t)n);
            keep(run, s, run->chunk, (size_t)n);
            if (n == PROC_CHUNK)
                continue;
            return;
        }
        if (n < 0 && errno == EAGAIN)
            return;
        close(s->fd);
        s->fd = -1;
        return;
    }
}

static void feed(struct run *run)
{
    const struct proc_opts *o = run->o;

    while (run->in_off < o->input_len) {
        ssize_t n = write(run->in_fd, o->input + run->in_off, o->input_len - run->in_off);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            return;
        if (n < 0)
            break; /* EPIPE: the child does not read its input */
        run->in_off += (size_t)n;
    }
    close(run->in_fd);
    run->in_fd = -1;
}

static void terminate(struct run *run)
{
    if (run->term_at || run->exited)
        return;
    (void)killpg(run->pid, SIGTERM);
    run->term_at = now_ms() + (run->o->grace_ms > 0 ? run->o->grace_ms : 1);
}

static void reap(struct run *run, int64_t started)
{
    struct proc_result *r = run->r;
    int status;

    while (waitpid(run->pid, &status, 0) < 0 && errno == EINTR)
        ;
    r->duration_ms = now_ms() - started;
    if (WIFSIGNALED(status)) {
        r->exit_code = -1;
        r->signal = WTERMSIG(status);
    } else {
        r->exit_code = WEXITSTATUS(status);
    }
    run->exited = 1;
}

/* Poll until the main process has exited and its output is read. */
static void loop(struct run *run, int64_t started)
{
    const struct proc_opts *o = run->o;
    int64_t deadline = o->timeout_ms > 0 ? started + o->timeout_ms : 0;
    int64_t drain_until = 0;

    for (;;) {
        struct pollfd fds[5];
        int nfds = 0, wait_ms = -1;
        int64_t t = now_ms();

        if (run->exited && run->out.fd < 0 && run->err.fd < 0)
            return;
        if (run->exited && drain_until && t >= drain_until)
            return;
        if (deadline && t >= deadline && !run->exited) {
            run->r->timed_out = 1;
            terminate(run);
            deadline = 0;
        }
        if (run->term_at && t >= run->term_at && !run->exited) {
            (void)killpg(run->pid, SIGKILL);
            run->term_at = 0;
        }

        if (deadline)
            wait_ms = (int)(deadline - t);
        if (run->term_at && (wait_ms < 0 || run->term_at - t < wait_ms))
            wait_ms = (int)(run->term_at - t);
        if (drain_until && (wait_ms < 0 || drain_until - t < wait_ms))
            wait_ms = (int)(drain_until - t);
        if (run->unflushed_at && o->flush_ms > 0) {
            int64_t due = run->unflushed_at + o->flush_ms;

            if (due <= t) {
                run->unflushed_at = 0;
                o->sink(o->ctx, 0, NULL, 0);
            } else if (wait_ms < 0 || due - t < wait_ms) {
                wait_ms = (int)(due - t);
            }
        }
        if (wait_ms < 0 && run->exited)
            wait_ms = PROC_DRAIN_MS;

        if (run->out.fd >= 0)
            fds[nfds++] = (struct pollfd){run->out.fd, POLLIN, 0};
        if (run->err.fd >= 0)
            fds[nfds++] = (struct pollfd){run->err.fd, POLLIN, 0};
        if (run->in_fd >= 0)
            fds[nfds++] = (struct pollfd){run->in_fd, POLLOUT, 0};
        if (!run->exited)
            fds[nfds++] = (struct pollfd){run->pidfd, POLLIN, 0};
        if (o->cancel_fd >= 0 && !run->r->canceled && !run->exited)
            fds[nfds++] = (struct pollfd){o->cancel_fd, POLLIN, 0};

        if (poll(fds, (nfds_t)nfds, wait_ms) < 0 && errno != EINTR)
            return;

        for (int i = 0; i < nfds; i++) {
            if (!fds[i].revents)
                continue;
            if (fds[i].fd == run->out.fd)
                drain(run, &run->out);
            else if (fds[i].fd == run->err.fd)
                drain(run, &run->err);
            else if (fds[i].fd == run->in_fd)
                feed(run);
            else if (fds[i].fd == run->pidfd && !run->exited) {
                reap(run, started);
                drain_until = now_ms() + PROC_DRAIN_MS;
            } else if (fds[i].fd == o->cancel_fd) {
                run->r->canceled = 1;
                terminate(run);
            }
        }
    }
}

static int make_pipe(int p[2])
{
    if (pipe2(p, O_CLOEXEC) < 0)
        return err_errno(ERR_FAIL, "pipe");
    return 0;
}

int proc_run(const struct proc_opts *o, struct proc_result *res)
{
    struct run run = {.o = o, .r = res, .pidfd = -1, .in_fd = -1};
    int in[2] = {-1, -1}, out[2] = {-1, -1}, err[2] = {-1, -1};
    int64_t started;
    int rc;

    memset(res, 0, sizeof(*res));
    res->out_kept_all = 1;
    run.out = (struct stream){-1, PROC_STDOUT, 0, 0};
    run.err = (struct stream){-1, PROC_STDERR, 0, 0};

    rc = make_pipe(in);
    if (rc == 0)
        rc = make_pipe(out);
    if (rc == 0)
        rc = make_pipe(err);
    if (rc < 0)
        goto out;

    started = now_ms();
    rc = spawn(&run, in, out, err);
    if (rc < 0)
        goto out;
    close(in[0]);
    close(out[1]);
    close(err[1]);
    in[0] = out[1] = err[1] = -1;

    run.pidfd = (int)syscall(SYS_pidfd_open, run.pid, 0);
    if (run.pidfd < 0) {
        rc = err_errno(ERR_FAIL, "pidfd_open %d", (int)run.pid);
        (void)killpg(run.pid, SIGKILL);
        waitpid(run.pid, NULL, 0);
        goto out;
    }

    run.in_fd = in[1];
    run.out.fd = out[0];
    run.err.fd = err[0];
    in[1] = out[0] = err[0] = -1;
    fcntl(run.in_fd, F_SETFL, O_NONBLOCK);
    fcntl(run.out.fd, F_SETFL, O_NONBLOCK);
    fcntl(run.err.fd, F_SETFL, O_NONBLOCK);
    if (!o->input_len) {
        close(run.in_fd);
        run.in_fd = -1;
    }

    run.chunk = xmalloc(PROC_CHUNK);
    loop(&run, started);

    /* Whatever the action left in its group goes with it. */
    (void)killpg(run.pid, SIGKILL);
    res->out_bytes = run.out.total;
    res->err_bytes = run.err.total;
    res->out_truncated = run.out.truncated;
    res->err_truncated = run.err.truncated;

out:
    free(run.chunk);
    for (int i = 0; i < 2; i++) {
        if (in[i] >= 0)
            close(in[i]);
        if (out[i] >= 0)
            close(out[i]);
        if (err[i] >= 0)
            close(err[i]);
    }
    if (run.in_fd >= 0)
        close(run.in_fd);
    if (run.out.fd >= 0)
        close(run.out.fd);
    if (run.err.fd >= 0)
        close(run.err.fd);
    if (run.pidfd >= 0)
        close(run.pidfd);
    return rc;
}

void proc_result_free(struct proc_result *res)
{
    buf_free(&res->out);
    buf_free(&res->err_tail);
}

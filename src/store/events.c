#include "store/events.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <poll.h>
#include <pthread.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/err.h"
#include "util/fs.h"

static const char *const channel_files[STORE_CH_COUNT] = {"queue", "finished", "log", "jobs",
                                                          "cancel"};

static struct {
    pthread_once_t once;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    uint64_t gen[STORE_CH_COUNT];
    int ifd;
    char **dirs;   /* watched folders, one per database */
    int *lock_fds; /* per folder: "watchers", read-locked while we watch */
    int ndirs;
} hub = {PTHREAD_ONCE_INIT, PTHREAD_MUTEX_INITIALIZER, .ifd = -1};

static void hub_init(void)
{
    pthread_condattr_t attr;

    pthread_condattr_init(&attr);
    pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
    pthread_cond_init(&hub.cond, &attr);
    pthread_condattr_destroy(&attr);
}

static void bump(int ch)
{
    pthread_mutex_lock(&hub.mu);
    hub.gen[ch]++;
    pthread_cond_broadcast(&hub.cond);
    pthread_mutex_unlock(&hub.mu);
}

static void *watch_loop(void *arg)
{
    char events[4096] __attribute__((aligned(__alignof__(struct inotify_event))));

    (void)arg;
    for (;;) {
        ssize_t n = read(hub.ifd, events, sizeof(events));

        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return NULL;
        for (char *p = events; p < events + n;) {
            struct inotify_event *ev = (struct inotify_event *)p;

            for (int ch = 0; ev->len && ch < STORE_CH_COUNT; ch++) {
                if (strcmp(ev->name, channel_files[ch]) == 0)
                    bump(ch);
            }
            p += sizeof(*ev) + ev->len;
        }
    }
}

/*
 * Every watching process holds a POSIX read lock on dir/watchers for as
 * long as it lives, so that a notifier can ask (F_GETLK) whether any other
 * process listens: alone, it need not touch files at all. The fd stays
 * open: closing any fd of that file would drop the lock.
 */
static int watchers_lock(const char *dir)
{
    char *path = fs_join(dir, "watchers");
    struct flock fl = {.l_type = F_RDLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);

    free(path);
    if (fd >= 0 && fcntl(fd, F_SETLK, &fl) < 0) {
        close(fd);
        fd = -1;
    }
    return fd;
}

/* 1 unless we know that no other process watches dir. */
static int others_watch(const char *dir)
{
    struct flock fl = {.l_type = F_WRLCK, .l_whence = SEEK_SET, .l_start = 0, .l_len = 1};
    int fd = -1;

    pthread_mutex_lock(&hub.mu);
    for (int i = 0; i < hub.ndirs; i++) {
        if (strcmp(hub.dirs[i], dir) == 0)
            fd = hub.lock_fds[i];
    }
    pthread_mutex_unlock(&hub.mu);
    if (fd < 0 || fcntl(fd, F_GETLK, &fl) < 0)
        return 1;
    /* Our own lock does not conflict with our own request. */
    return fl.l_type != F_UNLCK;
}

int events_watch(const char *dir)
{
    pthread_t thread;
    int lock_fd, rc = 0;

    pthread_once(&hub.once, hub_init);
    pthread_mutex_lock(&hub.mu);
    for (int i = 0; i < hub.ndirs; i++) {
        if (strcmp(hub.dirs[i], dir) == 0)
            goto out;
    }
    rc = fs_mkdirs(dir, 0755);
    if (rc < 0)
        goto out;
    for (int ch = 0; ch < STORE_CH_COUNT; ch++) {
        char *path = fs_join(dir, channel_files[ch]);
        int fd = open(path, O_WRONLY | O_CREAT | O_CLOEXEC, 0644);

        free(path);
        if (fd >= 0)
            close(fd);
    }

    if (hub.ifd < 0) {
        hub.ifd = inotify_init1(IN_CLOEXEC);
        if (hub.ifd < 0) {
            rc = err_errno(ERR_FAIL, "inotify_init1");
            goto out;
        }
        if (pthread_create(&thread, NULL, watch_loop, NULL) != 0) {
            rc = err_set(ERR_FAIL, "events: cannot start the watch thread");
            goto out;
        }
        pthread_detach(thread);
    }
    if (inotify_add_watch(hub.ifd, dir, IN_ATTRIB | IN_MODIFY) < 0) {
        rc = err_errno(ERR_FAIL, "inotify_add_watch %s", dir);
        goto out;
    }
    lock_fd = watchers_lock(dir);
    hub.dirs = xrealloc(hub.dirs, sizeof(*hub.dirs) * (size_t)(hub.ndirs + 1));
    hub.lock_fds = xrealloc(hub.lock_fds, sizeof(*hub.lock_fds) * (size_t)(hub.ndirs + 1));
    hub.lock_fds[hub.ndirs] = lock_fd;
    hub.dirs[hub.ndirs++] = xstrdup(dir);

out:
    pthread_mutex_unlock(&hub.mu);
    return rc;
}

int events_notify(const char *dir, enum store_channel ch)
{
    char path[PATH_MAX];

    pthread_once(&hub.once, hub_init);
    bump(ch);
    if (!dir || !others_watch(dir))
        return 0;
    snprintf(path, sizeof(path), "%s/%s", dir, channel_files[ch]);
    if (utimensat(AT_FDCWD, path, NULL, 0) < 0)
        return err_errno(ERR_FAIL, "notify: touch %s", path);
    return 0;
}

uint64_t events_seen(enum store_channel ch)
{
    uint64_t v;

    pthread_once(&hub.once, hub_init);
    pthread_mutex_lock(&hub.mu);
    v = hub.gen[ch];
    pthread_mutex_unlock(&hub.mu);
    return v;
}

int events_wait(enum store_channel ch, uint64_t *seen, int timeout_ms)
{
    struct timespec deadline;
    int moved;

    pthread_once(&hub.once, hub_init);
    clock_gettime(CLOCK_MONOTONIC, &deadline);
    deadline.tv_sec += timeout_ms / 1000;
    deadline.tv_nsec += (long)(timeout_ms % 1000) * 1000000;
    if (deadline.tv_nsec >= 1000000000) {
        deadline.tv_sec++;
        deadline.tv_nsec -= 1000000000;
    }

    pthread_mutex_lock(&hub.mu);
    while (hub.gen[ch] == *seen) {
        if (pthread_cond_timedwait(&hub.cond, &hub.mu, &deadline) == ETIMEDOUT)
            break;
    }
    moved = hub.gen[ch] != *seen;
    *seen = hub.gen[ch];
    pthread_mutex_unlock(&hub.mu);
    return moved;
}

#include "util/fs.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util/err.h"

int fs_read_file(const char *path, size_t max, struct buf *out)
{
    char chunk[65536];
    size_t total = 0;
    int fd, rc = 0;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_errno(errno == ENOENT ? ERR_NOTFOUND : ERR_FAIL, "open %s", path);

    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_errno(ERR_FAIL, "read %s", path);
            goto out;
        }
        if (n == 0)
            break;
        total += (size_t)n;
        if (total > max) {
            rc = err_set(ERR_TOOBIG, "%s: larger than the limit of %zu bytes", path, max);
            goto out;
        }
        buf_add(out, chunk, (size_t)n);
    }

out:
    close(fd);
    return rc;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode)
{
    char *tmp = xasprintf("%s.tmp.%d", path, (int)getpid());
    int fd, rc = 0;

    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
    if (fd < 0) {
        rc = err_errno(ERR_FAIL, "open %s", tmp);
        goto out;
    }
    if (write_all(fd, data, len) < 0 || fsync(fd) < 0) {
        rc = err_errno(ERR_FAIL, "write %s", tmp);
        close(fd);
        unlink(tmp);
        goto out;
    }
    close(fd);
    if (rename(tmp, path) < 0) {
        rc = err_errno(ERR_FAIL, "rename %s to %s", tmp, path);
        unlink(tmp);
    }

out:
    free(tmp);
    return rc;
}

int fs_mkdirs(const char *path, mode_t mode)
{
    char *copy = xstrdup(path);
    int rc = 0;

    for (char *p = copy + 1; *p; p++) {
        if (*p != '/')
            continue;
        *p = '\0';
        if (mkdir(copy, mode) < 0 && errno != EEXIST) {
            rc = err_errno(ERR_FAIL, "mkdir %s", copy);
            goto out;
        }
        *p = '/';
    }
    if (mkdir(copy, mode) < 0 && errno != EEXIST)
        rc = err_errno(ERR_FAIL, "mkdir %s", copy);

out:
    free(copy);
    return rc;
}

static int rmtree_at(int parent, const char *name)
{
    struct stat st;
    DIR *dir;
    struct dirent *de;
    int fd, rc = 0;

    if (fstatat(parent, name, &st, AT_SYMLINK_NOFOLLOW) < 0)
        return errno == ENOENT ? 0 : err_errno(ERR_FAIL, "stat %s", name);
    if (!S_ISDIR(st.st_mode)) {
        if (unlinkat(parent, name, 0) < 0 && errno != ENOENT)
            return err_errno(ERR_FAIL, "unlink %s", name);
        return 0;
    }

    fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0)
        return err_errno(ERR_FAIL, "open %s", name);
    dir = fdopendir(fd);
    if (!dir) {
        close(fd);
        return err_errno(ERR_FAIL, "opendir %s", name);
    }
    while ((de = readdir(dir)) != NULL) {
        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        rc = rmtree_at(dirfd(dir), de->d_name);
        if (rc < 0)
            break;
    }
    closedir(dir);
    if (rc == 0 && unlinkat(parent, name, AT_REMOVEDIR) < 0 && errno != ENOENT)
        rc = err_errno(ERR_FAIL, "rmdir %s", name);
    return rc;
}

int fs_rmtree(const char *path)
{
    return rmtree_at(AT_FDCWD, path);
}

static int copy_file(const char *src, const char *dst, mode_t mode)
{
    char chunk[65536];
    int in, out, rc = 0;

    in = open(src, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
    if (in < 0)
        return err_errno(ERR_FAIL, "open %s", src);
    out = open(dst, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode & 07777);
    if (out < 0) {
        rc = err_errno(ERR_FAIL, "create %s", dst);
        goto out;
    }
    for (;;) {
        ssize_t n = read(in, chunk, sizeof(chunk));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            rc = err_errno(ERR_FAIL, "read %s", src);
            break;
        }
        if (n == 0)
            break;
        if (write_all(out, chunk, (size_t)n) < 0) {
            rc = err_errno(ERR_FAIL, "write %s", dst);
            break;
        }
    }
    close(out);

out:
    close(in);
    return rc;
}

int fs_copy_tree(const char *src, const char *dst)
{
    struct stat st;
    DIR *dir;
    struct dirent *de;
    int rc = 0;

    if (lstat(src, &st) < 0)
        return err_errno(ERR_FAIL, "stat %s", src);
    if (S_ISLNK(st.st_mode)) {
        char target[PATH_MAX];
        ssize_t n = readlink(src, target, sizeof(target) - 1);

        if (n < 0)
            return err_errno(ERR_FAIL, "readlink %s", src);
        target[n] = '\0';
        if (symlink(target, dst) < 0)
            return err_errno(ERR_FAIL, "symlink %s", dst);
        return 0;
    }
    if (S_ISREG(st.st_mode))
        return copy_file(src, dst, st.st_mode);
    if (!S_ISDIR(st.st_mode))
        return 0;

    if (mkdir(dst, (st.st_mode & 07777) | 0700) < 0)
        return err_errno(ERR_FAIL, "mkdir %s", dst);
    dir = opendir(src);
    if (!dir)
        return err_errno(ERR_FAIL, "opendir %s", src);
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        char *s, *d;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        s = fs_join(src, de->d_name);
        d = fs_join(dst, de->d_name);
        rc = fs_copy_tree(s, d);
        free(s);
        free(d);
    }
    closedir(dir);
    return rc;
}

int fs_tree_size(const char *path, long long *out)
{
    struct stat st;
    DIR *dir;
    struct dirent *de;
    int rc = 0;

    if (lstat(path, &st) < 0)
        return err_errno(ERR_FAIL, "stat %s", path);
    if (S_ISREG(st.st_mode))
        *out += (long long)st.st_size;
    if (!S_ISDIR(st.st_mode))
        return 0;
    dir = opendir(path);
    if (!dir)
        return err_errno(ERR_FAIL, "opendir %s", path);
    while (rc == 0 && (de = readdir(dir)) != NULL) {
        char *p;

        if (strcmp(de->d_name, ".") == 0 || strcmp(de->d_name, "..") == 0)
            continue;
        p = fs_join(path, de->d_name);
        rc = fs_tree_size(p, out);
        free(p);
    }
    closedir(dir);
    return rc;
}

int fs_exists(const char *path)
{
    struct stat st;

    return lstat(path, &st) == 0;
}

char *fs_join(const char *a, const char *b)
{
    size_t la = strlen(a);

    if (la > 0 && a[la - 1] == '/')
        return xasprintf("%s%s", a, b);
    return xasprintf("%s/%s", a, b);
}

int fs_realpath(const char *path, char **out)
{
    char *p = realpath(path, NULL);

    if (!p)
        return err_errno(errno == ENOENT ? ERR_NOTFOUND : ERR_FAIL, "%s", path);
    *out = p;
    return 0;
}

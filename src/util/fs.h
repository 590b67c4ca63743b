/*
 * fs: files and folders.
 *
 * Every function returns 0 on success or a negative ERR_* code with a
 * message that names the path and the failed call.
 */
#ifndef PACKRUN_FS_H
#define PACKRUN_FS_H

#include <stddef.h>
#include <sys/types.h>

#include "util/buf.h"

/* Read a whole file into out (appended). ERR_TOOBIG past max bytes,
 * ERR_NOTFOUND when it does not exist. */
int fs_read_file(const char *path, size_t max, struct buf *out);

/* Write data to path atomically: a temporary file in the same folder,
 * fsync, rename. */
int fs_write_atomic(const char *path, const void *data, size_t len, mode_t mode);

/* mkdir -p. */
int fs_mkdirs(const char *path, mode_t mode);

/* rm -rf; a missing path is not an error. Never follows symlinks. */
int fs_rmtree(const char *path);

/* Copy the regular files, folders and symlinks under src into dst (which
 * must not exist), keeping modes. */
int fs_copy_tree(const char *src, const char *dst);

/* Total size in bytes of the regular files under path. */
int fs_tree_size(const char *path, long long *out);

/* 1 if path exists (lstat), 0 if not. */
int fs_exists(const char *path);

/* Join two path parts with one '/'. Caller frees. */
char *fs_join(const char *a, const char *b);

/* realpath(3) into a caller-freed string. */
int fs_realpath(const char *path, char **out);

#endif

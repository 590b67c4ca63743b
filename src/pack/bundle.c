#include "pack/bundle.h"

#include <archive.h>
#include <archive_entry.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "pack/pack.h"
#include "util/err.h"
#include "util/fs.h"

static const char *const skipped[] = {".git", "__pycache__", "node_modules", ".venv", NULL};

static int skipped_name(const char *path)
{
    const char *base = strrchr(path, '/');

    base = base ? base + 1 : path;
    for (const char *const *s = skipped; *s; s++) {
        if (strcmp(base, *s) == 0)
            return 1;
    }
    return 0;
}

/* --- create ---------------------------------------------------------- */

static int write_cb_open(struct archive *a, void *ctx)
{
    (void)a;
    (void)ctx;
    return ARCHIVE_OK;
}

static la_ssize_t write_cb(struct archive *a, void *ctx, const void *data, size_t len)
{
    (void)a;
    buf_add(ctx, data, len);
    return (la_ssize_t)len;
}

static int copy_file(struct archive *out, const char *path)
{
    struct buf data = BUF_INIT;
    int rc;

    rc = fs_read_file(path, (size_t)PACK_MAX_BYTES, &data);
    if (rc == 0 && data.len > 0 && archive_write_data(out, data.data, data.len) < 0)
        rc = err_set(ERR_FAIL, "archive %s: %s", path, archive_error_string(out));
    buf_free(&data);
    return rc;
}

int bundle_create(const char *dir, struct buf *out)
{
    struct archive *disk = archive_read_disk_new();
    struct archive *tar = archive_write_new();
    struct archive_entry *entry = archive_entry_new();
    size_t prefix = strlen(dir);
    int rc = 0, files = 0;

    archive_write_add_filter_gzip(tar);
    archive_write_set_format_pax_restricted(tar);
    archive_read_disk_set_symlink_physical(disk);
    if (archive_write_open(tar, out, write_cb_open, write_cb, NULL) != ARCHIVE_OK ||
        archive_read_disk_open(disk, dir) != ARCHIVE_OK) {
        rc = err_set(ERR_FAIL, "archive %s: %s", dir, archive_error_string(disk));
        goto out;
    }

    for (;;) {
        const char *path;
        int r = archive_read_next_header2(disk, entry);

        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK) {
            rc = err_set(ERR_FAIL, "archive %s: %s", dir, archive_error_string(disk));
            break;
        }
        path = archive_entry_sourcepath(entry);
        if (skipped_name(path))
            continue;
        archive_read_disk_descend(disk);
        if (strlen(path) <= prefix + 1)
            continue;
        if (++files > PACK_MAX_FILES) {
            rc = err_set(ERR_TOOBIG, "%s: more than %d files", dir, PACK_MAX_FILES);
            break;
        }
        archive_entry_set_pathname(entry, path + prefix + 1);
        archive_entry_set_uid(entry, 0);
        archive_entry_set_gid(entry, 0);
        archive_entry_set_uname(entry, "");
        archive_entry_set_gname(entry, "");
        if (archive_write_header(tar, entry) != ARCHIVE_OK) {
            rc = err_set(ERR_FAIL, "archive %s: %s", path, archive_error_string(tar));
            break;
        }
        if (archive_entry_filetype(entry) == AE_IFREG) {
            rc = copy_file(tar, path);
            if (rc < 0)
                break;
        }
    }
    if (rc == 0 && archive_write_close(tar) != ARCHIVE_OK)
        rc = err_set(ERR_FAIL, "archive %s: %s", dir, archive_error_string(tar));

out:
    archive_entry_free(entry);
    archive_read_free(disk);
    archive_write_free(tar);
    return rc;
}

/* --- extract ----------------------------------------------------------- */

/* The top folder every entry sits under, or NULL (caller frees). */
static char *common_top(const void *data, size_t len)
{
    struct archive *a = archive_read_new();
    struct archive_entry *entry;
    char *top = NULL;
    int mixed = 0;

    archive_read_support_filter_all(a);
    archive_read_support_format_tar(a);
    if (archive_read_open_memory(a, data, len) != ARCHIVE_OK)
        goto out;
    while (!mixed && archive_read_next_header(a, &entry) == ARCHIVE_OK) {
        const char *path = archive_entry_pathname(entry);
        const char *slash;
        size_t n;

        while (path && strncmp(path, "./", 2) == 0)
            path += 2;
        if (!path || !*path)
            continue;
        slash = strchr(path, '/');
        n = slash ? (size_t)(slash - path) : strlen(path);
        if (!slash && archive_entry_filetype(entry) != AE_IFDIR) {
            mixed = 1;
        } else if (!top) {
            top = strndup(path, n);
        } else if (strlen(top) != n || strncmp(top, path, n) != 0) {
            mixed = 1;
        }
    }

out:
    archive_read_free(a);
    if (mixed) {
        free(top);
        top = NULL;
    }
    return top;
}

/* Where entry goes under dest, with top stripped; NULL to skip it. */
static char *target_path(const char *dest, const char *top, const char *path)
{
    while (strncmp(path, "./", 2) == 0)
        path += 2;
    if (top) {
        size_t n = strlen(top);

        if (strncmp(path, top, n) != 0 || (path[n] != '/' && path[n] != '\0'))
            return NULL;
        path += n;
        while (*path == '/')
            path++;
    }
    if (!*path)
        return NULL;
    return fs_join(dest, path);
}

static int check_entry(struct archive_entry *entry, const char *name, long long *bytes)
{
    mode_t type = archive_entry_filetype(entry);
    const char *link = archive_entry_symlink(entry);

    if (name[0] == '/')
        return err_set(ERR_INVALID, "archive entry '%s': absolute path", name);
    if (strcmp(name, "..") == 0 || strncmp(name, "../", 3) == 0 || strstr(name, "/../") ||
        (strlen(name) >= 3 && strcmp(name + strlen(name) - 3, "/..") == 0))
        return err_set(ERR_INVALID, "archive entry '%s': path leaves the pack", name);
    if (strlen(name) > BUNDLE_MAX_PATH)
        return err_set(ERR_INVALID, "archive entry '%.64s...': path longer than %d bytes", name,
                       BUNDLE_MAX_PATH);
    if (archive_entry_hardlink(entry))
        return err_set(ERR_INVALID, "archive entry '%s': hard links may not be in a pack", name);
    if (type != AE_IFREG && type != AE_IFDIR && type != AE_IFLNK)
        return err_set(ERR_INVALID,
                       "archive entry '%s': only files, folders and symlinks may "
                       "be in a pack",
                       name);
    if (type == AE_IFLNK && (!link || link[0] == '/'))
        return err_set(ERR_INVALID, "archive entry '%s': symlink to an absolute path", name);
    if (type == AE_IFREG) {
        *bytes += archive_entry_size(entry);
        if (*bytes > PACK_MAX_BYTES)
            return err_set(ERR_TOOBIG, "archive: the pack is larger than %ld bytes",
                           PACK_MAX_BYTES);
    }
    return 0;
}

/* Copy one file's data, counting what is really there against the limit
 * (an entry's declared size may lie). */
static int copy_data(struct archive *in, struct archive *out, const char *name, long long *written)
{
    for (;;) {
        const void *block;
        size_t size;
        la_int64_t offset;
        int r = archive_read_data_block(in, &block, &size, &offset);

        if (r == ARCHIVE_EOF)
            return 0;
        if (r != ARCHIVE_OK)
            return err_set(ERR_INVALID, "archive entry '%s': %s", name, archive_error_string(in));
        *written += (long long)size;
        if (*written > PACK_MAX_BYTES)
            return err_set(ERR_TOOBIG, "archive: the pack is larger than %ld bytes",
                           PACK_MAX_BYTES);
        if (archive_write_data_block(out, block, size, offset) != ARCHIVE_OK)
            return err_set(ERR_FAIL, "archive entry '%s': %s", name, archive_error_string(out));
    }
}

int bundle_extract(const void *data, size_t len, const char *dest)
{
    /* Entry names are checked here (not absolute, no ".."), then written
     * under dest, which is absolute; libarchive refuses to write through a
     * symlink or to a path with "..". */
    int flags = ARCHIVE_EXTRACT_SECURE_SYMLINKS | ARCHIVE_EXTRACT_SECURE_NODOTDOT |
                ARCHIVE_EXTRACT_PERM | ARCHIVE_EXTRACT_NO_OVERWRITE;
    struct archive *a = archive_read_new();
    struct archive *disk = archive_write_disk_new();
    struct archive_entry *entry;
    char *top = NULL, *name = NULL;
    long long bytes = 0, written = 0;
    int rc = 0, entries = 0;

    if (len > (size_t)BUNDLE_MAX_BYTES) {
        rc = err_set(ERR_TOOBIG, "archive: larger than %ld bytes", BUNDLE_MAX_BYTES);
        goto out;
    }
    top = common_top(data, len);
    archive_read_support_filter_gzip(a);
    archive_read_support_filter_none(a);
    archive_read_support_format_tar(a);
    archive_write_disk_set_options(disk, flags);
    if (archive_read_open_memory(a, data, len) != ARCHIVE_OK) {
        rc = err_set(ERR_INVALID, "archive: %s", archive_error_string(a));
        goto out;
    }

    for (;;) {
        char *target;
        int r = archive_read_next_header(a, &entry);

        if (r == ARCHIVE_EOF)
            break;
        if (r != ARCHIVE_OK) {
            rc = err_set(ERR_INVALID, "archive: %s", archive_error_string(a));
            break;
        }
        /* Copied: renaming the entry below frees the original. */
        free(name);
        name = archive_entry_pathname(entry) ? xstrdup(archive_entry_pathname(entry)) : NULL;
        if (!name) {
            rc = err_set(ERR_INVALID, "archive: an entry has no name");
            break;
        }
        if (++entries > PACK_MAX_FILES) {
            rc = err_set(ERR_TOOBIG, "archive: more than %d entries", PACK_MAX_FILES);
            break;
        }
        rc = check_entry(entry, name, &bytes);
        if (rc < 0)
            break;
        target = target_path(dest, top, name);
        if (!target)
            continue;
        archive_entry_set_pathname(entry, target);
        archive_entry_set_perm(entry, archive_entry_perm(entry) & 0755);
        free(target);

        if (archive_write_header(disk, entry) != ARCHIVE_OK) {
            rc = err_set(ERR_INVALID, "archive entry '%s': %s", name, archive_error_string(disk));
            break;
        }
        if (archive_entry_filetype(entry) == AE_IFREG) {
            rc = copy_data(a, disk, name, &written);
            if (rc < 0)
                break;
        }
        (void)archive_write_finish_entry(disk);
    }

out:
    free(name);
    free(top);
    archive_read_free(a);
    archive_write_free(disk);
    return rc;
}

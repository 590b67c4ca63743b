/*
 * bundle: a pack folder as a .tar.gz, the form a pack travels in between
 * the CLI and an API server on another host.
 *
 * bundle_create() archives a pack folder (without .git, __pycache__,
 * node_modules and .venv). bundle_extract() unpacks an untrusted archive
 * with libarchive's secure flags (no absolute paths, no "..", no writing
 * through symlinks) and hard limits on entries, bytes and path length;
 * only regular files, folders and relative symlinks are accepted. The
 * extracted folder is then checked whole by pack_load() like any other.
 */
#ifndef PACKRUN_BUNDLE_H
#define PACKRUN_BUNDLE_H

#include <stddef.h>

#include "util/buf.h"

/* The largest archive accepted, compressed. */
#define BUNDLE_MAX_BYTES (64L * 1024 * 1024)
#define BUNDLE_MAX_PATH  1024

/* Append a gzip-compressed tar of the pack in dir to out. */
int bundle_create(const char *dir, struct buf *out);

/*
 * Extract the archive in data (len bytes) into dest, an empty folder.
 * An archive whose entries all sit under one top folder (mypack/...) is
 * unpacked with that folder stripped. ERR_INVALID with a message naming
 * the entry for anything unsafe, malformed or over a limit; ERR_TOOBIG
 * past the entry or byte limits of a pack.
 */
int bundle_extract(const void *data, size_t len, const char *dest);

#endif

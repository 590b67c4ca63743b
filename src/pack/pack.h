/*
 * pack: pack and action metadata, loaded from a folder and validated whole.
 *
 * A pack folder holds pack.yaml, actions/<name>.yaml (or .yml) with their
 * entry points, and optionally requirements.txt, package.json and lib/.
 * The names .git, __pycache__, node_modules and .venv are left out at any
 * depth: they are not part of the pack's digest and are not installed.
 * pack_load() reads and checks all of it before anything is stored, so
 * that a pack is registered completely or not at all. The loaded pack is
 * a JSON object, which is also the form the store keeps:
 *
 *   {"ref", "label", "description", "version",
 *    "author", "email" (null when absent), "tags" ([]), "enabled" (true),
 *    "digest":   SHA-256 of the pack's contents (paths, kinds, execute
 *                bits, bytes, symlink targets; not times or owners),
 *    "runtimes": runner types its actions use, sorted, without duplicates,
 *    "manifests": {"python": "requirements.txt"?, "node": "package.json"?},
 *    "meta":     pack.yaml as read (unknown fields kept),
 *    "actions":  [action, ...] sorted by ref]
 *
 * and each action:
 *
 *   {"ref": "pack.name", "pack", "name", "label", "description", "enabled",
 *    "tags", "runner_type", "entry_point" (as written: relative to actions/),
 *    "entry_path" ("actions/" + entry_point: relative to the pack folder),
 *    "runtime_version" (null: any), "parameters" ({}), "output" (null: none),
 *    "parameter_delivery", "parameter_format", "output_format",
 *    "timeout_seconds" (null when the server default applies),
 *    "meta": the action YAML as read}
 *
 * with every default of DESIGN.md filled in: label the name, description
 * "", enabled true, tags [], runner_type "shell", parameter_delivery
 * "stdin", parameter_format "json", output_format "text". An action's
 * ref may be written "name" alone; the pack's ref is then prefixed.
 */
#ifndef PACKRUN_PACK_H
#define PACKRUN_PACK_H

#include <jansson.h>

/* Hard limits on what a pack may hold. */
#define PACK_MAX_FILES      10000
#define PACK_MAX_BYTES      (256L * 1024 * 1024)
#define PACK_MAX_YAML_BYTES (1024 * 1024)
#define PACK_MAX_ACTIONS    1000

/*
 * Load and validate the pack in dir.
 *
 * On success returns 0 and sets *out (caller decrefs). On a problem with
 * the pack returns ERR_INVALID and sets *problems (caller decrefs) to an
 * array of messages, one per problem, each naming the file and the field:
 *   "actions/greet.yaml: field 'entry_point': actions/greet.py does not exist"
 * err_msg() then holds the first message and a count of the others.
 * Other failures (I/O) return their ERR_* code with *problems NULL.
 */
int pack_load(const char *dir, json_t **out, json_t **problems);

/*
 * Copy the pack in src into root/<ref>/<digest>, the pack's release
 * folder, unless it is already there. The copy is made in a temporary
 * folder and renamed, so a release folder is always complete. pack is
 * what pack_load() returned for src; the copy is checked against its
 * digest (ERR_CONFLICT if src changed in between). Symlinks are copied as
 * symlinks, regular files with mode 0755 or 0644 after their execute bit.
 * Safe to call concurrently for the same pack. Sets *dir (caller frees)
 * to the release folder.
 */
int pack_install(const char *src, const json_t *pack, const char *root, char **dir);

/* 1 if ref is a valid pack ref: [a-z0-9_-]+, at most 64 characters. */
int pack_ref_valid(const char *ref);

#endif

/*
 * libFuzzer target: the pack loader. The input is a pack.yaml and an
 * action YAML separated by a line "---8<---"; both are written into a
 * pack folder with one entry script and loaded whole.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "pack/pack.h"
#include "util/fs.h"
#include "util/hash.h"

static char *pack_dir;

static void write_file(const char *name, const char *data, size_t len)
{
    char *path = fs_join(pack_dir, name);

    fs_write_atomic(path, data, len, 0644);
    free(path);
}

static void setup(void)
{
    char *actions;

    hash_init();
    pack_dir = xstrdup("/tmp/packrun-fuzz-pack-XXXXXX");
    if (!mkdtemp(pack_dir))
        abort();
    actions = fs_join(pack_dir, "actions");
    fs_mkdirs(actions, 0755);
    free(actions);
    write_file("actions/a.sh", "true\n", 5);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char cut[] = "\n---8<---\n";
    const char *text = (const char *)data;
    const char *split = memmem(text, size, cut, sizeof(cut) - 1);
    size_t first = split ? (size_t)(split - text) : size;
    json_t *pack = NULL, *problems = NULL;

    if (!pack_dir)
        setup();
    write_file("pack.yaml", text, first);
    if (split)
        write_file("actions/a.yaml", split + sizeof(cut) - 1, size - first - (sizeof(cut) - 1));
    else
        write_file("actions/a.yaml", "", 0);
    (void)pack_load(pack_dir, &pack, &problems);
    json_decref(pack);
    json_decref(problems);
    return 0;
}

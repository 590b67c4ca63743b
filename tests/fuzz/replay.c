/*
 * Replays a fuzz target's corpus without libFuzzer, so that every input
 * that once crashed stays a regression test in the normal build:
 *   fuzz_replay_NAME FILE|DIR ...
 */
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "util/buf.h"
#include "util/fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int replay(const char *path)
{
    struct buf data = BUF_INIT;

    if (fs_read_file(path, 16 * 1024 * 1024, &data) < 0) {
        fprintf(stderr, "replay: cannot read %s\n", path);
        return 1;
    }
    LLVMFuzzerTestOneInput((const uint8_t *)buf_str(&data), data.len);
    buf_free(&data);
    return 0;
}

int main(int argc, char **argv)
{
    int failed = 0, count = 0;

    for (int i = 1; i < argc; i++) {
        struct stat st;
        struct dirent **names = NULL;
        int n;

        if (stat(argv[i], &st) == 0 && !S_ISDIR(st.st_mode)) {
            failed |= replay(argv[i]);
            count++;
            continue;
        }
        n = scandir(argv[i], &names, NULL, alphasort);
        for (int j = 0; j < n; j++) {
            if (names[j]->d_name[0] != '.') {
                char *path = fs_join(argv[i], names[j]->d_name);

                failed |= replay(path);
                count++;
                free(path);
            }
            free(names[j]);
        }
        free(names);
    }
    printf("replayed %d inputs\n", count);
    return failed;
}

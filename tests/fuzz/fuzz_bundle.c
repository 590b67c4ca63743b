/*
 * libFuzzer target: the pack archive extractor. Every input is
 * extracted into a fresh folder, which must never receive anything
 * outside it.
 */
#include <stdint.h>
#include <stdlib.h>
#include <unistd.h>

#include "pack/bundle.h"
#include "util/fs.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char dir[] = "/tmp/packrun-fuzz-bundle-XXXXXX";

    if (!mkdtemp(dir))
        abort();
    (void)bundle_extract(data, size, dir);
    fs_rmtree(dir);
    return 0;
}

#include "util/hash.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/err.h"

int hash_init(void)
{
    if (sodium_init() < 0)
        return err_set(ERR_FAIL, "libsodium failed to initialise");
    return 0;
}

void hash_start(struct hash *h)
{
    crypto_hash_sha256_init(&h->st);
}

void hash_update(struct hash *h, const void *data, size_t len)
{
    crypto_hash_sha256_update(&h->st, data, len);
}

void hash_update_str(struct hash *h, const char *s)
{
    crypto_hash_sha256_update(&h->st, (const unsigned char *)s, strlen(s) + 1);
}

void hash_finish(struct hash *h, char out[HASH_HEX_LEN + 1])
{
    unsigned char bin[crypto_hash_sha256_BYTES];

    crypto_hash_sha256_final(&h->st, bin);
    sodium_bin2hex(out, HASH_HEX_LEN + 1, bin, sizeof(bin));
}

void hash_sha256_hex(const void *data, size_t len, char out[HASH_HEX_LEN + 1])
{
    struct hash h;

    hash_start(&h);
    hash_update(&h, data, len);
    hash_finish(&h, out);
}

void hash_token_new(char **token, char hash[HASH_HEX_LEN + 1])
{
    unsigned char bin[32];
    char b64[sodium_base64_ENCODED_LEN(32, sodium_base64_VARIANT_URLSAFE_NO_PADDING)];

    randombytes_buf(bin, sizeof(bin));
    sodium_bin2base64(b64, sizeof(b64), bin, sizeof(bin), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
    *token = xasprintf("pkr_%s", b64);
    hash_sha256_hex(*token, strlen(*token), hash);
    sodium_memzero(bin, sizeof(bin));
    sodium_memzero(b64, sizeof(b64));
}

int hash_file(const char *path, char out[HASH_HEX_LEN + 1])
{
    char chunk[65536];
    struct hash h;
    int fd;

    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return err_errno(errno == ENOENT ? ERR_NOTFOUND : ERR_FAIL, "open %s", path);
    hash_start(&h);
    for (;;) {
        ssize_t n = read(fd, chunk, sizeof(chunk));

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            close(fd);
            return err_errno(ERR_FAIL, "read %s", path);
        }
        if (n == 0)
            break;
        hash_update(&h, chunk, (size_t)n);
    }
    close(fd);
    hash_finish(&h, out);
    return 0;
}

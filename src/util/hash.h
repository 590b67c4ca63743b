/*
 * hash: SHA-256 (libsodium) as lowercase hex, one-shot or streaming.
 */
#ifndef PACKRUN_HASH_H
#define PACKRUN_HASH_H

#include <sodium.h>
#include <stddef.h>

#define HASH_HEX_LEN 64

struct hash {
    crypto_hash_sha256_state st;
};

/* Call once per process before any other libsodium use. */
int hash_init(void);

void hash_start(struct hash *h);
void hash_update(struct hash *h, const void *data, size_t len);
/* Feed a string with its terminating NUL, so that fields cannot run together. */
void hash_update_str(struct hash *h, const char *s);
/* Write 64 hex digits and a NUL to out. */
void hash_finish(struct hash *h, char out[HASH_HEX_LEN + 1]);

void hash_sha256_hex(const void *data, size_t len, char out[HASH_HEX_LEN + 1]);

/* A new API token: "pkr_" and 256 random bits in URL-safe base64, into
 * *token (caller frees), and its digest, the only form stored. */
void hash_token_new(char **token, char hash[HASH_HEX_LEN + 1]);

/* Digest of a file's contents. */
int hash_file(const char *path, char out[HASH_HEX_LEN + 1]);

#endif

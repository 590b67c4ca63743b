/*
 * auth: who is calling the API, and whether they may.
 *
 * Every route but a public one (/health; /metrics when metrics_public is
 * set) needs "Authorization: Bearer TOKEN". A token is 256 random bits
 * written as "pkr_" and 43 characters of URL-safe base64. The database
 * keeps only the hex SHA-256 of a token: a fast hash is right here,
 * since a random 256-bit token leaves nothing for a slow hash to
 * protect. Each request costs one lookup on the unique index of that
 * hash, with no cache, so a revocation takes effect on the next request;
 * the stored hash is then compared again in constant time.
 *
 * Roles are ordered, each allowing what the one before it does:
 * viewer (reads), operator (also runs and cancels executions), admin
 * (also installs and removes packs, manages environments and tokens).
 * A route names the least role it needs.
 *
 * Failed attempts, requests that present a token which is malformed,
 * unknown or revoked, are limited per client address with a token
 * bucket of AUTH_FAILURES_PER_MINUTE: past it, every request of that
 * address that presents a token is refused with ERR_LIMITED (HTTP
 * 429) until the bucket refills, without looking at the token. A request
 * with no token at all is not an attempt and is not counted. Failures
 * are logged with the client address and never with the token.
 */
#ifndef PACKRUN_AUTH_H
#define PACKRUN_AUTH_H

#include <stddef.h>
#include <stdint.h>

#include "util/hash.h"

struct store;

enum auth_role {
    AUTH_PUBLIC,   /* no token needed (a route's requirement only) */
    AUTH_VIEWER,   /* reads */
    AUTH_OPERATOR, /* also runs and cancels executions */
    AUTH_ADMIN,    /* also packs, environments and tokens */
};

/* auth's own error code, beside the ERR_* of util/err.h: too many failed
 * attempts from this address (HTTP 429). */

#define AUTH_FAILURES_PER_MINUTE 10
#define AUTH_TOKEN_PREFIX        "pkr_"
#define AUTH_TOKEN_MAX           512 /* longest Authorization token looked up */
#define AUTH_NAME_MAX            64
#define AUTH_TOUCH_EVERY_MS      60000 /* last_used_at is written at most this often */

/* "viewer", "operator", "admin" ("public" for AUTH_PUBLIC). */
const char *auth_role_name(enum auth_role role);

/* The role called name (viewer, operator or admin), or ERR_INVALID with a
 * message that lists them. */
int auth_role_parse(const char *name);

/* 0 if name may name a token: 1 to AUTH_NAME_MAX characters of letters,
 * digits, '.', '_' and '-', starting with a letter or digit; else
 * ERR_INVALID saying so. */
int auth_name_check(const char *name);

/* Make a new token (caller frees *token) and its hash, as stored. */
void auth_token_new(char **token, char hash[HASH_HEX_LEN + 1]);

/* The hash of a token of len bytes, as stored. */
void auth_token_hash(const char *token, size_t len, char hash[HASH_HEX_LEN + 1]);

/*
 * Find the token in an Authorization header value: "Bearer TOKEN" (the
 * scheme in any case, blanks around the token ignored). Sets *token
 * (pointing into header) and *len. ERR_UNAUTH with a message when header
 * is NULL ("no token") or is not a bearer token of at most
 * AUTH_TOKEN_MAX visible ASCII characters.
 */
int auth_parse_bearer(const char *header, const char **token, size_t *len);

/*
 * Plain HTTP carries bearer tokens in the clear, so the API listens on a
 * loopback address (127.0.0.0/8, "localhost") unless allow_insecure is
 * set: for use behind a TLS-terminating proxy. 0 when listen ("HOST:PORT")
 * may be used, else ERR_INVALID with a message that says what to do. A
 * listen address that does not parse is left to the server to reject.
 */
int auth_listen_check(const char *listen, int allow_insecure);

/* 1 if listen ("HOST:PORT") is a loopback address. */
int auth_listen_is_loopback(const char *listen);

/* --- failed-attempt limiting ------------------------------------------ */

/* Per-address token buckets of failed attempts, for a bounded number of
 * addresses (those that failed lately; the ones idle longest make room).
 * Thread-safe. */
struct auth_limiter;

struct auth_limiter *auth_limiter_new(int per_minute);
void auth_limiter_free(struct auth_limiter *l);

/* 0 if addr may try (now_ms: a monotonic clock in ms), or
 * ERR_LIMITED with *retry_after_s set to the seconds until it may
 * try again. Sets no message. */
int auth_limiter_check(struct auth_limiter *l, const char *addr, int64_t now_ms,
                       int *retry_after_s);

/* Count a failed attempt of addr; returns how many more it may make now. */
int auth_limiter_fail(struct auth_limiter *l, const char *addr, int64_t now_ms);

/* --- checking a request ------------------------------------------------ */

struct auth;

struct auth *auth_new(void);
void auth_free(struct auth *a);

/* Who made a request that auth_check() let through. */
struct auth_caller {
    int64_t id;                   /* the token's row; 0 on a public route */
    char name[AUTH_NAME_MAX + 1]; /* the token's name; "" on a public route */
    enum auth_role role;          /* AUTH_PUBLIC on a public route */
};

/* What auth_check() needs of one request; every field is borrowed. */
struct auth_request {
    const char *client;        /* the client's address, for limits and logs */
    const char *authorization; /* the Authorization header, or NULL */
    const char *method;        /* for messages and logs */
    const char *path;          /* likewise; never holds a token */
    enum auth_role need;       /* the least role the route needs */
};

/*
 * Decide on a request: 0 and *who filled in when it may go on;
 * ERR_UNAUTH (no, malformed, unknown or revoked token), ERR_FORBIDDEN
 * (the token's role is below req->need), ERR_LIMITED (with
 * *retry_after_s), or a store error; each with a message fit for the
 * client. Logs failed attempts (warn) and refusals (info). Records the
 * token's last use at most once per AUTH_TOUCH_EVERY_MS.
 */
int auth_check(struct auth *a, struct store *st, const struct auth_request *req,
               struct auth_caller *who, int *retry_after_s);

#endif

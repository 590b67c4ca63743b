#include "api/auth.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "store/store.h"
#include "util/buf.h"
#include "util/clock.h"
#include "util/err.h"
#include "util/log.h"

#define LIMITER_SLOTS   1024
#define LIMITER_PROBES  8
#define LIMITER_ADDR_SZ INET6_ADDRSTRLEN

static const char *const role_names[] = {"public", "viewer", "operator", "admin"};

const char *auth_role_name(enum auth_role role)
{
    return role >= AUTH_PUBLIC && role <= AUTH_ADMIN ? role_names[role] : "?";
}

/* The role called name, or -1; sets no message. */
static int role_lookup(const char *name)
{
    for (int r = AUTH_VIEWER; name && r <= AUTH_ADMIN; r++) {
        if (strcmp(name, role_names[r]) == 0)
            return r;
    }
    return -1;
}

int auth_role_parse(const char *name)
{
    int r = role_lookup(name);

    if (r < 0)
        return err_set(ERR_INVALID, "role '%s': expected admin, operator or viewer",
                       name ? name : "");
    return r;
}

int auth_name_check(const char *name)
{
    size_t n = strlen(name);

    if (n == 0 || n > AUTH_NAME_MAX || !isalnum((unsigned char)name[0]))
        goto bad;
    for (size_t i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];

        if (!isalnum(c) && c != '.' && c != '_' && c != '-')
            goto bad;
    }
    return 0;

bad:
    return err_set(ERR_INVALID,
                   "token name '%s': expected 1 to %d letters, digits, '.', '_' or '-', "
                   "starting with a letter or digit",
                   name, AUTH_NAME_MAX);
}

void auth_token_hash(const char *token, size_t len, char hash[HASH_HEX_LEN + 1])
{
    hash_sha256_hex(token, len, hash);
}

void auth_token_new(char **token, char hash[HASH_HEX_LEN + 1])
{
    hash_token_new(token, hash);
}

int auth_parse_bearer(const char *header, const char **token, size_t *len)
{
    const char *p = header, *start;

    if (!header)
        return err_set(ERR_UNAUTH, "no token: send the header Authorization: Bearer TOKEN");
    while (*p == ' ' || *p == '\t')
        p++;
    if (strncasecmp(p, "Bearer", 6) != 0 || (p[6] != ' ' && p[6] != '\t'))
        return err_set(ERR_UNAUTH, "header Authorization: expected 'Bearer TOKEN'");
    p += 6;
    while (*p == ' ' || *p == '\t')
        p++;
    start = p;
    while (*p > ' ' && *p < 0x7f)
        p++;
    *token = start;
    *len = (size_t)(p - start);
    while (*p == ' ' || *p == '\t')
        p++;
    if (*len == 0 || *p != '\0')
        return err_set(ERR_UNAUTH, "header Authorization: expected 'Bearer TOKEN', the token "
                                   "being one word of visible ASCII characters");
    if (*len > AUTH_TOKEN_MAX)
        return err_set(ERR_UNAUTH, "header Authorization: the token is longer than %d characters",
                       AUTH_TOKEN_MAX);
    return 0;
}

int auth_listen_is_loopback(const char *listen)
{
    const char *colon = strrchr(listen, ':');
    struct in_addr in;
    char host[64];

    if (!colon || (size_t)(colon - listen) >= sizeof(host))
        return 0;
    memcpy(host, listen, (size_t)(colon - listen));
    host[colon - listen] = '\0';
    if (strcmp(host, "localhost") == 0)
        return 1;
    return inet_pton(AF_INET, host, &in) == 1 && (ntohl(in.s_addr) >> 24) == 127;
}

int auth_listen_check(const char *listen, int allow_insecure)
{
    if (allow_insecure || auth_listen_is_loopback(listen) || !strrchr(listen, ':'))
        return 0;
    return err_set(ERR_INVALID,
                   "refusing to listen on %s: the API speaks plain HTTP, which would carry "
                   "bearer tokens over the network in the clear. Listen on 127.0.0.1 with a "
                   "TLS-terminating proxy in front; to listen on another address behind such a "
                   "proxy, pass --insecure-listen or set allow_insecure_listen: true",
                   listen);
}

/* --- failed-attempt limiting ------------------------------------------ */

struct bucket {
    char addr[LIMITER_ADDR_SZ];
    double tokens; /* attempts left, refilled continuously up to the cap */
    int64_t at_ms; /* when tokens was last brought up to date */
    int used;
    int warned; /* the refusal of this empty spell has been logged */
};

struct auth_limiter {
    pthread_mutex_t mu;
    double cap;
    double per_ms; /* refill rate */
    struct bucket slots[LIMITER_SLOTS];
};

struct auth_limiter *auth_limiter_new(int per_minute)
{
    struct auth_limiter *l = xcalloc(1, sizeof(*l));

    pthread_mutex_init(&l->mu, NULL);
    l->cap = per_minute > 0 ? per_minute : 1;
    l->per_ms = l->cap / 60000.0;
    return l;
}

void auth_limiter_free(struct auth_limiter *l)
{
    if (!l)
        return;
    pthread_mutex_destroy(&l->mu);
    free(l);
}

static uint32_t fnv1a(const char *s)
{
    uint32_t h = 2166136261u;

    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 16777619u;
    return h;
}

static void refill(struct auth_limiter *l, struct bucket *b, int64_t now_ms)
{
    if (now_ms > b->at_ms) {
        b->tokens += (double)(now_ms - b->at_ms) * l->per_ms;
        if (b->tokens > l->cap)
            b->tokens = l->cap;
        b->at_ms = now_ms;
    }
    if (b->tokens >= 1)
        b->warned = 0;
}

/* The bucket of addr, or NULL when it has none and create is 0. A new
 * one takes a free slot near addr's hash, else the one idle longest
 * there. Call with l->mu held. */
static struct bucket *bucket_find(struct auth_limiter *l, const char *addr, int64_t now_ms,
                                  int create)
{
    uint32_t h = fnv1a(addr);
    struct bucket *victim = NULL;

    for (int i = 0; i < LIMITER_PROBES; i++) {
        struct bucket *b = &l->slots[(h + (uint32_t)i) % LIMITER_SLOTS];

        if (b->used && strcmp(b->addr, addr) == 0) {
            refill(l, b, now_ms);
            return b;
        }
        if (!victim || (victim->used && (!b->used || b->at_ms < victim->at_ms)))
            victim = b;
    }
    if (!create)
        return NULL;
    memset(victim, 0, sizeof(*victim));
    snprintf(victim->addr, sizeof(victim->addr), "%s", addr);
    victim->used = 1;
    victim->tokens = l->cap;
    victim->at_ms = now_ms;
    return victim;
}

/* auth_limiter_check(), also telling whether this is the first refusal
 * of the spell (to log it once). */
static int limiter_check(struct auth_limiter *l, const char *addr, int64_t now_ms,
                         int *retry_after_s, int *first)
{
    struct bucket *b;
    int rc = 0;

    pthread_mutex_lock(&l->mu);
    b = bucket_find(l, addr, now_ms, 0);
    if (b && b->tokens < 1) {
        *retry_after_s = (int)ceil((1 - b->tokens) / l->per_ms / 1000.0);
        if (*retry_after_s < 1)
            *retry_after_s = 1;
        *first = !b->warned;
        b->warned = 1;
        rc = ERR_LIMITED;
    }
    pthread_mutex_unlock(&l->mu);
    return rc;
}

int auth_limiter_check(struct auth_limiter *l, const char *addr, int64_t now_ms, int *retry_after_s)
{
    int first;

    return limiter_check(l, addr, now_ms, retry_after_s, &first);
}

int auth_limiter_fail(struct auth_limiter *l, const char *addr, int64_t now_ms)
{
    struct bucket *b;
    int left;

    pthread_mutex_lock(&l->mu);
    b = bucket_find(l, addr, now_ms, 1);
    b->tokens = b->tokens >= 1 ? b->tokens - 1 : 0;
    left = (int)b->tokens;
    pthread_mutex_unlock(&l->mu);
    return left;
}

/* --- checking a request ------------------------------------------------ */

struct auth {
    struct auth_limiter *limiter;
};

struct auth *auth_new(void)
{
    struct auth *a = xcalloc(1, sizeof(*a));

    a->limiter = auth_limiter_new(AUTH_FAILURES_PER_MINUTE);
    return a;
}

void auth_free(struct auth *a)
{
    if (!a)
        return;
    auth_limiter_free(a->limiter);
    free(a);
}

/* Record the token's use, unless that was done less than a minute ago. */
static void touch(struct store *st, const json_t *row)
{
    const char *last = json_string_value(json_object_get(row, "last_used_at"));
    int64_t now = clock_wall_ms();
    char now_s[32], stale[32];

    clock_iso8601(now - AUTH_TOUCH_EVERY_MS, stale, sizeof(stale));
    if (last && strcmp(last, stale) >= 0)
        return;
    clock_iso8601(now, now_s, sizeof(now_s));
    if (store_token_touch(st, json_integer_value(json_object_get(row, "id")), now_s, stale) < 0)
        log_warn("auth", "token '%s': recording its use failed: %s",
                 json_string_value(json_object_get(row, "name")), err_msg());
}

/*
 * Look the presented token up. 0 with *row set for a live token; 1 with
 * *why set (a message for the log and the client) for a failed attempt;
 * a negative ERR_* when the store fails.
 */
static int identify(struct store *st, const char *header, json_t **row, char *why, size_t cap)
{
    char hash[HASH_HEX_LEN + 1];
    const char *token, *stored;
    size_t len;
    int rc;

    rc = auth_parse_bearer(header, &token, &len);
    if (rc < 0) {
        snprintf(why, cap, "%s", err_msg());
        return 1;
    }
    auth_token_hash(token, len, hash);
    rc = store_token_find(st, hash, row);
    if (rc == ERR_NOTFOUND) {
        snprintf(why, cap, "the token is not known to this server");
        return 1;
    }
    if (rc < 0)
        return rc;

    stored = json_string_value(json_object_get(*row, "hash"));
    if (!stored || strlen(stored) != HASH_HEX_LEN || sodium_memcmp(stored, hash, HASH_HEX_LEN)) {
        snprintf(why, cap, "the token is not known to this server");
        rc = 1;
    } else if (!json_is_null(json_object_get(*row, "revoked_at"))) {
        snprintf(why, cap, "token '%s' was revoked",
                 json_string_value(json_object_get(*row, "name")));
        rc = 1;
    }
    if (rc != 0) {
        json_decref(*row);
        *row = NULL;
    }
    return rc;
}

int auth_check(struct auth *a, struct store *st, const struct auth_request *req,
               struct auth_caller *who, int *retry_after_s)
{
    int64_t now_ms = clock_mono_ns() / 1000000;
    json_t *row = NULL;
    char why[256];
    int first = 0, role, rc;

    memset(who, 0, sizeof(*who));
    who->role = AUTH_PUBLIC;
    if (req->need == AUTH_PUBLIC)
        return 0;
    if (!req->authorization) {
        log_debug("auth", "%s: %s %s: no token", req->client, req->method, req->path);
        return err_set(ERR_UNAUTH,
                       "%s %s needs a token: send the header Authorization: Bearer "
                       "TOKEN (see `packrun token create`)",
                       req->method, req->path);
    }

    /* An address past its limit is refused before its token is even
     * looked at, so that guessing gains nothing. */
    if (limiter_check(a->limiter, req->client, now_ms, retry_after_s, &first) < 0) {
        if (first)
            log_warn("auth", "%s: too many failed token attempts: refusing its requests for %d s",
                     req->client, *retry_after_s);
        return err_set(ERR_LIMITED,
                       "too many failed token attempts from %s: try again in %d seconds",
                       req->client, *retry_after_s);
    }

    rc = identify(st, req->authorization, &row, why, sizeof(why));
    if (rc < 0)
        return rc;
    if (rc > 0) {
        int left = auth_limiter_fail(a->limiter, req->client, now_ms);

        log_warn("auth", "%s: %s %s: refused: %s (%d more failed attempts allowed now)",
                 req->client, req->method, req->path, why, left);
        return err_set(ERR_UNAUTH, "%s", why);
    }

    role = role_lookup(json_string_value(json_object_get(row, "role")));
    who->id = json_integer_value(json_object_get(row, "id"));
    snprintf(who->name, sizeof(who->name), "%s", json_string_value(json_object_get(row, "name")));
    if (role < 0) {
        rc = err_set(ERR_FAIL, "token '%s' has the unknown role '%s'", who->name,
                     json_string_value(json_object_get(row, "role")));
        goto out;
    }
    who->role = (enum auth_role)role;
    if (who->role < req->need) {
        log_info("auth", "%s: token '%s' (%s) refused %s %s: %s role needed", req->client,
                 who->name, role_names[role], req->method, req->path, role_names[req->need]);
        rc = err_set(ERR_FORBIDDEN, "token '%s' (%s) may not %s %s: %s role needed", who->name,
                     role_names[role], req->method, req->path, role_names[req->need]);
        goto out;
    }
    touch(st, row);

out:
    json_decref(row);
    return rc;
}

/*
 * client: a small HTTP client for the packrun API, JSON in and out.
 *
 * A struct client holds one CURL handle, reused from request to request
 * so that the connection is kept alive. It is not thread-safe: use one
 * client per thread.
 *
 * Errors follow util/err.h. A connection failure is ERR_FAIL with a
 * message that names the API URL and the reason; an answer with an HTTP
 * status of 400 or more is mapped to the matching ERR_* code (400
 * ERR_INVALID, 401 ERR_UNAUTH, 403 ERR_FORBIDDEN, 404 ERR_NOTFOUND, 409
 * ERR_CONFLICT, 413 ERR_TOOBIG, others ERR_FAIL) with the server's
 * error.message as the message.
 */
#ifndef PACKRUN_CLIENT_H
#define PACKRUN_CLIENT_H

#include <jansson.h>

/* Largest reply client_request() accepts. */
#define CLIENT_MAX_REPLY (64L * 1024 * 1024)

struct client;

/*
 * Make a client for the API at api ("http://host:port", a trailing slash
 * is ignored; "host:port" means http://host:port). token (NULL or "" for
 * none) is sent as "Authorization: Bearer TOKEN". Both are copied.
 * ERR_INVALID for a token with control characters.
 */
int client_open(const char *api, const char *token, struct client **out);

/* Close the connection and free c. NULL is fine. */
void client_free(struct client *c);

/* The API URL the client talks to, without a trailing slash. Borrowed. */
const char *client_api(const struct client *c);

/*
 * Send method (GET, POST, DELETE, ...) to path ("/api/v1/packs?x=y",
 * already URL-escaped) with body as JSON (NULL for none). *status gets
 * the HTTP status (0 when no answer came). *reply gets the parsed JSON
 * answer (caller decrefs), or NULL when the body was empty; it is set for
 * error answers too, so that the caller can read error.problems.
 * Returns 0 for a 2xx answer, a negative ERR_* code otherwise (see
 * above); ERR_TOOBIG for a reply over CLIENT_MAX_REPLY, ERR_FAIL for a
 * 2xx answer that is not JSON.
 */
int client_request(struct client *c, const char *method, const char *path, const json_t *body,
                   long *status, json_t **reply);

/*
 * GET path and copy the text/plain answer to fd as it arrives, until the
 * server closes it (for `logs --follow`, when the execution ends). There
 * is no time limit. An error answer is not copied: it becomes the error,
 * as for client_request(). A reader that goes away (EPIPE) ends the copy
 * without an error.
 */
int client_stream(struct client *c, const char *path, int fd);

/* POST data (len bytes of application/gzip) to path and read the JSON
 * reply, as client_request() does. */
int client_upload(struct client *c, const char *path, const void *data, size_t len, long *status,
                  json_t **reply);

#endif

#include "cli/client.h"

#include <curl/curl.h>
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "util/buf.h"
#include "util/err.h"

#define CONNECT_TIMEOUT_S 10L
/* Longer than the longest ?wait= the CLI asks for (30 s). */
#define REQUEST_TIMEOUT_S 120L
/* Enough of an error answer to a stream to read its message. */
#define STREAM_ERROR_MAX (64L * 1024)
#define TOKEN_MAX        4096

struct client {
    CURL *curl;
    char *api;
    struct curl_slist *headers;      /* Accept, Authorization */
    struct curl_slist *json_headers; /* the same, and Content-Type: application/json */
    struct curl_slist *gzip_headers; /* the same, and Content-Type: application/gzip */
    int has_token;
    char errbuf[CURL_ERROR_SIZE];
};

/* What a write callback collects; see collect() and copy_to_fd(). */
struct sink {
    struct client *c;
    struct buf body;
    size_t max;
    int too_big;
    int fd;           /* client_stream: where a 2xx answer goes; -1 otherwise */
    int status_known; /* client_stream: the status was read at the first write */
    int is_error;     /* client_stream: the answer is an error, collect it */
    int write_errno;  /* client_stream: write(2) failed with this */
};

static pthread_once_t global_once = PTHREAD_ONCE_INIT;
static CURLcode global_rc = CURLE_OK;

static void global_init(void)
{
    global_rc = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int has_control(const char *s)
{
    for (; *s; s++) {
        if ((unsigned char)*s < 0x20 || *s == 0x7f)
            return 1;
    }
    return 0;
}

static char *normalize_api(const char *api)
{
    char *url;
    size_t len;

    if (strstr(api, "://"))
        url = xstrdup(api);
    else
        url = xasprintf("http://%s", api);
    len = strlen(url);
    while (len > 0 && url[len - 1] == '/')
        url[--len] = '\0';
    return url;
}

int client_open(const char *api, const char *token, struct client **out)
{
    struct client *c;
    char *auth = NULL;
    int rc = 0;

    *out = NULL;
    if (pthread_once(&global_once, global_init) != 0 || global_rc != CURLE_OK)
        return err_set(ERR_FAIL, "cannot initialise libcurl: %s", curl_easy_strerror(global_rc));
    if (!api || !*api || has_control(api))
        return err_set(ERR_INVALID, "the API URL is empty or has control characters");
    if (token && (strlen(token) > TOKEN_MAX || has_control(token)))
        return err_set(ERR_INVALID,
                       "the API token is longer than %d bytes or has control "
                       "characters",
                       TOKEN_MAX);

    c = xcalloc(1, sizeof(*c));
    c->api = normalize_api(api);
    c->curl = curl_easy_init();
    if (!c->curl) {
        rc = err_set(ERR_FAIL, "curl_easy_init failed");
        goto out;
    }

    c->headers = curl_slist_append(NULL, "Accept: application/json");
    if (token && *token) {
        auth = xasprintf("Authorization: Bearer %s", token);
        c->headers = curl_slist_append(c->headers, auth);
        c->has_token = 1;
    }
    c->json_headers = curl_slist_append(NULL, "Accept: application/json");
    if (auth)
        c->json_headers = curl_slist_append(c->json_headers, auth);
    c->json_headers = curl_slist_append(c->json_headers, "Content-Type: application/json");
    c->json_headers = curl_slist_append(c->json_headers, "Expect:");
    c->gzip_headers = curl_slist_append(NULL, "Accept: application/json");
    if (auth)
        c->gzip_headers = curl_slist_append(c->gzip_headers, auth);
    c->gzip_headers = curl_slist_append(c->gzip_headers, "Content-Type: application/gzip");
    c->gzip_headers = curl_slist_append(c->gzip_headers, "Expect:");
    if (!c->headers || !c->json_headers || !c->gzip_headers) {
        rc = err_set(ERR_FAIL, "curl_slist_append failed");
        goto out;
    }

out:
    if (auth) {
        explicit_bzero(auth, strlen(auth));
        free(auth);
    }
    if (rc < 0)
        client_free(c);
    else
        *out = c;
    return rc;
}

void client_free(struct client *c)
{
    if (!c)
        return;
    if (c->curl)
        curl_easy_cleanup(c->curl);
    curl_slist_free_all(c->headers);
    curl_slist_free_all(c->json_headers);
    curl_slist_free_all(c->gzip_headers);
    free(c->api);
    free(c);
}

const char *client_api(const struct client *c)
{
    return c->api;
}

static size_t collect(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sink *s = arg;
    size_t n = size * nmemb;

    if (s->body.len + n > s->max) {
        s->too_big = 1;
        return 0;
    }
    buf_add(&s->body, data, n);
    return n;
}

static int write_all(int fd, const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(fd, data, len);

        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

static size_t copy_to_fd(char *data, size_t size, size_t nmemb, void *arg)
{
    struct sink *s = arg;
    size_t n = size * nmemb;

    if (!s->status_known) {
        long status = 0;

        curl_easy_getinfo(s->c->curl, CURLINFO_RESPONSE_CODE, &status);
        s->is_error = status < 200 || status >= 300;
        s->status_known = 1;
    }
    if (s->is_error)
        return collect(data, size, nmemb, arg);
    if (write_all(s->fd, data, n) < 0) {
        s->write_errno = errno;
        return 0;
    }
    return n;
}

/* Reset the handle (live connections are kept) and set what every request needs. */
static char *prepare(struct client *c, const char *method, const char *path, int json_body)
{
    char *url = xasprintf("%s%s", c->api, path);

    curl_easy_reset(c->curl);
    c->errbuf[0] = '\0';
    curl_easy_setopt(c->curl, CURLOPT_URL, url);
    curl_easy_setopt(c->curl, CURLOPT_ERRORBUFFER, c->errbuf);
    curl_easy_setopt(c->curl, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c->curl, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(c->curl, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(c->curl, CURLOPT_USERAGENT, "packrun-cli");
    curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, json_body ? c->json_headers : c->headers);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c->curl, CURLOPT_PROTOCOLS_STR, "http,https");
#endif
    if (strcmp(method, "GET") == 0)
        curl_easy_setopt(c->curl, CURLOPT_HTTPGET, 1L);
    else if (strcmp(method, "POST") == 0)
        curl_easy_setopt(c->curl, CURLOPT_POST, 1L);
    else
        curl_easy_setopt(c->curl, CURLOPT_CUSTOMREQUEST, method);
    return url;
}

static int transport_error(struct client *c, CURLcode code)
{
    long os_errno = 0;
    const char *why;

    curl_easy_getinfo(c->curl, CURLINFO_OS_ERRNO, &os_errno);
    if (code == CURLE_COULDNT_CONNECT && os_errno != 0)
        why = strerror((int)os_errno);
    else if (c->errbuf[0])
        why = c->errbuf;
    else
        why = curl_easy_strerror(code);
    return err_set(ERR_FAIL, "cannot reach the packrun API at %s: %s%s", c->api, why,
                   code == CURLE_COULDNT_CONNECT ? " (is `packrun up` running?)" : "");
}

static int status_code(long status)
{
    switch (status) {
    case 400:
        return ERR_INVALID;
    case 401:
        return ERR_UNAUTH;
    case 403:
        return ERR_FORBIDDEN;
    case 404:
        return ERR_NOTFOUND;
    case 409:
        return ERR_CONFLICT;
    case 413:
        return ERR_TOOBIG;
    default:
        return ERR_FAIL;
    }
}

/* The first line of a non-JSON body, at most 200 bytes, for a message. */
static char *first_line(const struct buf *body)
{
    const char *s = buf_str(body);
    size_t n = strcspn(s, "\r\n");

    if (n > 200)
        n = 200;
    return xasprintf("%.*s", (int)n, s);
}

/* Turn an answer with a status outside 2xx into an error; reply is its parsed body, or NULL. */
static int answer_error(struct client *c, const char *method, const char *path, long status,
                        const struct buf *body, const json_t *reply)
{
    const char *msg =
        json_string_value(json_object_get(json_object_get(reply, "error"), "message"));
    char *line;
    int rc;

    if (msg && *msg)
        return err_set(status_code(status), "%s", msg);
    line = first_line(body);
    rc = err_set(status_code(status), "%s %s%s answered HTTP %ld%s%s", method, c->api, path, status,
                 *line ? ": " : "", line);
    free(line);
    return rc;
}

/* Send a request with body (len bytes, or none when NULL) of the given
 * headers, and read its JSON reply. */
static int send_request(struct client *c, const char *method, const char *path,
                        struct curl_slist *headers, const char *body, size_t len, long *status,
                        json_t **reply)
{
    struct sink sink = {.c = c, .body = BUF_INIT, .max = CLIENT_MAX_REPLY, .fd = -1};
    char *url;
    json_error_t jerr;
    CURLcode code;
    int rc = 0;

    *status = 0;
    *reply = NULL;
    url = prepare(c, method, path, 0);
    if (headers)
        curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
    if (body) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    } else if (strcmp(method, "POST") == 0) {
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, "");
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)0);
    }
    curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, REQUEST_TIMEOUT_S);
    curl_easy_setopt(c->curl, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CLIENT_MAX_REPLY);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, collect);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &sink);

    code = curl_easy_perform(c->curl);
    if (sink.too_big || code == CURLE_FILESIZE_EXCEEDED) {
        rc = err_set(ERR_TOOBIG, "%s %s%s: the reply is larger than %ld MiB", method, c->api, path,
                     CLIENT_MAX_REPLY / (1024 * 1024));
        goto out;
    }
    if (code != CURLE_OK) {
        rc = transport_error(c, code);
        goto out;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, status);

    if (sink.body.len > 0)
        *reply = json_loadb(sink.body.data, sink.body.len, 0, &jerr);
    if (*status < 200 || *status >= 300) {
        rc = answer_error(c, method, path, *status, &sink.body, *reply);
        goto out;
    }
    if (sink.body.len > 0 && !*reply)
        rc = err_set(ERR_FAIL, "%s %s%s: the reply is not JSON: %s", method, c->api, path,
                     jerr.text);

out:
    free(url);
    buf_free(&sink.body);
    return rc;
}

int client_request(struct client *c, const char *method, const char *path, const json_t *body,
                   long *status, json_t **reply)
{
    char *payload = NULL;
    int rc;

    if (body) {
        payload = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
        if (!payload)
            return err_set(ERR_INVALID, "cannot encode the request body as JSON");
    }
    rc = send_request(c, method, path, body ? c->json_headers : NULL, payload,
                      payload ? strlen(payload) : 0, status, reply);
    free(payload);
    return rc;
}

int client_upload(struct client *c, const char *path, const void *data, size_t len, long *status,
                  json_t **reply)
{
    return send_request(c, "POST", path, c->gzip_headers, data, len, status, reply);
}

int client_stream(struct client *c, const char *path, int fd)
{
    struct sink sink = {.c = c, .body = BUF_INIT, .max = STREAM_ERROR_MAX, .fd = fd};
    json_t *reply = NULL;
    long status = 0;
    CURLcode code;
    char *url;
    int rc = 0;

    url = prepare(c, "GET", path, 0);
    curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, copy_to_fd);
    curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, &sink);

    code = curl_easy_perform(c->curl);
    if (sink.write_errno == EPIPE)
        goto out;
    if (sink.write_errno) {
        errno = sink.write_errno;
        rc = err_errno(ERR_FAIL, "write the log stream");
        goto out;
    }
    if (code != CURLE_OK && !sink.too_big) {
        rc = transport_error(c, code);
        goto out;
    }
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status >= 300) {
        reply = json_loadb(sink.body.data ? sink.body.data : "", sink.body.len, 0, NULL);
        rc = answer_error(c, "GET", path, status, &sink.body, reply);
    }

out:
    json_decref(reply);
    free(url);
    buf_free(&sink.body);
    return rc;
}

/*
 * api: the HTTP API, on libmicrohttpd.
 *
 * Every request goes through one dispatcher, which reads the body (up to
 * the configured limit), finds the route, and turns a handler's ERR_*
 * code and message into the JSON error reply with the fitting status.
 * Each connection has its own thread, so a request that waits (an
 * execution's ?wait=, a log's ?follow=1) holds no one else up.
 */
#ifndef PACKRUN_API_H
#define PACKRUN_API_H

#include <jansson.h>

#include "util/config.h"

struct api;
struct store;

/* Listen on cfg->listen and serve. cfg is borrowed and must outlive the
 * server. */
int api_start(const struct config *cfg, struct api **out);

/* Stop accepting requests, finish those in flight, free api. */
void api_stop(struct api *api);

/* Register the pack in dir (a folder this process can read) with the
 * database at cfg->db_url: validate, install the release, store. Sets
 * *pack (caller decrefs) to the stored pack, or on ERR_INVALID
 * *problems (caller decrefs) to the list of problems. Used by the
 * register route and by `packrun up` for its example packs. */
int api_register_pack(const struct config *cfg, struct store *st, const char *dir, json_t **pack,
                      json_t **problems);

#endif

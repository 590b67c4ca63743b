/*
 * openapi: the OpenAPI 3 document of the API, made from its route table
 * so that it cannot list a route that does not exist or miss one that
 * does.
 */
#ifndef PACKRUN_OPENAPI_H
#define PACKRUN_OPENAPI_H

#include <jansson.h>
#include <stddef.h>

struct openapi_route {
    const char *method;  /* "GET" */
    const char *path;    /* "/api/v1/executions/{id}" */
    const char *summary; /* one line */
    const char *role;    /* the least role a token needs, or NULL when public */
};

/* The document (caller decrefs). */
json_t *openapi_document(const struct openapi_route *routes, size_t n, const char *version);

#endif

#include "api/openapi.h"

#include <ctype.h>
#include <string.h>

#include "util/buf.h"

static json_t *error_response(const char *what)
{
    return json_pack("{s:s, s:{s:{s:{s:s}}}}", "description", what, "content", "application/json",
                     "schema", "$ref", "#/components/schemas/Error");
}

/* Path parameters, from the {name} segments of path. */
static json_t *path_parameters(const char *path)
{
    json_t *params = json_array();

    for (const char *p = strchr(path, '{'); p; p = strchr(p + 1, '{')) {
        const char *end = strchr(p, '}');
        char *name;

        if (!end)
            break;
        name = strndup(p + 1, (size_t)(end - p - 1));
        json_array_append_new(params, json_pack("{s:s, s:s, s:b, s:{s:s}}", "name", name, "in",
                                                "path", "required", 1, "schema", "type", "string"));
        free(name);
    }
    return params;
}

static json_t *operation(const struct openapi_route *r)
{
    json_t *op =
        json_pack("{s:s, s:o, s:{s:{s:s}, s:o, s:o, s:o}}", "summary", r->summary, "parameters",
                  path_parameters(r->path), "responses", "200", "description", "success", "400",
                  error_response("invalid request"), "404", error_response("not found"), "500",
                  error_response("server error"));
    struct buf id = BUF_INIT;

    if (r->role) {
        json_object_set_new(op, "security", json_pack("[{s:[]}]", "bearer"));
        json_object_set_new(op, "x-packrun-role", json_string(r->role));
        json_object_set_new(json_object_get(op, "responses"), "401",
                            error_response("no valid token"));
        json_object_set_new(json_object_get(op, "responses"), "403",
                            error_response("the token's role is too low"));
    } else {
        json_object_set_new(op, "security", json_array());
    }

    /* operationId: method and path in camel case, e.g. getApiV1Executions. */
    for (const char *p = r->method; *p; p++) {
        char c = (char)tolower((unsigned char)*p);

        buf_add(&id, &c, 1);
    }
    for (const char *p = r->path; *p; p++) {
        if (isalnum((unsigned char)*p)) {
            char c = (p > r->path && !isalnum((unsigned char)p[-1]))
                         ? (char)toupper((unsigned char)*p)
                         : *p;

            buf_add(&id, &c, 1);
        }
    }
    json_object_set_new(op, "operationId", json_string(buf_str(&id)));
    buf_free(&id);
    return op;
}

json_t *openapi_document(const struct openapi_route *routes, size_t n, const char *version)
{
    json_t *paths = json_object();
    json_t *doc;

    for (size_t i = 0; i < n; i++) {
        json_t *item = json_object_get(paths, routes[i].path);
        struct buf method = BUF_INIT;

        if (!item) {
            item = json_object();
            json_object_set_new(paths, routes[i].path, item);
        }
        for (const char *p = routes[i].method; *p; p++) {
            char c = (char)tolower((unsigned char)*p);

            buf_add(&method, &c, 1);
        }
        json_object_set_new(item, buf_str(&method), operation(&routes[i]));
        buf_free(&method);
    }

    doc = json_pack("{s:s, s:{s:s, s:s, s:s}, s:o, s:{s:{s:{s:s, s:s}}, s:{s:{s:s, s:{s:{s:s, "
                    "s:{s:{s:s}, s:{s:s}, s:{s:s, s:{s:s}}}}}}}}}",
                    "openapi", "3.0.3", "info", "title", "packrun API", "version", version,
                    "description", "Packs, actions, executions, environments and workers.", "paths",
                    paths, "components", "securitySchemes", "bearer", "type", "http", "scheme",
                    "bearer", "schemas", "Error", "type", "object", "properties", "error", "type",
                    "object", "properties", "code", "type", "string", "message", "type", "string",
                    "problems", "type", "array", "items", "type", "string");
    return doc;
}

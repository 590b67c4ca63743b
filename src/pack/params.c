#include "pack/params.h"

#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "util/buf.h"
#include "util/err.h"

#define PARAM_NAME_MAX 64
#define SHOW_MAX       60

static const char *const types[] = {"string", "integer", "number", "boolean",
                                    "array",  "object",  NULL};

static int type_known(const char *type)
{
    for (const char *const *t = types; *t; t++) {
        if (strcmp(*t, type) == 0)
            return 1;
    }
    return 0;
}

static int type_matches(const char *type, const json_t *v)
{
    if (strcmp(type, "string") == 0)
        return json_is_string(v);
    if (strcmp(type, "integer") == 0)
        return json_is_integer(v);
    if (strcmp(type, "number") == 0)
        return json_is_number(v);
    if (strcmp(type, "boolean") == 0)
        return json_is_boolean(v);
    if (strcmp(type, "array") == 0)
        return json_is_array(v);
    if (strcmp(type, "object") == 0)
        return json_is_object(v);
    return 0;
}

/* The name of v's JSON type, in the words of the schema. */
static const char *type_of(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_STRING:
        return "string";
    case JSON_INTEGER:
        return "integer";
    case JSON_REAL:
        return "number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "boolean";
    case JSON_ARRAY:
        return "array";
    case JSON_OBJECT:
        return "object";
    default:
        return "null";
    }
}

/* The declared type of a parameter; "string" when absent. */
static const char *param_type(const json_t *spec)
{
    const json_t *t = json_object_get(spec, "type");

    return json_is_string(t) ? json_string_value(t) : "string";
}

/* A value as it appears in messages: strings in single quotes, other
 * values as compact JSON, cut short when long. Caller frees. */
static char *show(const json_t *v, int quote)
{
    char *text, *out;

    if (json_is_string(v))
        text = xstrdup(json_string_value(v));
    else
        text = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    if (strlen(text) > SHOW_MAX)
        strcpy(text + SHOW_MAX - 3, "...");
    if (quote && json_is_string(v))
        out = xasprintf("'%s'", text);
    else
        out = xstrdup(text);
    free(text);
    return out;
}

/* Numbers compare by value, so that 1 and 1.0 are one enum member. */
static int values_equal(const json_t *a, const json_t *b)
{
    if (json_is_number(a) && json_is_number(b))
        return json_number_value(a) == json_number_value(b);
    return json_equal((json_t *)a, (json_t *)b);
}

static int in_enum(const json_t *choices, const json_t *v)
{
    size_t i;
    json_t *c;

    json_array_foreach (choices, i, c) {
        if (values_equal(c, v))
            return 1;
    }
    return 0;
}

static char *enum_list(const json_t *choices)
{
    struct buf b = BUF_INIT;
    size_t i;
    json_t *c;

    json_array_foreach (choices, i, c) {
        char *s = show(c, 0);

        buf_addf(&b, "%s%s", i ? ", " : "", s);
        free(s);
    }
    return buf_detach(&b);
}

static int name_valid(const char *name)
{
    size_t len = strlen(name);

    if (len == 0 || len > PARAM_NAME_MAX)
        return 0;
    return strspn(name, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-") == len;
}

/*
 * Check v against one parameter's enum, minimum and maximum. Returns NULL
 * if it passes, else the reason (caller frees), worded to follow
 * "<value> ".
 */
static char *value_problem(const json_t *spec, const json_t *v)
{
    const json_t *choices = json_object_get(spec, "enum");
    const json_t *min = json_object_get(spec, "minimum");
    const json_t *max = json_object_get(spec, "maximum");
    char *list, *bound, *out;

    if (json_is_array(choices) && !in_enum(choices, v)) {
        list = enum_list(choices);
        out = xasprintf("is not one of %s", list);
        free(list);
        return out;
    }
    if (!json_is_number(v))
        return NULL;
    if (json_is_number(min) && json_number_value(v) < json_number_value(min)) {
        bound = show(min, 0);
        out = xasprintf("is less than the minimum %s", bound);
        free(bound);
        return out;
    }
    if (json_is_number(max) && json_number_value(v) > json_number_value(max)) {
        bound = show(max, 0);
        out = xasprintf("is greater than the maximum %s", bound);
        free(bound);
        return out;
    }
    return NULL;
}

static void add_problem(json_t *problems, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void add_problem(json_t *problems, const char *fmt, ...)
{
    struct buf b = BUF_INIT;
    va_list ap;

    va_start(ap, fmt);
    buf_vaddf(&b, fmt, ap);
    va_end(ap);
    json_array_append_new(problems, json_string(buf_str(&b)));
    buf_free(&b);
}

/* The checks of one parameter's schema; prefix is "name: field 'parameters.x". */
static void spec_problems(const char *prefix, const json_t *spec, json_t *problems)
{
    const json_t *type = json_object_get(spec, "type");
    const json_t *choices = json_object_get(spec, "enum");
    const json_t *def = json_object_get(spec, "default");
    const char *flags[] = {"required", "secret", NULL};
    const char *bounds[] = {"minimum", "maximum", NULL};
    const char *t;
    size_t i;
    json_t *c;
    char *s, *why;

    if (type && !json_is_string(type))
        add_problem(problems, "%s.type': must be a string", prefix);
    else if (type && !type_known(json_string_value(type)))
        add_problem(problems,
                    "%s.type': '%s' is not a type (string, integer, number, boolean, array, "
                    "object)",
                    prefix, json_string_value(type));
    t = param_type(spec);
    if (type && (!json_is_string(type) || !type_known(t)))
        t = NULL; /* unknown: skip the checks that depend on it */

    if (json_object_get(spec, "description") &&
        !json_is_string(json_object_get(spec, "description")))
        add_problem(problems, "%s.description': must be a string", prefix);
    for (const char **f = flags; *f; f++) {
        const json_t *v = json_object_get(spec, *f);

        if (v && !json_is_boolean(v))
            add_problem(problems, "%s.%s': must be true or false", prefix, *f);
    }

    for (const char **f = bounds; *f; f++) {
        const json_t *v = json_object_get(spec, *f);

        if (!v || json_is_null(v))
            continue;
        if (!json_is_number(v))
            add_problem(problems, "%s.%s': must be a number", prefix, *f);
        else if (t && strcmp(t, "integer") != 0 && strcmp(t, "number") != 0)
            add_problem(problems, "%s.%s': applies only to integer and number parameters", prefix,
                        *f);
    }

    if (choices && !json_is_array(choices)) {
        add_problem(problems, "%s.enum': must be a list of values", prefix);
        choices = NULL;
    }
    json_array_foreach (choices, i, c) {
        if (t && !type_matches(t, c)) {
            s = show(c, 1);
            add_problem(problems, "%s.enum': %s is not of type %s", prefix, s, t);
            free(s);
        }
    }

    if (!def || json_is_null(def) || !t)
        return;
    s = show(def, 1);
    if (!type_matches(t, def)) {
        add_problem(problems, "%s.default': expected %s, got %s", prefix, t, type_of(def));
    } else {
        why = value_problem(spec, def);
        if (why)
            add_problem(problems, "%s.default': %s %s", prefix, s, why);
        free(why);
    }
    free(s);
}

int params_schema_problems(const char *name, const char *field, const json_t *schema,
                           json_t *problems)
{
    size_t before = json_array_size(problems);
    const char *key;
    json_t *spec;

    if (!schema || json_is_null(schema))
        return 0;
    if (!json_is_object(schema)) {
        add_problem(problems, "%s: field '%s': must be a mapping of names to schemas, got %s", name,
                    field, type_of(schema));
        return ERR_INVALID;
    }

    json_object_foreach ((json_t *)schema, key, spec) {
        char *prefix = xasprintf("%s: field '%s.%s", name, field, key);

        if (!name_valid(key))
            add_problem(problems,
                        "%s: field '%s': '%s' is not a valid name (letters, digits, '_' and "
                        "'-', at most %d)",
                        name, field, key, PARAM_NAME_MAX);
        else if (!json_is_object(spec))
            add_problem(problems, "%s': must be a mapping (type, description, default, ...)",
                        prefix);
        else
            spec_problems(prefix, spec, problems);
        free(prefix);
    }
    return json_array_size(problems) > before ? ERR_INVALID : 0;
}

int params_schema_check(const char *name, const char *field, const json_t *schema)
{
    json_t *problems = json_array();
    size_t n;
    int rc;

    rc = params_schema_problems(name, field, schema, problems);
    n = json_array_size(problems);
    if (rc == 0)
        goto out;
    if (n > 1)
        err_set(rc, "%s (and %zu more problem%s)", json_string_value(json_array_get(problems, 0)),
                n - 1, n > 2 ? "s" : "");
    else
        err_set(rc, "%s", json_string_value(json_array_get(problems, 0)));

out:
    json_decref(problems);
    return rc;
}

/* json_dump_callback() sink that only counts, and stops past the limit. */
static int count_bytes(const char *data, size_t size, void *arg)
{
    size_t *total = arg;

    *total += size;
    return *total > (size_t)PARAMS_MAX_BYTES ? -1 : 0;
}

static int unknown_names(const json_t *schema, const json_t *given)
{
    struct buf known = BUF_INIT;
    const char *key, *k;
    json_t *v, *spec;
    int rc = 0;

    json_object_foreach ((json_t *)given, key, v) {
        if (json_object_get(schema, key))
            continue;
        json_object_foreach ((json_t *)schema, k, spec) {
            buf_addf(&known, "%s%s", known.len ? ", " : "", k);
        }
        rc = err_set(ERR_INVALID, "parameter '%s': unknown (the action takes%s%s)", key,
                     known.len ? ": " : " no parameters", buf_str(&known));
        break;
    }
    buf_free(&known);
    return rc;
}

/* Check one given value (not NULL, not null) against its spec. */
static int check_value(const char *name, const json_t *spec, const json_t *v)
{
    const char *t = param_type(spec);
    char *why, *s;
    int rc;

    if (!type_matches(t, v))
        return err_set(ERR_INVALID, "parameter '%s': expected %s, got %s", name, t, type_of(v));
    why = value_problem(spec, v);
    if (!why)
        return 0;
    s = show(v, 1);
    rc = err_set(ERR_INVALID, "parameter '%s': %s %s", name, s, why);
    free(s);
    free(why);
    return rc;
}

int params_check(const json_t *schema, const json_t *given, json_t **resolved)
{
    json_t *empty = json_object();
    json_t *out = NULL;
    const char *key;
    json_t *spec;
    size_t size = 0;
    int rc = 0;

    if (!schema || json_is_null(schema))
        schema = empty;
    if (!given || json_is_null(given))
        given = empty;
    if (!json_is_object(schema)) {
        rc = err_set(ERR_INVALID, "parameters: the action's schema is not a mapping");
        goto out;
    }
    if (!json_is_object(given)) {
        rc = err_set(ERR_INVALID, "parameters: expected an object, got %s", type_of(given));
        goto out;
    }
    if (json_dump_callback(given, count_bytes, &size, JSON_COMPACT) < 0) {
        rc =
            err_set(ERR_TOOBIG, "parameters: larger than the limit of %ld bytes", PARAMS_MAX_BYTES);
        goto out;
    }

    rc = unknown_names(schema, given);
    if (rc < 0)
        goto out;

    out = json_deep_copy(given);
    json_object_foreach ((json_t *)schema, key, spec) {
        const json_t *v = json_object_get(given, key);
        const json_t *def = json_object_get(spec, "default");

        if (v && !json_is_null(v)) {
            rc = check_value(key, spec, v);
            if (rc < 0)
                goto out;
            continue;
        }
        if (def && !json_is_null(def)) {
            json_object_set_new(out, key, json_deep_copy(def));
            continue;
        }
        if (json_is_true(json_object_get(spec, "required"))) {
            rc = err_set(ERR_INVALID, "parameter '%s': required", key);
            goto out;
        }
        json_object_del(out, key);
    }
    *resolved = out;
    out = NULL;

out:
    json_decref(out);
    json_decref(empty);
    return rc;
}

json_t *params_redact(const json_t *schema, const json_t *params)
{
    json_t *out;
    const char *key;
    json_t *spec;

    if (!params)
        return json_object();
    out = json_deep_copy(params);
    if (!json_is_object(out) || !json_is_object(schema))
        return out;

    json_object_foreach ((json_t *)schema, key, spec) {
        if (json_is_true(json_object_get(spec, "secret")) && json_object_get(out, key))
            json_object_set_new(out, key, json_string("********"));
    }
    return out;
}

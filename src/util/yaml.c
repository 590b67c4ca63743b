#include "util/yaml.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>

#include "util/err.h"
#include "util/fs.h"

#define YAML_MAX_DEPTH 64
#define YAML_MAX_NODES 200000

struct conv {
    yaml_document_t *doc;
    const char *name;
    long nodes;
};

static int match(const char *s, const char *const *words)
{
    for (; *words; words++) {
        if (strcmp(s, *words) == 0)
            return 1;
    }
    return 0;
}

static json_t *plain_scalar(const char *s, size_t len)
{
    static const char *const nulls[] = {"", "~", "null", "Null", "NULL", NULL};
    static const char *const trues[] = {"true", "True", "TRUE", NULL};
    static const char *const falses[] = {"false", "False", "FALSE", NULL};
    char *end;

    if (strlen(s) != len)
        return json_stringn(s, len);
    if (match(s, nulls))
        return json_null();
    if (match(s, trues))
        return json_true();
    if (match(s, falses))
        return json_false();

    const char *digits = s + (*s == '-' || *s == '+');

    if (*digits && strspn(digits, "0123456789") == strlen(digits)) {
        errno = 0;
        long long v = strtoll(s, &end, 10);

        if (errno == 0 && *end == '\0')
            return json_integer(v);
    }
    if (*s && strspn(s, "+-0123456789.eE") == len && strpbrk(s, "0123456789")) {
        double d = strtod(s, &end);

        if (*end == '\0' && isfinite(d))
            return json_real(d);
    }
    return json_stringn(s, len);
}

static int convert(struct conv *c, yaml_node_t *node, int depth, json_t **out)
{
    if (depth > YAML_MAX_DEPTH)
        return err_set(ERR_INVALID, "%s: line %zu: nested deeper than %d levels", c->name,
                       node->start_mark.line + 1, YAML_MAX_DEPTH);
    if (++c->nodes > YAML_MAX_NODES)
        return err_set(ERR_INVALID, "%s: more than %d nodes (after expanding aliases)", c->name,
                       YAML_MAX_NODES);

    switch (node->type) {
    case YAML_SCALAR_NODE: {
        const char *s = (const char *)node->data.scalar.value;
        size_t len = node->data.scalar.length;

        if (node->data.scalar.style == YAML_PLAIN_SCALAR_STYLE)
            *out = plain_scalar(s, len);
        else
            *out = json_stringn(s, len);
        if (!*out)
            return err_set(ERR_INVALID, "%s: line %zu: text is not valid UTF-8", c->name,
                           node->start_mark.line + 1);
        return 0;
    }
    case YAML_SEQUENCE_NODE: {
        json_t *arr = json_array();

        for (yaml_node_item_t *it = node->data.sequence.items.start;
             it < node->data.sequence.items.top; it++) {
            json_t *v;
            int rc = convert(c, yaml_document_get_node(c->doc, *it), depth + 1, &v);

            if (rc < 0) {
                json_decref(arr);
                return rc;
            }
            json_array_append_new(arr, v);
        }
        *out = arr;
        return 0;
    }
    case YAML_MAPPING_NODE: {
        json_t *obj = json_object();

        for (yaml_node_pair_t *p = node->data.mapping.pairs.start; p < node->data.mapping.pairs.top;
             p++) {
            yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
            json_t *v;
            int rc;

            if (k->type != YAML_SCALAR_NODE) {
                json_decref(obj);
                return err_set(ERR_INVALID, "%s: line %zu: mapping keys must be scalars", c->name,
                               k->start_mark.line + 1);
            }
            rc = convert(c, yaml_document_get_node(c->doc, p->value), depth + 1, &v);
            if (rc < 0) {
                json_decref(obj);
                return rc;
            }
            json_object_set_new(obj, (const char *)k->data.scalar.value, v);
        }
        *out = obj;
        return 0;
    }
    default:
        *out = json_null();
        return 0;
    }
}

int yaml_parse(const char *name, const char *text, size_t len, json_t **out)
{
    yaml_parser_t parser;
    yaml_document_t doc;
    yaml_node_t *root;
    struct conv c = {&doc, name, 0};
    int rc;

    if (!yaml_parser_initialize(&parser))
        return err_set(ERR_FAIL, "%s: cannot initialise the YAML parser", name);
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc)) {
        rc = err_set(ERR_INVALID, "%s: line %zu, column %zu: %s%s%s", name,
                     parser.problem_mark.line + 1, parser.problem_mark.column + 1,
                     parser.problem ? parser.problem : "invalid YAML", parser.context ? " " : "",
                     parser.context ? parser.context : "");
        yaml_parser_delete(&parser);
        return rc;
    }

    root = yaml_document_get_root_node(&doc);
    if (!root) {
        *out = json_null();
        rc = 0;
    } else {
        rc = convert(&c, root, 0, out);
    }
    yaml_document_delete(&doc);
    yaml_parser_delete(&parser);
    return rc;
}

int yaml_parse_file(const char *path, size_t max, json_t **out)
{
    struct buf text = BUF_INIT;
    int rc;

    rc = fs_read_file(path, max, &text);
    if (rc == 0)
        rc = yaml_parse(path, buf_str(&text), text.len, out);
    buf_free(&text);
    return rc;
}

/* A string needs quotes if a plain scalar would read back differently. */
static int needs_quotes(const char *s)
{
    json_t *back;
    int differs;

    if (*s == '\0' || strpbrk(s, ":#\"'{}[],&*!|>%@`\\") || s[0] == ' ' || s[0] == '-' ||
        s[0] == '?' || s[strlen(s) - 1] == ' ')
        return 1;
    /* Controls and anything beyond ASCII go quoted, where escapes exist. */
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p < 0x20 || *p >= 0x7f)
            return 1;
    }
    back = plain_scalar(s, strlen(s));
    differs = !json_is_string(back);
    json_decref(back);
    return differs;
}

/* A double-quoted scalar: escapes for what YAML does not allow raw
 * (C0 and C1 controls, DEL, byte-order marks and non-characters). */
static void emit_quoted(const char *s, struct buf *out)
{
    const unsigned char *p = (const unsigned char *)s;

    buf_adds(out, "\"");
    while (*p) {
        if (*p == '"' || *p == '\\') {
            buf_addf(out, "\\%c", *p++);
        } else if (*p == '\n') {
            buf_adds(out, "\\n");
            p++;
        } else if (*p < 0x20 || *p == 0x7f) {
            buf_addf(out, "\\x%02x", *p++);
        } else if (p[0] == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
            buf_addf(out, "\\x%02x", p[1]);
            p += 2;
        } else if (p[0] == 0xef && ((p[1] == 0xbb && p[2] == 0xbf) ||
                                    (p[1] == 0xbf && (p[2] == 0xbe || p[2] == 0xbf)))) {
            buf_addf(out, "\\u%04x", ((p[1] & 0x3f) << 6 | (p[2] & 0x3f)) | 0xf000);
            p += 3;
        } else {
            buf_add(out, p++, 1);
        }
    }
    buf_adds(out, "\"");
}

static void emit_string(const char *s, struct buf *out)
{
    if (needs_quotes(s))
        emit_quoted(s, out);
    else
        buf_adds(out, s);
}

static void emit_scalar(const json_t *v, struct buf *out)
{
    char *dumped;

    if (json_is_string(v)) {
        emit_string(json_string_value(v), out);
        return;
    }
    dumped = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT);
    buf_adds(out, dumped);
    free(dumped);
}

static int is_block(const json_t *v)
{
    return (json_is_object(v) && json_object_size(v) > 0) ||
           (json_is_array(v) && json_array_size(v) > 0);
}

static void emit_node(const json_t *v, int indent, struct buf *out)
{
    const char *key;
    json_t *item;
    size_t i;

    if (json_is_object(v) && json_object_size(v) > 0) {
        json_object_foreach ((json_t *)v, key, item) {
            buf_addf(out, "%*s", indent, "");
            emit_string(key, out);
            buf_adds(out, ":");
            if (is_block(item)) {
                buf_adds(out, "\n");
                emit_node(item, indent + 2, out);
            } else {
                buf_adds(out, " ");
                emit_scalar(item, out);
                buf_adds(out, "\n");
            }
        }
    } else if (json_is_array(v) && json_array_size(v) > 0) {
        json_array_foreach (v, i, item) {
            buf_addf(out, "%*s-", indent, "");
            if (is_block(item)) {
                buf_adds(out, "\n");
                emit_node(item, indent + 2, out);
            } else {
                buf_adds(out, " ");
                emit_scalar(item, out);
                buf_adds(out, "\n");
            }
        }
    } else {
        buf_addf(out, "%*s", indent, "");
        emit_scalar(v, out);
        buf_adds(out, "\n");
    }
}

void yaml_emit(const json_t *value, struct buf *out)
{
    emit_node(value, 0, out);
}

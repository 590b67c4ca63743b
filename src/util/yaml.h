/*
 * yaml: YAML documents as jansson values, both ways.
 *
 * yaml_parse() reads one YAML document into a JSON value. Plain scalars
 * are typed by the YAML 1.2 core schema (null, booleans, integers,
 * floats); quoted scalars are always strings. Aliases are expanded, with
 * a cap on the total number of nodes so that a small file cannot expand
 * into a huge value.
 */
#ifndef PACKRUN_YAML_H
#define PACKRUN_YAML_H

#include <jansson.h>
#include <stddef.h>

#include "util/buf.h"

/* Parse text (len bytes) into *out (caller decrefs). name is used in
 * messages: "name: line 3, column 5: mapping values are not allowed".
 * An empty document parses as JSON null. ERR_INVALID on bad YAML. */
int yaml_parse(const char *name, const char *text, size_t len, json_t **out);

/* Read and parse a file of at most max bytes. */
int yaml_parse_file(const char *path, size_t max, json_t **out);

/* Write value as a block-style YAML document, appended to out. */
void yaml_emit(const json_t *value, struct buf *out);

#endif

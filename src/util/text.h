/*
 * text: bytes from the outside world made safe to show as JSON strings.
 */
#ifndef PACKRUN_TEXT_H
#define PACKRUN_TEXT_H

#include <jansson.h>
#include <stddef.h>

/* A JSON string of data: valid UTF-8 is kept, each invalid byte and each
 * NUL becomes U+FFFD. Never NULL. */
json_t *text_json(const char *data, size_t len);

/* The last non-empty line of data (without its newline), or NULL. Caller
 * frees. */
char *text_last_line(const char *data, size_t len);

#endif

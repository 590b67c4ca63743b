#include "util/text.h"

#include <string.h>

#include "util/buf.h"

/* Length of the valid UTF-8 sequence at p, or 0. */
static size_t utf8_seq(const unsigned char *p, size_t left)
{
    size_t n;
    unsigned cp;

    if (p[0] >= 0x01 && p[0] < 0x80)
        return 1;
    if ((p[0] & 0xE0) == 0xC0) {
        n = 2;
        cp = p[0] & 0x1F;
    } else if ((p[0] & 0xF0) == 0xE0) {
        n = 3;
        cp = p[0] & 0x0F;
    } else if ((p[0] & 0xF8) == 0xF0) {
        n = 4;
        cp = p[0] & 0x07;
    } else {
        return 0;
    }
    if (n > left)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((p[i] & 0xC0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3F);
    }
    if ((n == 2 && cp < 0x80) || (n == 3 && cp < 0x800) || (n == 4 && cp < 0x10000) ||
        cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

json_t *text_json(const char *data, size_t len)
{
    const unsigned char *p = (const unsigned char *)data;
    struct buf b = BUF_INIT;
    json_t *s;
    size_t i = 0;

    s = json_stringn(data, len);
    if (s && !memchr(data, '\0', len))
        return s;
    json_decref(s);

    while (i < len) {
        size_t n = utf8_seq(p + i, len - i);

        if (n == 0) {
            buf_add(&b, "\xEF\xBF\xBD", 3);
            i++;
        } else {
            buf_add(&b, p + i, n);
            i += n;
        }
    }
    s = json_stringn(buf_str(&b), b.len);
    buf_free(&b);
    return s ? s : json_string("");
}

char *text_last_line(const char *data, size_t len)
{
    size_t end = len, start;
    struct buf b = BUF_INIT;

    while (end > 0 && (data[end - 1] == '\n' || data[end - 1] == '\r' || data[end - 1] == ' '))
        end--;
    if (end == 0)
        return NULL;
    start = end;
    while (start > 0 && data[start - 1] != '\n')
        start--;
    buf_add(&b, data + start, end - start);
    return buf_detach(&b);
}

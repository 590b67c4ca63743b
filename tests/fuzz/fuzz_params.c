/*
 * libFuzzer target: the parameter validator and every delivery format.
 * The input is a JSON object {"schema": {...}, "params": {...}}.
 */
#include <stdint.h>
#include <stdlib.h>

#include "pack/params.h"
#include "runner/runner.h"
#include "util/buf.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char *const formats[] = {"json", "dotenv", "yaml"};
    json_t *doc = json_loadb((const char *)data, size, 0, NULL);
    json_t *schema, *resolved = NULL, *shown;

    if (!doc)
        return 0;
    schema = json_object_get(doc, "schema");
    if (params_schema_check("fuzz.yaml", "parameters", schema) == 0 &&
        params_check(schema, json_object_get(doc, "params"), &resolved) == 0) {
        for (size_t i = 0; i < 3; i++) {
            struct buf out = BUF_INIT;
            char *note = NULL;
            json_t *back;

            runner_format_params(resolved, formats[i], &out);
            /* What the runner writes must read back as the same value. */
            if (i != 1) {
                back = runner_parse_output(formats[i], buf_str(&out), out.len, &note);
                if (!back || !json_equal(back, resolved))
                    abort();
                json_decref(back);
            }
            free(note);
            buf_free(&out);
        }
        shown = params_redact(schema, resolved);
        json_decref(shown);
    }
    json_decref(resolved);
    json_decref(doc);
    return 0;
}

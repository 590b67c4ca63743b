#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "pack/params.h"
#include "util/err.h"

static const char *schema_text =
    "{\"name\": {\"type\": \"string\", \"default\": \"world\"},"
    " \"count\": {\"type\": \"integer\", \"minimum\": 1, \"maximum\": 10},"
    " \"ratio\": {\"type\": \"number\", \"minimum\": 0, \"maximum\": 1.5},"
    " \"color\": {\"enum\": [\"red\", \"green\"]},"
    " \"verbose\": {\"type\": \"boolean\", \"default\": false},"
    " \"hosts\": {\"type\": \"array\"},"
    " \"extra\": {\"type\": \"object\"},"
    " \"token\": {\"type\": \"string\", \"secret\": true},"
    " \"target\": {\"type\": \"string\", \"required\": true}}";

static json_t *parse(const char *text)
{
    json_error_t e;
    json_t *v = json_loads(text, JSON_DECODE_ANY, &e);

    if (!v)
        fail_msg("bad test JSON: %s: %s", text, e.text);
    return v;
}

/* Run params_check on given (JSON text, or NULL); return rc and keep the
 * result in *resolved (NULL on failure). */
static int check(const char *schema, const char *given, json_t **resolved)
{
    json_t *s = parse(schema);
    json_t *g = given ? parse(given) : NULL;
    int rc;

    *resolved = NULL;
    rc = params_check(s, g, resolved);
    json_decref(s);
    json_decref(g);
    return rc;
}

static void expect_error(const char *given, const char *message)
{
    json_t *r;

    assert_int_equal(check(schema_text, given, &r), ERR_INVALID);
    assert_null(r);
    assert_string_equal(err_msg(), message);
}

static void test_defaults_filled(void **state)
{
    json_t *r;

    assert_int_equal(check(schema_text, "{\"target\": \"db1\"}", &r), 0);
    assert_string_equal(json_string_value(json_object_get(r, "name")), "world");
    assert_true(json_is_false(json_object_get(r, "verbose")));
    assert_string_equal(json_string_value(json_object_get(r, "target")), "db1");
    assert_null(json_object_get(r, "count")); /* no default: left out */
    assert_int_equal(json_object_size(r), 3);
    json_decref(r);
}

static void test_given_values_kept(void **state)
{
    json_t *r;

    assert_int_equal(check(schema_text,
                           "{\"target\": \"x\", \"name\": \"Ada\", \"count\": 10, \"ratio\": 1,"
                           " \"color\": \"green\", \"hosts\": [1], \"extra\": {\"a\": 1},"
                           " \"verbose\": true}",
                           &r),
                     0);
    assert_string_equal(json_string_value(json_object_get(r, "name")), "Ada");
    assert_int_equal(json_integer_value(json_object_get(r, "count")), 10);
    assert_true(json_is_integer(json_object_get(r, "ratio"))); /* an integer is a number */
    assert_true(json_is_true(json_object_get(r, "verbose")));
    json_decref(r);
}

static void test_null_means_none(void **state)
{
    json_t *r;
    json_t *s = parse("{\"a\": {\"default\": \"x\"}}");
    json_t *n = json_null();

    assert_int_equal(params_check(s, NULL, &r), 0);
    assert_string_equal(json_string_value(json_object_get(r, "a")), "x");
    json_decref(r);
    assert_int_equal(params_check(s, n, &r), 0);
    assert_int_equal(json_object_size(r), 1);
    json_decref(r);

    /* A parameter given as null takes its default. */
    assert_int_equal(check("{\"a\": {\"default\": \"x\"}}", "{\"a\": null}", &r), 0);
    assert_string_equal(json_string_value(json_object_get(r, "a")), "x");
    json_decref(r);

    /* No schema: no parameters. */
    assert_int_equal(params_check(NULL, NULL, &r), 0);
    assert_int_equal(json_object_size(r), 0);
    json_decref(r);
    json_decref(s);
    json_decref(n);
}

static void test_not_an_object(void **state)
{
    json_t *r;

    assert_int_equal(check(schema_text, "[1, 2]", &r), ERR_INVALID);
    assert_string_equal(err_msg(), "parameters: expected an object, got array");
    assert_int_equal(check(schema_text, "\"x\"", &r), ERR_INVALID);
    assert_null(r);
}

static void test_required(void **state)
{
    json_t *r;

    expect_error("{}", "parameter 'target': required");
    expect_error("{\"target\": null}", "parameter 'target': required");
    /* A required parameter with a default is satisfied by the default. */
    assert_int_equal(check("{\"a\": {\"required\": true, \"default\": \"d\"}}", "{}", &r), 0);
    assert_string_equal(json_string_value(json_object_get(r, "a")), "d");
    json_decref(r);
}

static void test_unknown(void **state)
{
    json_t *r;

    assert_int_equal(check("{\"a\": {}, \"b\": {}}", "{\"a\": \"1\", \"foo\": 1}", &r),
                     ERR_INVALID);
    assert_string_equal(err_msg(), "parameter 'foo': unknown (the action takes: a, b)");
    assert_int_equal(check("{}", "{\"foo\": 1}", &r), ERR_INVALID);
    assert_string_equal(err_msg(), "parameter 'foo': unknown (the action takes no parameters)");
}

static void test_types(void **state)
{
    expect_error("{\"target\": \"x\", \"count\": \"3\"}",
                 "parameter 'count': expected integer, got string");
    expect_error("{\"target\": \"x\", \"count\": 3.0}",
                 "parameter 'count': expected integer, got number");
    expect_error("{\"target\": \"x\", \"ratio\": \"0.5\"}",
                 "parameter 'ratio': expected number, got string");
    expect_error("{\"target\": 5}", "parameter 'target': expected string, got integer");
    expect_error("{\"target\": \"x\", \"verbose\": 1}",
                 "parameter 'verbose': expected boolean, got integer");
    expect_error("{\"target\": \"x\", \"hosts\": {}}",
                 "parameter 'hosts': expected array, got object");
    expect_error("{\"target\": \"x\", \"extra\": []}",
                 "parameter 'extra': expected object, got array");
    /* No type means string. */
    expect_error("{\"target\": \"x\", \"color\": true}",
                 "parameter 'color': expected string, got boolean");
}

static void test_enum(void **state)
{
    json_t *r;

    expect_error("{\"target\": \"x\", \"color\": \"pink\"}",
                 "parameter 'color': 'pink' is not one of red, green");
    /* Numbers compare by value. */
    assert_int_equal(
        check("{\"n\": {\"type\": \"number\", \"enum\": [1, 2.5]}}", "{\"n\": 1.0}", &r), 0);
    json_decref(r);
}

static void test_range(void **state)
{
    expect_error("{\"target\": \"x\", \"count\": 0}",
                 "parameter 'count': 0 is less than the minimum 1");
    expect_error("{\"target\": \"x\", \"count\": 11}",
                 "parameter 'count': 11 is greater than the maximum 10");
    expect_error("{\"target\": \"x\", \"ratio\": 1.75}",
                 "parameter 'ratio': 1.75 is greater than the maximum 1.5");
    expect_error("{\"target\": \"x\", \"ratio\": -1}",
                 "parameter 'ratio': -1 is less than the minimum 0");
}

static void test_too_big(void **state)
{
    size_t len = PARAMS_MAX_BYTES;
    char *big = malloc(len + 1);
    json_t *s = parse("{\"a\": {}}");
    json_t *g = json_object();
    json_t *r = NULL;

    memset(big, 'x', len);
    big[len] = '\0';
    json_object_set_new(g, "a", json_string(big));
    assert_int_equal(params_check(s, g, &r), ERR_TOOBIG);
    assert_null(r);
    assert_non_null(strstr(err_msg(), "larger than the limit"));
    free(big);
    json_decref(g);
    json_decref(s);
}

static void test_redact(void **state)
{
    json_t *s = parse(schema_text);
    json_t *p = parse("{\"target\": \"x\", \"token\": \"hunter2\"}");
    json_t *r = params_redact(s, p);

    assert_string_equal(json_string_value(json_object_get(r, "token")), "********");
    assert_string_equal(json_string_value(json_object_get(r, "target")), "x");
    /* The original is untouched. */
    assert_string_equal(json_string_value(json_object_get(p, "token")), "hunter2");
    json_decref(r);

    r = params_redact(s, NULL);
    assert_int_equal(json_object_size(r), 0);
    json_decref(r);
    json_decref(p);
    json_decref(s);
}

static int schema_rc(const char *schema)
{
    json_t *s = parse(schema);
    int rc = params_schema_check("actions/x.yaml", "parameters", s);

    json_decref(s);
    return rc;
}

static void expect_schema_problem(const char *schema, const char *message)
{
    assert_int_equal(schema_rc(schema), ERR_INVALID);
    assert_string_equal(err_msg(), message);
}

static void test_schema_valid(void **state)
{
    assert_int_equal(schema_rc(schema_text), 0);
    assert_int_equal(params_schema_check("actions/x.yaml", "parameters", NULL), 0);
    assert_int_equal(schema_rc("null"), 0);
    assert_int_equal(schema_rc("{\"a\": {\"position\": 0, \"immutable\": true}}"), 0);
}

static void test_schema_problems(void **state)
{
    expect_schema_problem("[1]", "actions/x.yaml: field 'parameters': must be a mapping of "
                                 "names to schemas, got array");
    expect_schema_problem("{\"count\": {\"type\": \"int\"}}",
                          "actions/x.yaml: field 'parameters.count.type': 'int' is not a type "
                          "(string, integer, number, boolean, array, object)");
    expect_schema_problem("{\"count\": {\"type\": 5}}",
                          "actions/x.yaml: field 'parameters.count.type': must be a string");
    expect_schema_problem("{\"count\": \"integer\"}",
                          "actions/x.yaml: field 'parameters.count': must be a mapping (type, "
                          "description, default, ...)");
    expect_schema_problem("{\"count\": {\"type\": \"integer\", \"default\": \"3\"}}",
                          "actions/x.yaml: field 'parameters.count.default': expected integer, "
                          "got string");
    expect_schema_problem("{\"c\": {\"enum\": \"red\"}}",
                          "actions/x.yaml: field 'parameters.c.enum': must be a list of values");
    expect_schema_problem("{\"c\": {\"enum\": [\"red\", 1]}}",
                          "actions/x.yaml: field 'parameters.c.enum': 1 is not of type string");
    expect_schema_problem("{\"c\": {\"enum\": [\"red\"], \"default\": \"blue\"}}",
                          "actions/x.yaml: field 'parameters.c.default': 'blue' is not one of "
                          "red");
    expect_schema_problem("{\"n\": {\"type\": \"integer\", \"minimum\": \"1\"}}",
                          "actions/x.yaml: field 'parameters.n.minimum': must be a number");
    expect_schema_problem("{\"n\": {\"type\": \"integer\", \"maximum\": 5, \"default\": 9}}",
                          "actions/x.yaml: field 'parameters.n.default': 9 is greater than the "
                          "maximum 5");
    expect_schema_problem("{\"s\": {\"maximum\": 5}}",
                          "actions/x.yaml: field 'parameters.s.maximum': applies only to integer "
                          "and number parameters");
    expect_schema_problem("{\"s\": {\"required\": \"yes\"}}",
                          "actions/x.yaml: field 'parameters.s.required': must be true or false");
    expect_schema_problem("{\"bad name\": {}}",
                          "actions/x.yaml: field 'parameters': 'bad name' is not a valid name "
                          "(letters, digits, '_' and '-', at most 64)");
}

static void test_schema_all_problems(void **state)
{
    json_t *s = parse("{\"a\": {\"type\": \"int\"}, \"b\": {\"secret\": 1}, \"c\": 3}");
    json_t *problems = json_array();

    assert_int_equal(params_schema_problems("actions/x.yaml", "output", s, problems), ERR_INVALID);
    assert_int_equal(json_array_size(problems), 3);
    assert_non_null(
        strstr(json_string_value(json_array_get(problems, 1)), "field 'output.b.secret'"));
    assert_int_equal(params_schema_check("actions/x.yaml", "output", s), ERR_INVALID);
    assert_non_null(strstr(err_msg(), "(and 2 more problems)"));
    json_decref(problems);
    json_decref(s);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults_filled), cmocka_unit_test(test_given_values_kept),
        cmocka_unit_test(test_null_means_none), cmocka_unit_test(test_not_an_object),
        cmocka_unit_test(test_required),        cmocka_unit_test(test_unknown),
        cmocka_unit_test(test_types),           cmocka_unit_test(test_enum),
        cmocka_unit_test(test_range),           cmocka_unit_test(test_too_big),
        cmocka_unit_test(test_redact),          cmocka_unit_test(test_schema_valid),
        cmocka_unit_test(test_schema_problems), cmocka_unit_test(test_schema_all_problems),
    };

    return cmocka_run_group_tests(tests, NULL, NULL);
}

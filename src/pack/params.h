/*
 * params: an action's parameters checked against its schema.
 *
 * The schema is the action's "parameters" map: name -> {type,
 * description, required, default, enum, secret, minimum, maximum}, type
 * one of string, integer, number, boolean, array, object (default
 * string). Checking happens at submission, so that a bad request is
 * refused with a message naming the parameter and never queued.
 */
#ifndef PACKRUN_PARAMS_H
#define PACKRUN_PARAMS_H

#include <jansson.h>

/* Limit on the serialised size of one execution's parameters. */
#define PARAMS_MAX_BYTES (16L * 1024 * 1024)

/*
 * Check given (an object, or NULL or JSON null for none) against schema
 * and set *resolved (caller decrefs) to the parameters with defaults
 * filled in. ERR_INVALID with a message naming the parameter when a value
 * has the wrong type, a required one is missing, a name is unknown, or a
 * value is outside its enum, minimum or maximum; ERR_TOOBIG past
 * PARAMS_MAX_BYTES. An integer is also a number; a real such as 3.0 is
 * not an integer. A parameter given as null counts as not given: its
 * default applies, and it is left out when it has none.
 */
int params_check(const json_t *schema, const json_t *given, json_t **resolved);

/*
 * A copy of params (caller decrefs) with the value of every parameter
 * the schema marks secret replaced by "********".
 */
json_t *params_redact(const json_t *schema, const json_t *params);

/*
 * Check that a schema itself is well formed: a mapping (or NULL or null,
 * meaning none) of valid names ([A-Za-z0-9_-], at most 64 characters) to
 * mappings with a known type, boolean required and secret, a list for
 * enum, numbers for minimum and maximum (integer and number types only),
 * and a default of the declared type that passes enum, minimum and
 * maximum. Other keys are kept and ignored. name and field are used in
 * messages: "actions/x.yaml: field 'parameters.count.type': ...".
 *
 * params_schema_problems() appends one message per problem to the array
 * problems and returns ERR_INVALID if it added any; it sets no error
 * message. params_schema_check() returns ERR_INVALID with the first
 * problem (and a count of the others) as the error message.
 */
int params_schema_problems(const char *name, const char *field, const json_t *schema,
                           json_t *problems);
int params_schema_check(const char *name, const char *field, const json_t *schema);

#endif

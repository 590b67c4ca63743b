/*
 * metrics: the Prometheus text format of what store_metrics() reads.
 */
#ifndef PACKRUN_METRICS_H
#define PACKRUN_METRICS_H

#include <jansson.h>

#include "util/buf.h"

/* Append the exposition of m (as store_metrics() returns it) to out. */
void metrics_render(const json_t *m, struct buf *out);

#endif

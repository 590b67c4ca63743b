/*
 * worker: claims executions from the store and runs them.
 *
 * A worker has a number of slots, each a thread with its own database
 * connection that claims one execution at a time, runs it with the
 * runner and stores its result. Slots sleep on the store's queue events
 * and wake as soon as work is queued. A heartbeat thread keeps the
 * worker's row fresh and marks abandoned the executions of workers that
 * stopped heartbeating; a cancel thread signals running executions that
 * were asked to cancel.
 */
#ifndef PACKRUN_WORKER_H
#define PACKRUN_WORKER_H

#include "util/config.h"

struct worker;

/* Resolve the runtimes, register the worker and start its threads.
 * cfg is borrowed and must outlive the worker. */
int worker_start(const struct config *cfg, struct worker **out);

/* Stop claiming; let running executions finish for up to the config's
 * stop grace, then end the rest (they become abandoned); join the
 * threads and free w. */
void worker_stop(struct worker *w);

#endif

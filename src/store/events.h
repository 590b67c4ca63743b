/*
 * events: the process-wide hub behind store_notify() and store_wait().
 * Private to src/store.
 *
 * Each channel has a counter. A notify bumps it in this process at once
 * and touches a file named after the channel in a shared folder; every
 * process watching that folder with inotify bumps its own counter when
 * the file changes. Waiters sleep on a condition variable until the
 * counter moves, so no one polls the database for news.
 */
#ifndef PACKRUN_EVENTS_H
#define PACKRUN_EVENTS_H

#include <stdint.h>

#include "store/store.h"

/* Watch dir (created if needed) for notifications from other processes.
 * Idempotent per dir. */
int events_watch(const char *dir);

/* Announce ch in this process and, when dir is not NULL, to the others. */
int events_notify(const char *dir, enum store_channel ch);

uint64_t events_seen(enum store_channel ch);
int events_wait(enum store_channel ch, uint64_t *seen, int timeout_ms);

#endif

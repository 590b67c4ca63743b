/*
 * clock: wall-clock timestamps for records and monotonic time for
 * durations and deadlines. Stored timestamps are UTC ISO 8601 strings
 * with milliseconds ("2026-12-03T12:00:00.123Z"), which sort as text and
 * read the same in SQLite and PostgreSQL.
 */
#ifndef PACKRUN_CLOCK_H
#define PACKRUN_CLOCK_H

#include <stddef.h>
#include <stdint.h>

/* Milliseconds since the epoch (CLOCK_REALTIME). */
int64_t clock_wall_ms(void);

/* Nanoseconds on CLOCK_MONOTONIC, for durations. */
int64_t clock_mono_ns(void);

/* Format ms since the epoch as ISO 8601 UTC into out (>= 25 bytes). */
void clock_iso8601(int64_t ms, char *out, size_t cap);

/* The current time as ISO 8601 UTC. out must hold 25 bytes. */
void clock_now(char *out, size_t cap);

#endif

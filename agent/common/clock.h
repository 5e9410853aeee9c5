/*
 * Clocks in milliseconds: monotonic for durations, deadlines and ages (never
 * jumps), wall time for what is shown to people or stored (log records,
 * snapshot dates).
 */
#ifndef GW_CLOCK_H
#define GW_CLOCK_H

#include <stdint.h>

/* CLOCK_MONOTONIC, ms. */
int64_t clock_mono_ms(void);

/* CLOCK_REALTIME, ms since the epoch. */
int64_t clock_wall_ms(void);

#endif

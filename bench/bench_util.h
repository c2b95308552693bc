/* Helpers shared by the kernel drivers of bench/ (kernel_rate.c, kernel_time.c). */
#ifndef MLP_BENCH_UTIL_H
#define MLP_BENCH_UTIL_H

#include <time.h>

/* Monotonic wall time in seconds. */
static inline double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* A linear congruential generator's next 24-bit value: reproducible test data. */
static inline unsigned next(unsigned *s)
{
    *s = *s * 1664525u + 1013904223u;
    return *s >> 8;
}

#endif

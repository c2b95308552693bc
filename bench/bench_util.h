/* Helpers shared by the kernel drivers of bench/ (kernel_rate.c, kernel_time.c,
 * kernel_ab.c). */
#ifndef MLP_BENCH_UTIL_H
#define MLP_BENCH_UTIL_H

#include <stddef.h>
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

/* Uniform in [-scale / 2, scale / 2): reproducible weights and gradients. */
static inline float next_sym(unsigned *s, float scale)
{
    return ((float)(next(s) & 0xffff) / 65536.0f - 0.5f) * scale;
}

/* The kernels' operands for b samples and h hidden units: W1 (784 x h) in [-0.005,
 * 0.005), dZ1 (b x h) in [-0.0005, 0.0005) and each dZ1 row's largest |value| in rmax. */
static inline void fill_operands(unsigned *s, size_t b, size_t h, float *W1, float *dZ1,
                                 float *rmax)
{
    for (size_t i = 0; i < 784 * h; i++)
        W1[i] = next_sym(s, 0.01f);
    for (size_t r = 0; r < b; r++) {
        rmax[r] = 0;
        for (size_t j = 0; j < h; j++) {
            const float v = next_sym(s, 1e-3f);
            dZ1[r * h + j] = v;
            rmax[r] = (v < 0 ? -v : v) > rmax[r] ? (v < 0 ? -v : v) : rmax[r];
        }
    }
}

/* KernelsSink.grad_bound for those operands (as a training step gives one from W2): the
 * sum of the row bounds, a bound on the sum of an element's |chunk sums| for inputs <= 1. */
static inline double rows_bound(const float *rmax, size_t b)
{
    double s = 0;
    for (size_t r = 0; r < b; r++)
        s += rmax[r];
    return s * (1 + 0x1p-20);
}

#endif

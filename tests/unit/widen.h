/* Test helper: a gradient from model_step_gradients in one form whatever path it took. */
#ifndef MLP_TEST_WIDEN_H
#define MLP_TEST_WIDEN_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include "kernels.h"

/* When grad1_bits > 0, g's first n32 elements are int32 in units of 2^-grad1_bits, packed
 * at its start (ModelStats.grad1_bits): rewrite them in place as int64 in units of
 * 2^-KERNELS_FIX_BITS, the form of the rest (last element first: element e's int64 covers
 * the int32 elements 2e and 2e + 1, already moved). */
static inline void widen_grad1(int64_t *g, size_t n32, int grad1_bits)
{
    if (grad1_bits <= 0)
        return;
    for (size_t e = n32; e-- > 0;) {
        int32_t v;
        memcpy(&v, (const char *)g + 4 * e, sizeof v);
        g[e] = (int64_t)((uint64_t)(int64_t)v << (KERNELS_FIX_BITS - grad1_bits));
    }
}

#endif

/* conv_probe: what exact mode's per-chunk conversion costs on this core (AVX2), next to the
 * multiply-adds it rides on; a developer's tool for docs/performance.md ("Exact mode's
 * floor on AVX2"), which `make bench` does not run.
 *
 *   conv_probe [ITERATIONS]      (default 50,000,000)
 *
 * Each line times one loop body of twelve 8-lane vectors, as many as the 6 x 16 dW1 tile
 * holds (best of 3 runs, nanoseconds per body and per vector):
 *   fma       twelve independent multiply-add chains (the FMA rate: 12 per 6 cycles)
 *   cvt       vcvttps2dq alone
 *   cvt+reg   vcvttps2dq and vpaddd into totals held in registers (what a tile would do
 *             if its int32 totals fitted beside its float sums: they do not, 12 + 12 + 3
 *             registers against AVX2's 16)
 *   cvt+mem   vcvttps2dq, vpaddd from and vmovdqa back to totals in memory (what
 *             grad1_micro_i32 does once per chunk for each of its twelve vectors)
 *   store     the twelve stores alone
 * Inline assembly, so that the compiler keeps every vector where the name says.
 *
 * Build: cc -O2 -o build/bench/conv_probe bench/conv_probe.c   (x86-64 with AVX2) */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#if !defined(__x86_64__)
int main(void)
{
    fprintf(stderr, "conv_probe: x86-64 only\n");
    return 1;
}
#else
static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static int totals[12 * 8] __attribute__((aligned(64)));

/* Twelve copies of an instruction group: X(i, t, o) with i the vector (0..11), t a
 * scratch register (12..14, rotating) and o the total's byte offset. */
#define R12(X)                                                                          \
    X(0, 12, 0) X(1, 13, 32) X(2, 14, 64) X(3, 12, 96) X(4, 13, 128) X(5, 14, 160)       \
    X(6, 12, 192) X(7, 13, 224) X(8, 14, 256) X(9, 12, 288) X(10, 13, 320) X(11, 14, 352)
#define S(x) #x
#define FMA(i, t, o) "vfmadd231ps %%ymm14, %%ymm15, %%ymm" S(i) "\n\t"
#define CVT(i, t, o) "vcvttps2dq %%ymm15, %%ymm" S(t) "\n\t"
#define CVT_REG(i, t, o) CVT(i, t, o) "vpaddd %%ymm" S(t) ", %%ymm" S(i) ", %%ymm" S(i) "\n\t"
#define CVT_MEM(i, t, o)                                                                \
    CVT(i, t, o) "vpaddd " S(o) "(%0), %%ymm" S(t) ", %%ymm" S(t) "\n\t"               \
                 "vmovdqa %%ymm" S(t) ", " S(o) "(%0)\n\t"
#define STORE(i, t, o) "vmovdqa %%ymm" S(i) ", " S(o) "(%0)\n\t"
#define CLOBBER                                                                         \
    "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",    \
        "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15"
#define LOOP(name, body)                                                                \
    static double name(long n)                                                          \
    {                                                                                   \
        const double t0 = now();                                                        \
        for (long k = 0; k < n; k++)                                                    \
            __asm__ volatile(body ::"r"(totals) : CLOBBER);                             \
        return (now() - t0) / (double)n * 1e9;                                          \
    }
LOOP(run_fma, R12(FMA))
LOOP(run_cvt, R12(CVT))
LOOP(run_cvt_reg, R12(CVT_REG))
LOOP(run_cvt_mem, R12(CVT_MEM))
LOOP(run_store, R12(STORE))

int main(int argc, char **argv)
{
    const long n = argc > 1 ? atol(argv[1]) : 50000000;
    static const struct {
        const char *name;
        double (*run)(long);
    } probes[] = {{"fma", run_fma},         {"cvt", run_cvt},     {"cvt+reg", run_cvt_reg},
                  {"cvt+mem", run_cvt_mem}, {"store", run_store}};
    if (n <= 0)
        return 1;
    __asm__ volatile("vzeroall" ::: CLOBBER);
    for (size_t p = 0; p < sizeof probes / sizeof probes[0]; p++) {
        double best = 1e30;
        for (int r = 0; r < 3; r++) {
            const double t = probes[p].run(n);
            best = t < best ? t : best;
        }
        printf("conv_probe %-8s %6.2f ns per 12 vectors  %5.3f ns per vector\n", probes[p].name,
               best, best / 12);
    }
    return 0;
}
#endif

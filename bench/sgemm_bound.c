/* sgemm_bound: the matrix-multiply bound of one MNIST training epoch of mlp, measured with
 * OpenBLAS cblas_sgemm (row-major) at the trainer's shapes. Benchmark-only: mlp itself
 * never links OpenBLAS.
 *
 *   sgemm_bound [-t THREADS] [-r REPS] [--keep-env] B:H [B:H ...]
 *
 * For every global batch B and hidden width H it times one training step's five products
 *     Z1  = X W1      [B x d] [d x H]      dW1 = X^T dZ1   [d x B] [B x H]
 *     Z2  = A1 W2     [B x H] [H x K]      dW2 = A1^T dZ2  [H x B] [B x K]
 *     dA1 = dZ2 W2^T  [B x K] [K x H]
 * (d = 784, K = 10), best of REPS steps after a warm-up, and prints per line
 *     bound B=.. h=.. threads=.. steps=.. step_s=.. epoch_s=.. gflops=.. z1_s=.. dw1_s=.. small_s=..
 * where steps = ceil(60000 / B) and epoch_s = steps * step_s.
 *
 * OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE, when set, are read as libopenblas loads, before
 * main runs; they can hold OpenBLAS to slower kernels than the CPU supports. Unless
 * --keep-env is given, the program removes both and re-executes itself, so that OpenBLAS
 * chooses its kernel by the CPU alone; it prints the kernel it chose (core name and
 * build configuration). The variables are changed for this process only. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cblas.h>

/* Declared by OpenBLAS's cblas.h; repeated so that another cblas.h still compiles. */
void openblas_set_num_threads(int num_threads);
int openblas_get_num_threads(void);
char *openblas_get_config(void);
char *openblas_get_corename(void);

enum { D = 784, K = 10, NTRAIN = 60000 };

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static float *alloc_fill(size_t n, unsigned *seed, float scale)
{
    float *p = aligned_alloc(64, ((n * sizeof *p + 63) / 64) * 64);
    if (!p) {
        fprintf(stderr, "sgemm_bound: out of memory (%zu floats)\n", n);
        exit(1);
    }
    for (size_t i = 0; i < n; i++) {
        *seed = *seed * 1664525u + 1013904223u;
        p[i] = scale * (float)((*seed >> 8) & 0xffff) / 65536.0f;
    }
    return p;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* One shape: times the step REPS times after a warm-up; prints one line. */
static void bound(int B, int H, int threads, int reps)
{
    unsigned seed = 12345u;
    float *X = alloc_fill((size_t)B * D, &seed, 1.0f);
    float *W1 = alloc_fill((size_t)D * H, &seed, 0.1f);
    float *Z1 = alloc_fill((size_t)B * H, &seed, 1.0f);   /* also stands in for A1 */
    float *dZ1 = alloc_fill((size_t)B * H, &seed, 0.01f);
    float *dW1 = alloc_fill((size_t)D * H, &seed, 0.0f);
    float *W2 = alloc_fill((size_t)H * K, &seed, 0.1f);
    float *Z2 = alloc_fill((size_t)B * K, &seed, 1.0f);
    float *dZ2 = alloc_fill((size_t)B * K, &seed, 0.01f);
    float *dW2 = alloc_fill((size_t)H * K, &seed, 0.0f);
    float *dA1 = alloc_fill((size_t)B * H, &seed, 0.0f);
    double *t_step = malloc((size_t)reps * sizeof *t_step);
    if (!t_step) exit(1);
    double best_z1 = 1e30, best_dw1 = 1e30, best_small = 1e30;

    for (int r = -reps / 4 - 3; r < reps; r++) {   /* negative r: warm-up */
        double t0 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, H, D, 1.0f, X, D, W1, H,
                    0.0f, Z1, H);
        double t1 = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, K, H, 1.0f, Z1, H, W2, K,
                    0.0f, Z2, K);
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, H, K, B, 1.0f, Z1, H, dZ2, K,
                    0.0f, dW2, K);
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, H, K, 1.0f, dZ2, K, W2, K,
                    0.0f, dA1, H);
        double t2 = now();
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, D, H, B, 1.0f, X, D, dZ1, H,
                    0.0f, dW1, H);
        double t3 = now();
        if (r >= 0) {
            t_step[r] = t3 - t0;
            if (t1 - t0 < best_z1) best_z1 = t1 - t0;
            if (t2 - t1 < best_small) best_small = t2 - t1;
            if (t3 - t2 < best_dw1) best_dw1 = t3 - t2;
        }
    }
    qsort(t_step, (size_t)reps, sizeof *t_step, cmp_double);
    double best = t_step[0], median = t_step[reps / 2];
    int steps = (NTRAIN + B - 1) / B;
    double flops = 2.0 * (2.0 * D * H + 3.0 * H * K) * B;   /* per step */
    printf("bound B=%d h=%d threads=%d steps=%d step_s=%.9f median_step_s=%.9f epoch_s=%.6f "
           "gflops=%.2f z1_s=%.9f dw1_s=%.9f small_s=%.9f\n",
           B, H, threads, steps, best, median, steps * best, flops / best * 1e-9, best_z1,
           best_dw1, best_small);
    fflush(stdout);
    free(t_step);
    free(X); free(W1); free(Z1); free(dZ1); free(dW1);
    free(W2); free(Z2); free(dZ2); free(dW2); free(dA1);
}

static void usage(void)
{
    fprintf(stderr, "usage: sgemm_bound [-t THREADS] [-r REPS] [--keep-env] B:H [B:H ...]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    int threads = 1, reps = 0, keep_env = 0, first = argc;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-t") && i + 1 < argc) threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "-r") && i + 1 < argc) reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--keep-env")) keep_env = 1;
        else if (argv[i][0] == '-') usage();
        else { first = i; break; }
    }
    if (first >= argc || threads < 1 || reps < 0) usage();

    /* Re-exec without the variables that pin OpenBLAS's kernel choice: libopenblas has
     * already read them by now, so unsetting them in this process would change nothing. */
    const char *ct = getenv("OPENBLAS_CORETYPE"), *l2 = getenv("OPENBLAS_L2_SIZE");
    if (!keep_env && (ct || l2)) {
        fprintf(stderr, "sgemm_bound: re-executing without%s%s%s%s\n",
                ct ? " OPENBLAS_CORETYPE=" : "", ct ? ct : "", l2 ? " OPENBLAS_L2_SIZE=" : "",
                l2 ? l2 : "");
        unsetenv("OPENBLAS_CORETYPE");
        unsetenv("OPENBLAS_L2_SIZE");
        execv("/proc/self/exe", argv);
        fprintf(stderr, "sgemm_bound: re-exec failed: %s\n", strerror(errno));
        return 1;
    }

    openblas_set_num_threads(threads);
    const char *core = openblas_get_corename();
    char *cfg = openblas_get_config();
    /* One token per field for the bench script: core=NAME; the configuration in quotes. */
    printf("openblas core=%s threads=%d coretype_env=%s l2_env=%s config=\"%s\"\n",
           core ? core : "?", openblas_get_num_threads(),
           getenv("OPENBLAS_CORETYPE") ? getenv("OPENBLAS_CORETYPE") : "unset",
           getenv("OPENBLAS_L2_SIZE") ? getenv("OPENBLAS_L2_SIZE") : "unset",
           cfg ? cfg : "?");

    for (int i = first; i < argc; i++) {
        int B, H;
        char extra;
        if (sscanf(argv[i], "%d:%d%c", &B, &H, &extra) != 2 || B < 1 || H < 1) usage();
        /* Enough repetitions for ~0.2 s of timing per shape at ~100 GFLOP/s, at least 20. */
        int n = reps;
        if (n == 0) {
            double step_flops = 2.0 * (2.0 * D * H + 3.0 * H * K) * B;
            n = (int)(0.2 / (step_flops / 1e11));
            if (n < 20) n = 20;
            if (n > 2000) n = 2000;
        }
        bound(B, H, threads, n);
    }
    return 0;
}

/* augment: distortions of training images, computed on the fly per sample.
 *
 * Every random number a sample's distortion uses comes from a counter-based stream keyed by
 * (seed, epoch, sample index) - the index of the sample in the training file - so a sample
 * gets the same distortion on any rank, with any thread count, and a resumed run the same
 * as an uninterrupted one. The result is re-quantised to uint8 (rounded to nearest,
 * clamped to 0..255), so the kernels' uint8 path and their zero skipping still apply.
 *
 *   elastic: Simard, Steinkraus and Platt (ICDAR 2003): a displacement field of
 *            independent uniform(-1, 1) values per pixel and axis, convolved with a Gaussian
 *            of standard deviation sigma (pixels; the kernel truncated at 3 sigma, zero
 *            outside the image), scaled by alpha; the output pixel (r, c) is the input
 *            read bilinearly at (r + dy, c + dx), zero outside.
 *   affine:  a rotation uniform in +-rotate degrees and a scale uniform in 1 +- scale about
 *            the image centre, then a shift uniform in +-shift pixels per axis; bilinear.
 *
 * Owns: Augment's per-thread scratch (augment_init/augment_free). No MPI.
 */
#ifndef MLP_AUGMENT_H
#define MLP_AUGMENT_H

#include <stddef.h>
#include <stdint.h>

typedef enum { AUGMENT_NONE = 0, AUGMENT_ELASTIC = 1, AUGMENT_AFFINE = 2 } AugmentKind;

typedef struct {
    AugmentKind kind;
    double sigma, alpha;            /* elastic: pixels */
    double rotate, scale, shift;    /* affine: degrees, fraction, pixels */
} AugmentSpec;

typedef struct {
    AugmentSpec spec;
    uint32_t rows, cols;
    int radius;           /* elastic: Gaussian half-width, ceil(3 sigma) */
    float *kernel;        /* (2 radius + 1) the normalised Gaussian */
    size_t per_thread;    /* floats of scratch per thread */
    int threads;
    float *scratch;       /* (threads, per_thread) */
} Augment;

/* Sizes the scratch for up to `threads` OpenMP threads (omp_get_max_threads() when 0).
 * Returns 0, or -1 on allocation failure or sizes that overflow (a nothing to free). */
int augment_init(Augment *a, const AugmentSpec *spec, uint32_t rows, uint32_t cols,
                 int threads);
void augment_free(Augment *a);

/* One sample: out (rows * cols) = the distortion of in (rows * cols) for the key
 * (seed, epoch, index). scratch: a->per_thread floats. Pure: the same bits for the same
 * arguments, whoever calls it. kind NONE copies. */
void augment_sample(const Augment *a, const uint8_t *in, uint8_t *out, uint64_t seed,
                    uint64_t epoch, uint64_t index, float *scratch);

/* A batch: out row r (d = rows * cols bytes) = augment_sample of images[idx[r]] keyed by
 * idx[r], and out_labels[r] = labels[idx[r]], for r < m. OpenMP over the rows (each row by
 * one thread, so the bits do not depend on the thread count); call outside a parallel
 * region. images (n, d), labels (n), idx (m), out (m, d), out_labels (m). */
void augment_batch(const Augment *a, const uint8_t *images, const uint8_t *labels,
                   const uint32_t *idx, size_t m, uint8_t *out, uint8_t *out_labels,
                   uint64_t seed, uint64_t epoch);

/* The counter-based stream of a sample: word k (64 bits) of key (seed, epoch, index), and
 * the uniform float in [0, 1) of its top 24 bits. Affine uses the uniforms of words 0..3
 * (angle, scale, shift y, shift x); elastic uses word p for pixel p (row-major): dx from
 * its top 24 bits, dy from the next 24, each 2 u - 1. */
uint64_t augment_word(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t k);
float augment_uniform(uint64_t seed, uint64_t epoch, uint64_t index, uint64_t k);

const char *augment_kind_name(AugmentKind k);

#endif

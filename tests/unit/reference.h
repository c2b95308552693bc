/* A plain double-precision implementation of docs/derivation.md, written from the formulas
 * with no attention to speed: the independent reference the kernels and the model are
 * tested against. Parameters in the same layout as Params (W1 (d,h), b1 (h), W2 (h,k),
 * b2 (k), contiguous). */
#ifndef MLP_REFERENCE_H
#define MLP_REFERENCE_H

#include <stddef.h>
#include <stdint.h>

/* Mean-over-norm cross-entropy of samples idx[0..m) and, if grad != NULL, its gradient
 * (same layout as theta) for the loss  L = -(1/norm) sum_i ln softmax(z2_i)[y_i].
 * correct (may be NULL) receives the number of argmax hits.
 * X (n, d) uint8 scaled by 1/255; theta, grad (d*h + h + h*k + k). */
double ref_loss_grad(const double *theta, size_t d, size_t h, size_t k, const uint8_t *X,
                     const uint8_t *labels, const uint32_t *idx, size_t m, double norm,
                     double *grad, long *correct);

/* Hidden activations A1 (m, h) and softmax outputs A2 (m, k) for samples idx[0..m). */
void ref_forward(const double *theta, size_t d, size_t h, size_t k, const uint8_t *X,
                 const uint32_t *idx, size_t m, double *A1, double *A2);

#endif

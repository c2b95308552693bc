#include "reference.h"

#include <math.h>
#include <stdlib.h>

void ref_forward(const double *theta, size_t d, size_t h, size_t k, const uint8_t *X,
                 const uint32_t *idx, size_t m, double *A1, double *A2)
{
    const double *W1 = theta, *b1 = W1 + d * h, *W2 = b1 + h, *b2 = W2 + h * k;
    for (size_t i = 0; i < m; i++) {
        const uint8_t *x = X + (size_t)idx[i] * d;
        for (size_t j = 0; j < h; j++) {
            double z = b1[j];
            for (size_t c = 0; c < d; c++)
                z += (x[c] / 255.0) * W1[c * h + j];
            A1[i * h + j] = 1.0 / (1.0 + exp(-z));
        }
        double zmax = -INFINITY, z2[256];
        for (size_t j = 0; j < k; j++) {
            double z = b2[j];
            for (size_t c = 0; c < h; c++)
                z += A1[i * h + c] * W2[c * k + j];
            z2[j] = z;
            if (z > zmax)
                zmax = z;
        }
        double s = 0;
        for (size_t j = 0; j < k; j++)
            s += exp(z2[j] - zmax);
        for (size_t j = 0; j < k; j++)
            A2[i * k + j] = exp(z2[j] - zmax) / s;
    }
}

double ref_loss_grad(const double *theta, size_t d, size_t h, size_t k, const uint8_t *X,
                     const uint8_t *labels, const uint32_t *idx, size_t m, double norm,
                     double *grad, long *correct)
{
    double *A1 = malloc(m * h * sizeof *A1), *A2 = malloc(m * k * sizeof *A2);
    double *dZ2 = malloc(k * sizeof *dZ2), *dZ1 = malloc(h * sizeof *dZ1);
    if (!A1 || !A2 || !dZ2 || !dZ1)
        abort();
    ref_forward(theta, d, h, k, X, idx, m, A1, A2);

    const double *W2 = theta + d * h + h;
    size_t count = d * h + h + h * k + k;
    double *gW1 = grad, *gb1 = grad + d * h, *gW2 = gb1 + h, *gb2 = gW2 + h * k;
    if (grad)
        for (size_t p = 0; p < count; p++)
            grad[p] = 0;

    double loss = 0;
    long hits = 0;
    for (size_t i = 0; i < m; i++) {
        unsigned y = labels[idx[i]];
        const double *a2 = A2 + i * k, *a1 = A1 + i * h;
        loss -= log(a2[y]);
        size_t best = 0;
        for (size_t j = 1; j < k; j++)
            if (a2[j] > a2[best])
                best = j;
        hits += best == y;
        if (!grad)
            continue;
        /* dZ2 = (A2 - Y) / norm;  dW2 = A1^T dZ2;  db2 = sum dZ2 */
        for (size_t j = 0; j < k; j++) {
            dZ2[j] = (a2[j] - (j == y)) / norm;
            gb2[j] += dZ2[j];
            for (size_t c = 0; c < h; c++)
                gW2[c * k + j] += a1[c] * dZ2[j];
        }
        /* dA1 = dZ2 W2^T;  dZ1 = dA1 * A1 * (1 - A1);  dW1 = X^T dZ1;  db1 = sum dZ1 */
        for (size_t c = 0; c < h; c++) {
            double da = 0;
            for (size_t j = 0; j < k; j++)
                da += dZ2[j] * W2[c * k + j];
            dZ1[c] = da * a1[c] * (1 - a1[c]);
            gb1[c] += dZ1[c];
        }
        const uint8_t *x = X + (size_t)idx[i] * d;
        for (size_t r = 0; r < d; r++)
            for (size_t c = 0; c < h; c++)
                gW1[r * h + c] += (x[r] / 255.0) * dZ1[c];
    }
    free(A1);
    free(A2);
    free(dZ2);
    free(dZ1);
    if (correct)
        *correct = hits;
    return loss / norm;
}

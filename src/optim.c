/* optim: see include/optim.h. */
#include "optim.h"

#include "kernels.h"

#include <math.h>

static const char *const optim_names[] = {"sgd", "momentum", "nesterov"};
static const char *const schedule_names[] = {"constant", "step", "cosine"};

const char *optim_kind_name(OptimKind k)
{
    return k >= OPTIM_SGD && k <= OPTIM_NESTEROV ? optim_names[k] : "?";
}

const char *optim_schedule_name(ScheduleKind k)
{
    return k >= SCHEDULE_CONSTANT && k <= SCHEDULE_COSINE ? schedule_names[k] : "?";
}

int optim_has_velocity(const OptimSpec *o)
{
    return o->kind == OPTIM_MOMENTUM || o->kind == OPTIM_NESTEROV;
}

double optim_schedule_lr(const ScheduleSpec *s, int64_t epoch, int64_t step,
                         int64_t steps_per_epoch)
{
    const double spe = (double)steps_per_epoch;
    const double k = (double)epoch * spe + (double)step;        /* global step, from 0 */
    const double kw = round(s->warmup_epochs * spe);
    if (k < kw)
        return s->lr * (k + 1) / kw;
    switch (s->kind) {
    case SCHEDULE_STEP:
        return s->lr * pow(s->gamma, (double)(epoch / (s->step_epochs > 0 ? s->step_epochs : 1)));
    case SCHEDULE_COSINE: {
        const double total = (double)s->epochs * spe - kw;
        const double p = total > 0 ? (k - kw) / total : 1.0;
        return s->lr_min + (s->lr - s->lr_min) * 0.5 * (1.0 + cos(M_PI * (p < 1 ? p : 1)));
    }
    default:
        return s->lr;
    }
}

/* Elements per block of the fixed-point path: the block's gradient is converted to floats
 * on the stack (kernels_fixed_to_f32), then updated by the float loops below. */
enum { OPTIM_BLOCK = 1024 };

/* The update of n elements from float gradients g: one expression per element, ISO C
 * rounding (no contraction), so any split into blocks and threads gives the same bits. */
static void update_f32(OptimKind kind, float *restrict theta, float *restrict vel,
                       const float *restrict g, size_t n, float lr, float lambda, float mu)
{
    switch (kind) {
    case OPTIM_SGD:
        for (size_t i = 0; i < n; i++)
            theta[i] -= lr * (g[i] + lambda * theta[i]);
        break;
    case OPTIM_MOMENTUM:
        for (size_t i = 0; i < n; i++) {
            const float v = mu * vel[i] + (g[i] + lambda * theta[i]);
            vel[i] = v;
            theta[i] -= lr * v;
        }
        break;
    case OPTIM_NESTEROV:
        for (size_t i = 0; i < n; i++) {
            const float gi = g[i] + lambda * theta[i];
            const float v = mu * vel[i] + gi;
            vel[i] = v;
            theta[i] -= lr * (gi + mu * v);
        }
        break;
    }
}

int64_t optim_update(const OptimSpec *o, float *theta, float *vel, OptimGrad g, size_t n,
                     float lr, float lambda)
{
    if (o->kind == OPTIM_SGD && lambda == 0.0f) {
        /* the seed's update, bit for bit (configs/mnist.ini's results) */
        if (g.f)
            return kernels_sgd_f32(theta, g.f, n, lr);
        if (g.i32)
            kernels_sgd_fixed32(theta, g.i32, n, lr, g.bits);
        else
            kernels_sgd_fixed(theta, g.i, n, lr);
        return 0;
    }
    const int64_t bad = g.f ? kernels_count_nonfinite(g.f, n) : 0;
    if (bad)
        return bad;
    const float mu = o->momentum;
    const size_t blocks = (n + OPTIM_BLOCK - 1) / OPTIM_BLOCK;
#pragma omp parallel for schedule(static)
    for (size_t b = 0; b < blocks; b++) {
        const size_t i = b * OPTIM_BLOCK, len = n - i < OPTIM_BLOCK ? n - i : OPTIM_BLOCK;
        float buf[OPTIM_BLOCK];
        const float *gb = g.f ? g.f + i : buf;
        if (g.i32)
            kernels_fixed32_to_f32(buf, g.i32 + i, len, g.bits);
        else if (!g.f)
            kernels_fixed_to_f32(buf, g.i + i, len);
        update_f32(o->kind, theta + i, vel ? vel + i : NULL, gb, len, lr, lambda, mu);
    }
    return 0;
}

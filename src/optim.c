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

/* The gradient element i as a float: the float sum, or the fixed-point sum scaled back
 * exactly as kernels_sgd_fixed does. */
static inline float grad_at(OptimGrad g, size_t i)
{
    return g.f ? g.f[i] : (float)((double)g.i[i] * 0x1p-40);
}

_Static_assert(KERNELS_FIX_BITS == 40, "grad_at assumes 40 fraction bits");

void optim_update(const OptimSpec *o, float *theta, float *vel, OptimGrad g, size_t n,
                  float lr, float lambda)
{
    if (o->kind == OPTIM_SGD && lambda == 0.0f) {
        /* the seed's update, bit for bit (configs/mnist.ini's results) */
        if (g.f)
            kernels_sgd_f32(theta, g.f, n, lr);
        else
            kernels_sgd_fixed(theta, g.i, n, lr);
        return;
    }
    const float mu = o->momentum;
    switch (o->kind) {
    case OPTIM_SGD:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            const float gi = grad_at(g, i) + lambda * theta[i];
            theta[i] -= lr * gi;
        }
        break;
    case OPTIM_MOMENTUM:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            const float gi = grad_at(g, i) + lambda * theta[i];
            const float v = mu * vel[i] + gi;
            vel[i] = v;
            theta[i] -= lr * v;
        }
        break;
    case OPTIM_NESTEROV:
#pragma omp parallel for schedule(static)
        for (size_t i = 0; i < n; i++) {
            const float gi = grad_at(g, i) + lambda * theta[i];
            const float v = mu * vel[i] + gi;
            vel[i] = v;
            theta[i] -= lr * (gi + mu * v);
        }
        break;
    }
}

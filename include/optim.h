/* optim: the parameter update and the learning-rate schedule, as pure functions of the
 * parameters, the (summed) gradient and the optimizer state, in the style of kann's
 * stateless updates. No MPI, no allocation, no globals.
 *
 * Every rank calls optim_update with the same summed gradient and the same state, so every
 * rank computes the same bits: in exact mode (a fixed-point gradient) the weights and the
 * velocity stay bitwise identical for any ranks x threads. Each element is updated by one
 * thread with the same expression (ISO C rounding, no contraction), so the thread count
 * does not change a bit either.
 *
 * The update, per element, with g the gradient (the float sum, or the fixed-point sum
 * times 2^-KERNELS_FIX_BITS rounded to float), lambda the weight decay of the tensor,
 * mu the momentum and eta the scheduled learning rate:
 *
 *   g'  = g + lambda * theta                (COUPLED L2 weight decay, as in PyTorch's SGD:
 *                                            decay enters the velocity; 0 for biases unless
 *                                            train.decay_biases)
 *   sgd:       theta -= eta * g'
 *   momentum:  v = mu * v + g';  theta -= eta * v
 *   nesterov:  v = mu * v + g';  theta -= eta * (g' + mu * v)
 *
 * Plain SGD without decay is exactly kernels_sgd_fixed / kernels_sgd_f32 (configs/mnist.ini
 * keeps its bits).
 */
#ifndef MLP_OPTIM_H
#define MLP_OPTIM_H

#include <stddef.h>
#include <stdint.h>

typedef enum { OPTIM_SGD = 0, OPTIM_MOMENTUM = 1, OPTIM_NESTEROV = 2 } OptimKind;
typedef enum { SCHEDULE_CONSTANT = 0, SCHEDULE_STEP = 1, SCHEDULE_COSINE = 2 } ScheduleKind;

typedef struct {
    OptimKind kind;
    float momentum;       /* mu in [0, 1); unused by sgd */
} OptimSpec;

/* The learning rate as a function of the position only (so a resumed run needs no state):
 * linear warm-up over the first warmup_epochs (in steps: eta * (k + 1) / K_w for global
 * step k < K_w = round(warmup_epochs * steps_per_epoch)), then
 *   constant: eta
 *   step:     eta * gamma^floor(epoch / step_epochs)   (epoch from 0: the one being trained)
 *   cosine:   lr_min + (eta - lr_min) (1 + cos(pi (k - K_w) / (K - K_w))) / 2,
 *             K = epochs * steps_per_epoch
 */
typedef struct {
    ScheduleKind kind;
    double lr, lr_min;        /* eta; the floor of cosine */
    double warmup_epochs;     /* >= 0, may be fractional */
    long step_epochs;         /* >= 1 */
    double gamma;             /* in (0, 1] */
    long epochs;              /* train.epochs */
} ScheduleSpec;

/* The rate for step `step` (from 0) of epoch `epoch` (from 0), steps_per_epoch >= 1. */
double optim_schedule_lr(const ScheduleSpec *s, int64_t epoch, int64_t step,
                         int64_t steps_per_epoch);

/* The gradient of an update: exactly one of f (float sums, fast mode), i (fixed-point
 * sums in units of 2^-40, exact mode) and i32 (int32 ones in units of 2^-bits: exact
 * mode's dW1 and db1 under their bound) is non-NULL, n elements from the same offset as
 * theta. */
typedef struct {
    const float *f;
    const int64_t *i;
    const int32_t *i32;
    int bits;
} OptimGrad;

/* One update of theta (n) with gradient g (n) and velocity vel (n; NULL for sgd), rate lr
 * and coupled decay lambda >= 0 (see above). Starts its own OpenMP team; call it outside
 * a parallel region. Returns the number of NaN or infinite values in a float gradient (0
 * for fixed point); when it is not 0, theta and vel are to be discarded (plain SGD counts
 * them in its one pass over the gradient and has applied them). */
int64_t optim_update(const OptimSpec *o, float *theta, float *vel, OptimGrad g, size_t n,
                  float lr, float lambda);

/* Whether the optimizer keeps a velocity (momentum, nesterov). */
int optim_has_velocity(const OptimSpec *o);

const char *optim_kind_name(OptimKind k);
const char *optim_schedule_name(ScheduleKind k);

#endif

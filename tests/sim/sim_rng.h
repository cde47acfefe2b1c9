/* sim_rng.h - the simulation's one source of randomness: a splitmix64
 * generator, so a seed alone replays a run exactly on any machine. */
#ifndef SIM_RNG_H
#define SIM_RNG_H

#include <stdint.h>

typedef struct sim_rng {
    uint64_t state;
} sim_rng;

static inline void sim_rng_seed(sim_rng *r, uint64_t seed)
{
    r->state = seed ^ UINT64_C(0x5173796e6353696d); /* "SsyncSim": seed 0 is fine too */
}

static inline uint64_t sim_rng_next(sim_rng *r)
{
    uint64_t z = (r->state += UINT64_C(0x9e3779b97f4a7c15));
    z = (z ^ (z >> 30)) * UINT64_C(0xbf58476d1ce4e5b9);
    z = (z ^ (z >> 27)) * UINT64_C(0x94d049bb133111eb);
    return z ^ (z >> 31);
}

/* Uniform in [0, n) (n > 0; the modulo bias is irrelevant at these sizes). */
static inline uint32_t sim_rng_below(sim_rng *r, uint32_t n)
{
    return (uint32_t)(sim_rng_next(r) % n);
}

/* 1 with probability per_mille / 1000. */
static inline int sim_rng_chance(sim_rng *r, unsigned per_mille)
{
    return per_mille > 0 && sim_rng_below(r, 1000) < per_mille;
}

#endif

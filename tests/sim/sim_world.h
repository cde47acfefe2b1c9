/* sim_world.h - one simulated sitesync deployment in one process: N real
 * gateways (journal + node + sync client on the sim shim, plain transport)
 * and the sim daemon (real sd_store), a seeded nemesis, a reference model of
 * every submission, and the invariant checks. Used by sim_run (the seed
 * runner) and sim_oom (allocation failures in the gateway's sync path). */
#ifndef SIM_WORLD_H
#define SIM_WORLD_H

#include <stddef.h>
#include <stdint.h>

#include "fws_sim.h"
#include "gw/node.h"
#include "gw/relay.h"
#include "gw/sign.h"
#include "gw/sync.h"
#include "gw/tls.h"
#include "sim_pki.h"
#include "sim_rng.h"
#include "sim_server.h"

#define SIM_MAX_GW     8
#define SIM_SUB_FIELDS 3

typedef struct sim_opts {
    uint64_t seed;
    int steps;            /* nemesis/workload actions before the heal */
    int gateways;         /* 1..SIM_MAX_GW */
    int plant_server_ack; /* planted bug in the sim daemon: ACK before commit */
    int verbose;          /* actions and gateway logs on stderr */
    const sim_pki *pki;   /* non-NULL: hub mode (a regional hub, mbed TLS) */
} sim_opts;

/* One submission as the caller saw it (the reference model's input). */
typedef struct sim_sub {
    int gw;
    int ok; /* gw_node_submit returned 0: the gateway acknowledged it */
    uint64_t seq;
    ss_hlc_t hlc;
    uint8_t chash[32]; /* SHA-256 of the change's bytes as journaled and sent */
    int coll;          /* ss_collection_id */
    int op;            /* ss_op */
    char key[SS_KEY_MAX + 1];
    int nf;
    char fname[SIM_SUB_FIELDS][32];
    char fval[SIM_SUB_FIELDS][48];
} sim_sub;

typedef struct sim_gw {
    fws_sim *sim;
    fws shim;
    ss_ident id;
    gw_node node;
    int open;
    gw_sync sync;
    int partitioned;
    uint64_t reopen_count;
    int via_hub; /* hub mode: syncs over mbed TLS to the hub, not to the daemon */
    gw_tls tls;
    gw_signer signer; /* hub mode: every envelope signed with its certificate's key */
} sim_gw;

typedef struct sim_world {
    sim_opts o;
    sim_rng rng;
    fws_sim *dsim; /* the daemon's node (first of the world) */
    fws dshim;
    sim_server *srv;
    sim_gw gw[SIM_MAX_GW];
    int ngw;
    /* hub mode */
    fws_sim *hsim;
    fws hshim;
    gw_relay *relay;
    gw_relay_config rcfg;
    int hub_partitioned;
    uint64_t n_hub_cuts, n_hub_restarts, n_via_hub,
        n_sig_verified; /* n_via_hub: changes audited "via hub-0" */
    gw_journal_config jc;
    gw_sync_config sc;
    sim_sub *subs;
    size_t nsubs, subs_cap;
    uint64_t counter;   /* unique text values */
    uint64_t trace;     /* FNV-1a of every action line and the final audit head: a
                           replay of the same seed must give the same value */
    int manual_restart; /* 1: a failed operation leaves a powered-off gateway as it is */
    char failure[512];
    /* figures for the report */
    uint64_t n_ok, n_failed, n_syncs, n_sync_ok, n_cuts, n_armed, n_partitions, n_restarts;
} sim_world;

/* Sets up the world for o (daemon database at db_path). Returns 0, or a
 * negative error with w->failure set. */
int sim_world_setup(sim_world *w, const sim_opts *o, const char *db_path);
void sim_world_free(sim_world *w);

/* One random submission on gateway g (recorded in the reference). Returns
 * the submit result. */
int sim_world_submit(sim_world *w, int g);
/* One sync session of gateway g with the daemon. Returns its result. */
int sim_world_sync(sim_world *w, int g);
/* Restarts gateway g's process on its (possibly power-cut) storage: frees
 * the node and opens it again (journal recovery). Returns the open result. */
int sim_world_reopen(sim_world *w, int g);

/* The seeded run: o->steps random actions (submissions, syncs, partitions,
 * delays, power cuts, daemon restarts, time), invariants checked after each,
 * then heal, drain every gateway and the full check. Returns 0 if every
 * invariant held, 1 if one failed (w->failure says which), < 0 on a setup
 * error. */
int sim_world_run(sim_world *w);

/* Heals every fault and syncs each gateway until it has nothing pending.
 * Returns 0 or 1 with w->failure. */
int sim_world_drain(sim_world *w);
/* The cheap invariant, valid at any time between actions: no gateway holds
 * an acknowledgement beyond what the daemon has durably committed. */
int sim_world_check_acks(sim_world *w);
/* The full check after a drain: nothing acknowledged lost, nothing applied
 * twice, daemon state == reference LWW merge, audit chain valid. */
int sim_world_check_final(sim_world *w);

#endif

/* internal.h - helpers shared by the gateway's own .c files (the change
 * journal and the hub journal): big-endian fields and the translation of
 * shim errors at the storage boundary. Never on another component's include
 * path. */
#ifndef GW_INTERNAL_H
#define GW_INTERNAL_H

#include <stdint.h>

#include "fws/fws.h"
#include "proto/err.h"

static inline void gw__put32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
}
static inline void gw__put64(uint8_t *p, uint64_t v)
{
    gw__put32(p, (uint32_t)(v >> 32));
    gw__put32(p + 4, (uint32_t)v);
}
static inline uint32_t gw__get32(const uint8_t *p)
{
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t gw__get64(const uint8_t *p)
{
    return ((uint64_t)gw__get32(p) << 32) | gw__get32(p + 4);
}

/* Storage errors as the journals report them: a full device is the journal
 * being full (input refused, nothing dropped); anything unexpected is EIO. */
static inline int gw__map_fws(int rc)
{
    switch (rc) {
    case FWS_OK:
        return 0;
    case FWS_ENOSPC:
        return SS_EFULL;
    case FWS_ENOENT:
        return SS_ENOENT;
    case FWS_ENOMEM:
        return SS_ENOMEM;
    default:
        return SS_EIO;
    }
}

#endif

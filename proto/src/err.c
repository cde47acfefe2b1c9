/* err.c - message text and wire names for the error codes of err.h, all
 * generated from the one SS_ERRNO_MAP table so they can never drift apart. */
#include <string.h>

#include "proto/err.h"

const char *ss_strerror(int err)
{
    switch (err) {
    case 0:
        return "success";
#define SS__ERR_MSG(name, val, wire, msg) \
    case (val):                           \
        return msg;
        SS_ERRNO_MAP(SS__ERR_MSG)
#undef SS__ERR_MSG
    default:
        return "unknown error";
    }
}

const char *ss_err_name(int err)
{
    switch (err) {
    case 0:
        return "ok";
#define SS__ERR_WIRE(name, val, wire, msg) \
    case (val):                            \
        return wire;
        SS_ERRNO_MAP(SS__ERR_WIRE)
#undef SS__ERR_WIRE
    default:
        /* A code from a newer build: the peer maps unknown names to EPROTO. */
        return "unknown";
    }
}

int ss_err_from_name(const char *name)
{
    if (name == NULL)
        return SS_EINVAL;
    if (strcmp(name, "ok") == 0)
        return 0;
#define SS__ERR_FROM(ename, val, wire, msg) \
    if (strcmp(name, wire) == 0)            \
        return (val);
    SS_ERRNO_MAP(SS__ERR_FROM)
#undef SS__ERR_FROM
    return SS_EPROTO;
}

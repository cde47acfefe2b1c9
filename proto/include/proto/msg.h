/* msg.h - the JSON control messages (HELLO, WELCOME, ACK, ERROR, PING, PONG,
 * BYE), decoded strictly and encoded into caller buffers. BATCH is binary:
 * see envelope.h. docs/protocol.md is the reference for every field. */
#ifndef SS_MSG_H
#define SS_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "proto/hlc.h"
#include "proto/ident.h"
#include "proto/schema.h"

#define SS_PROTO_VERSION 1
/* Bounds on list lengths in one message. */
#define SS_MSG_MAX_ORIGINS 4096
#define SS_MSG_MAX_ACKS    4096
#define SS_MSG_MAX_REJECTS 4096
#define SS_MSG_TEXT_MAX    256 /* software string, error message, bye reason */
/* Bounds on HELLO/WELCOME max_frame (payload bytes; the upper bound is
 * SS_FRAME_ABSOLUTE_MAX) and on WELCOME window. */
#define SS_MSG_MIN_FRAME  1024
#define SS_MSG_MAX_WINDOW 1024

/* (origin, sequence) pair used by WELCOME (committed) and ACK. */
typedef struct ss_oseq {
    char origin[SS_ID_MAX + 1];
    uint64_t seq;
} ss_oseq;

/* One change the daemon refused while still advancing the sequence. */
typedef struct ss_reject {
    char origin[SS_ID_MAX + 1];
    uint64_t seq;
    int code;                          /* ss_err */
    char field[SS_FIELD_NAME_MAX + 1]; /* "" if none */
    char message[SS_MSG_TEXT_MAX];
} ss_reject;

typedef struct ss_hello {
    uint32_t proto; /* SS_PROTO_VERSION */
    char node[SS_ID_MAX + 1];
    ss_role role;
    uint32_t max_frame; /* largest frame the client accepts */
    char software[SS_MSG_TEXT_MAX];
    int norigins;     /* origins the client speaks for besides itself */
    ss_oseq *origins; /* seq unused (0) */
} ss_hello;

typedef struct ss_welcome {
    uint32_t proto;
    char node[SS_ID_MAX + 1]; /* the daemon's (or hub's) node id */
    ss_hlc_t time;            /* server HLC at send */
    uint32_t max_frame;       /* largest frame the server accepts */
    uint32_t window;          /* BATCH frames the client may have unacknowledged */
    int ncommitted;
    ss_oseq *committed; /* highest durably committed seq per origin */
} ss_welcome;

typedef struct ss_ack {
    int nacks;
    ss_oseq *acks; /* per origin: highest contiguous committed seq */
    int nrejects;
    ss_reject *rejects;
} ss_ack;

typedef struct ss_error {
    int code; /* ss_err */
    char message[SS_MSG_TEXT_MAX];
    char origin[SS_ID_MAX + 1]; /* "" if not about one origin */
    uint64_t seq;               /* offending seq, 0 if none */
    uint64_t resume;            /* next seq to send (gap), 0 if none */
    char field[SS_FIELD_NAME_MAX + 1];
} ss_error;

typedef struct ss_ping {
    uint64_t nonce; /* echoed in PONG */
} ss_ping;

typedef struct ss_bye {
    char reason[SS_MSG_TEXT_MAX];
} ss_bye;

typedef struct ss_msg {
    int type; /* SS_FRAME_* (never SS_FRAME_BATCH) */
    union {
        ss_hello hello;
        ss_welcome welcome;
        ss_ack ack;
        ss_error error;
        ss_ping ping; /* PING and PONG */
        ss_bye bye;
    } u;
} ss_msg;

/* Decodes a frame payload of the given type strictly: unknown fields,
 * missing fields, wrong types, out-of-range numbers, duplicate keys,
 * non-UTF-8, NULs and deep nesting are errors, and on error *out holds
 * nothing to free. err (optional) names the field. Lists are allocated with
 * ss_malloc; release with ss_msg_free. */
int ss_msg_decode(int type, const uint8_t *payload, size_t len, ss_msg *out, ss_verr *err);

/* Frees lists inside m; safe twice and on a zeroed message. */
void ss_msg_free(ss_msg *m);

/* Encodes m->type's payload (JSON, no frame header) into out[cap]. Returns
 * the length or SS_ENOSPC / SS_EINVAL (a field outside its limits). */
int ss_msg_encode(const ss_msg *m, uint8_t *out, size_t cap);

/* Encodes a whole frame (header + payload) into out[cap]: returns its length. */
int ss_msg_encode_frame(const ss_msg *m, uint8_t *out, size_t cap);

#endif

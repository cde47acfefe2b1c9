/* relay.h - what relays and origin signatures add to the wire: the route of
 * a forwarded BATCH, the signature block of a SIGNED envelope, and the
 * layout rules both ends share. Parsing only: proto/ does no cryptography
 * (the gateway signs with mbed TLS, the daemon verifies with OpenSSL). */
#ifndef SS_RELAY_H
#define SS_RELAY_H

#include <stddef.h>
#include <stdint.h>

#include "proto/envelope.h"
#include "proto/ident.h"

/* --- routed BATCH (frame flag SS_FRAME_FLAG_ROUTED) ---
 *   u8 nhops (1..SS_ROUTE_MAX_HOPS)
 *   nhops times: u8 len (1..64), id
 *   the envelope, byte for byte as the origin made it
 * hops[0] is the relay nearest the origin. The delivering relay, whose
 * identity the receiver takes from TLS, is not listed: it appends the hop it
 * received from when it forwards. Listed hops are the delivering relay's
 * claim; only the last hop is authenticated. An unrouted BATCH came straight
 * from its sender's own journal (a gateway, or a relay's first hop). */
#define SS_ROUTE_MAX_HOPS 8

typedef struct ss_route {
    int nhops;
    char hops[SS_ROUTE_MAX_HOPS][SS_ID_MAX + 1];
} ss_route;

/* Parses the route prefix of a ROUTED BATCH payload; *env_off receives the
 * offset of the envelope. Returns 0, SS_ETRUNC, SS_EID, or SS_ELIMIT (0 or
 * too many hops). */
int ss_route_parse(const uint8_t *payload, size_t len, ss_route *out, size_t *env_off);
/* Bytes ss_route_write needs. */
size_t ss_route_len(const ss_route *r);
/* Writes the route prefix; the caller appends the envelope. Returns the
 * length, or SS_ENOSPC / SS_EID / SS_ELIMIT. */
int ss_route_write(uint8_t *out, size_t cap, const ss_route *r);
/* Appends a hop (a relay forwarding what it received from `hop`). Returns 0
 * or SS_ELIMIT / SS_EID. */
int ss_route_push(ss_route *r, const char *hop);
/* The audit path: "direct" for no relay, else "via h0,h1,...,last" where
 * last is the delivering relay. Returns the length or SS_ENOSPC. */
int ss_route_format(const ss_route *r, const char *last_hop, char *buf, size_t cap);

/* --- origin signature block (the sig bytes of a SIGNED envelope) ---
 *   u8  alg            SS_SIG_ECDSA_P256_SHA256
 *   u16 cert_len       1..2048, then the origin's X.509 certificate (DER)
 *   u16 sig_len        8..72, then the ECDSA signature (DER Ecdsa-Sig-Value)
 *                      over SHA-256 of the envelope's signed region
 * Nothing may follow. The certificate travels in every envelope so that any
 * hop's receiver can verify it without a directory; the daemon caches
 * verified certificates by their SHA-256. */
#define SS_SIG_ECDSA_P256_SHA256 1
#define SS_SIG_CERT_MAX          2048u
#define SS_SIG_DER_MAX           72u

typedef struct ss_sig {
    uint8_t alg;
    const uint8_t *cert; /* points into the envelope */
    uint16_t cert_len;
    const uint8_t *sig;
    uint16_t sig_len;
} ss_sig;

/* Parses env->sig. Returns 0, SS_ESIG (not signed, unknown algorithm,
 * lengths out of range or inconsistent). */
int ss_sig_parse(const ss_envelope *env, ss_sig *out);
/* Bytes of the trailer (u16 sig_len and the block) for these lengths. */
size_t ss_sig_trailer_len(size_t cert_len, size_t sig_len);
/* Writes the whole trailer that follows the signed region: u16 length, then
 * the block. Returns its length or SS_ENOSPC / SS_ESIG. */
int ss_sig_write_trailer(uint8_t *out, size_t cap, const uint8_t *cert, size_t cert_len,
                         const uint8_t *sig, size_t sig_len);

#endif

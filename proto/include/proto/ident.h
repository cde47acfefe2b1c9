/* ident.h - identifiers and certificate identities. Node and site ids are
 * restricted to a safe set so they can appear in file names, SQL, logs and
 * URIs unescaped. Certificates carry identity as SAN URIs:
 *   urn:sitesync:node:<id>   exactly one
 *   urn:sitesync:role:<role> exactly one (gateway | relay | daemon)
 *   urn:sitesync:site:<id>   one per site (gateway and relay: at least one;
 *                            daemon: none)
 * The daemon (OpenSSL), gateway (mbed TLS) and PKI all parse through here. */
#ifndef SS_IDENT_H
#define SS_IDENT_H

#include <stddef.h>

/* Ids: 1..64 chars of [a-z0-9._-], starting with [a-z0-9]. Lower case only so
 * that two spellings can never name the same site. */
#define SS_ID_MAX          64
#define SS_IDENT_MAX_SITES 64
#define SS_URI_PREFIX      "urn:sitesync:"
/* Longest identity URI: prefix + "node:" + id. */
#define SS_URI_MAX (sizeof(SS_URI_PREFIX) - 1 + 5 + SS_ID_MAX)

typedef enum ss_role {
    SS_ROLE_NONE = 0,
    SS_ROLE_GATEWAY = 1,
    SS_ROLE_RELAY = 2,
    SS_ROLE_DAEMON = 3
} ss_role;

/* 0 if s[0..len) is a valid id, else SS_EID. */
int ss_id_check(const char *s, size_t len);
/* Same for a NUL-terminated string. */
int ss_id_check_str(const char *s);

const char *ss_role_name(ss_role r); /* "gateway", ...; "none" */
/* Returns the role, or SS_EINVAL for an unknown name. */
int ss_role_parse(const char *s, size_t len);

typedef enum ss_uri_kind { SS_URI_NODE = 1, SS_URI_ROLE = 2, SS_URI_SITE = 3 } ss_uri_kind;

/* Formats "urn:sitesync:<kind>:<value>" into buf. value is checked (an id, or
 * a role name for SS_URI_ROLE). Returns the length, SS_EID / SS_EINVAL, or
 * SS_ENOSPC. */
int ss_uri_format(char *buf, size_t cap, ss_uri_kind kind, const char *value);

typedef struct ss_ident {
    char node[SS_ID_MAX + 1];
    ss_role role;
    int nsites;
    char sites[SS_IDENT_MAX_SITES][SS_ID_MAX + 1];
    int bad; /* sticky error seen while adding URIs */
} ss_ident;

void ss_ident_init(ss_ident *id);

/* Feeds one SAN URI (not NUL-terminated; len bytes). URIs outside
 * "urn:sitesync:" are ignored (returns 0): a certificate may carry others.
 * A sitesync URI that is malformed, a second node or role, a duplicate site or
 * too many sites returns SS_EIDENT and marks the identity bad. */
int ss_ident_add_uri(ss_ident *id, const char *uri, size_t len);

/* Checks the finished identity: exactly one node and role; gateway/relay name
 * at least one site; daemon names none. Returns 0 or SS_EIDENT. */
int ss_ident_finish(const ss_ident *id);

/* 1 if the identity may write/relay for site, else 0. */
int ss_ident_has_site(const ss_ident *id, const char *site);

#endif

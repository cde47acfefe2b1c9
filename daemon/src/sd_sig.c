/* sd_sig.c - origin-signature verification with OpenSSL and the cache of
 * certificate verdicts that keeps it cheap (see sd/sig.h).
 *
 * Design note: an envelope carries its origin's certificate, so each one
 * could cost a certificate chain check (an ECDSA verification and a CRL
 * lookup) on top of its own signature check. Origins are few and their
 * certificates long-lived, so the verdict is cached by the SHA-256 of the
 * DER: a hit costs a hash of ~600 bytes and a table probe, and leaves only
 * the envelope's own ECDSA verification. What a cached verdict depended on
 * is bounded: the store it was made against (a reload clears the cache and
 * bumps a generation so a verification racing the reload cannot insert a
 * stale verdict), and time (a good entry records the certificate's validity
 * window clipped to the CRL's nextUpdate and is re-verified outside it).
 * The mutex guards the store pointer, the table and the counters; the
 * cryptography runs outside it. */
#include "sd/sig.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/x509.h>

#include "proto/alloc.h"
#include "proto/err.h"
#include "proto/relay.h"
#include "sd/tls.h"

#define PROBE 8 /* slots looked at per lookup/insert */

typedef struct entry {
    uint8_t digest[32];
    int used;
    uint64_t stamp;                  /* last use, for replacement */
    int code;                        /* 0: good certificate; else the cached refusal */
    int64_t valid_from, valid_until; /* seconds; good entries only */
    EVP_PKEY *pkey;                  /* good entries: the origin's key */
    ss_ident *ident;                 /* good entries: the origin's identity */
    char reason[200];                /* refusals */
} entry;

struct sd_sig {
    pthread_mutex_t mu;
    X509_STORE *store;
    int64_t crl_next; /* earliest nextUpdate of the store's CRLs (seconds) */
    uint64_t gen;     /* bumped by every store swap and cache clear */
    EVP_MD *sha256;   /* fetched once: implicit fetches take a lock each */
    entry *tab;
    size_t cap; /* power of two, or 0: no cache */
    size_t n;
    uint64_t clock;
    sd_sig_stats st;
};

/* Days since 1970-01-01 of a civil date (Howard Hinnant's algorithm): no
 * timegm(), which is not POSIX. */
static int64_t days_from_civil(int64_t y, unsigned m, unsigned d)
{
    y -= m <= 2;
    int64_t era = (y >= 0 ? y : y - 399) / 400;
    unsigned yoe = (unsigned)(y - era * 400);
    unsigned doy = (153 * (m + (m > 2 ? -3 : 9)) + 2) / 5 + d - 1;
    unsigned doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    return era * 146097 + (int64_t)doe - 719468;
}

/* An ASN1_TIME as Unix seconds. Returns 0 or -1 (unreadable). */
static int asn1_epoch(const ASN1_TIME *t, int64_t *out)
{
    struct tm tm;
    if (!t || ASN1_TIME_to_tm(t, &tm) != 1)
        return -1;
    *out =
        days_from_civil((int64_t)tm.tm_year + 1900, (unsigned)tm.tm_mon + 1, (unsigned)tm.tm_mday) *
            86400 +
        tm.tm_hour * 3600 + tm.tm_min * 60 + tm.tm_sec;
    return 0;
}

static void entry_clear(entry *e)
{
    EVP_PKEY_free(e->pkey);
    ss_free(e->ident);
    memset(e, 0, sizeof *e);
}

int sd_sig_new(size_t cache_entries, sd_sig **out)
{
    sd_sig *s = calloc(1, sizeof *s);
    if (!s)
        return SS_ENOMEM;
    if (pthread_mutex_init(&s->mu, NULL) != 0) {
        free(s);
        return SS_EINTERNAL;
    }
    s->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    if (!s->sha256) {
        ERR_clear_error();
        sd_sig_destroy(s);
        return SS_EINTERNAL;
    }
    if (cache_entries) {
        size_t cap = PROBE;
        while (cap < cache_entries && cap < ((size_t)1 << 24))
            cap <<= 1;
        s->tab = calloc(cap, sizeof *s->tab);
        if (!s->tab) {
            sd_sig_destroy(s);
            return SS_ENOMEM;
        }
        s->cap = cap;
    }
    *out = s;
    return 0;
}

static void clear_locked(sd_sig *s)
{
    for (size_t i = 0; i < s->cap; i++)
        if (s->tab[i].used)
            entry_clear(&s->tab[i]);
    s->n = 0;
    s->gen++;
}

void sd_sig_destroy(sd_sig *s)
{
    if (!s)
        return;
    clear_locked(s);
    free(s->tab);
    X509_STORE_free(s->store);
    EVP_MD_free(s->sha256);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* Earliest nextUpdate of the CRLs in store (INT64_MAX if none says). Runs
 * before the store is shared with the writer, under the store's lock. */
static int64_t crl_next_update(X509_STORE *store)
{
    int64_t best = INT64_MAX;
    if (!X509_STORE_lock(store))
        return best;
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    for (int i = 0; objs && i < sk_X509_OBJECT_num(objs); i++) {
        X509_OBJECT *o = sk_X509_OBJECT_value(objs, i);
        if (X509_OBJECT_get_type(o) != X509_LU_CRL)
            continue;
        int64_t t;
        if (asn1_epoch(X509_CRL_get0_nextUpdate(X509_OBJECT_get0_X509_CRL(o)), &t) == 0 && t < best)
            best = t;
    }
    X509_STORE_unlock(store);
    return best;
}

int sd_sig_set_store(sd_sig *s, X509_STORE *store)
{
    if (!s || !store || X509_STORE_up_ref(store) != 1)
        return SS_EINVAL;
    int64_t next = crl_next_update(store);
    pthread_mutex_lock(&s->mu);
    X509_STORE *old = s->store;
    s->store = store;
    s->crl_next = next;
    clear_locked(s);
    s->st.reloads++;
    pthread_mutex_unlock(&s->mu);
    X509_STORE_free(old); /* a verification in flight holds its own reference */
    return 0;
}

void sd_sig_clear_cache(sd_sig *s)
{
    pthread_mutex_lock(&s->mu);
    clear_locked(s);
    pthread_mutex_unlock(&s->mu);
}

uint64_t sd_sig_generation(sd_sig *s)
{
    pthread_mutex_lock(&s->mu);
    uint64_t g = s->gen;
    pthread_mutex_unlock(&s->mu);
    return g;
}

void sd_sig_get_stats(sd_sig *s, sd_sig_stats *out)
{
    pthread_mutex_lock(&s->mu);
    *out = s->st;
    out->entries = s->n;
    pthread_mutex_unlock(&s->mu);
}

static entry *lookup_locked(sd_sig *s, const uint8_t digest[32])
{
    if (!s->cap)
        return NULL;
    uint64_t h;
    memcpy(&h, digest, sizeof h);
    for (size_t k = 0; k < PROBE; k++) {
        entry *e = &s->tab[(h + k) & (s->cap - 1)];
        if (e->used && memcmp(e->digest, digest, 32) == 0)
            return e;
    }
    return NULL;
}

/* A slot for digest: a free one among the probed, else the least recently
 * used of them (its verdict is dropped: it costs one chain check later). */
static entry *slot_locked(sd_sig *s, const uint8_t digest[32])
{
    uint64_t h;
    memcpy(&h, digest, sizeof h);
    entry *victim = NULL;
    for (size_t k = 0; k < PROBE; k++) {
        entry *e = &s->tab[(h + k) & (s->cap - 1)];
        if (!e->used)
            return e;
        if (!victim || e->stamp < victim->stamp)
            victim = e;
    }
    entry_clear(victim);
    s->n--;
    return victim;
}

static void hex32(const uint8_t d[32], char out[65])
{
    static const char hx[] = "0123456789abcdef";
    for (int i = 0; i < 32; i++) {
        out[2 * i] = hx[d[i] >> 4];
        out[2 * i + 1] = hx[d[i] & 15];
    }
    out[64] = '\0';
}

/* Time errors depend on when we look, not only on the certificate: never
 * cached. */
static int time_dependent(int verr)
{
    return verr == X509_V_ERR_CERT_NOT_YET_VALID || verr == X509_V_ERR_CERT_HAS_EXPIRED ||
           verr == X509_V_ERR_CRL_NOT_YET_VALID || verr == X509_V_ERR_CRL_HAS_EXPIRED;
}

/* The certificate verdict without the cache: chain, CRL and validity at
 * now_s against store, then purpose, identity and role. It does not depend
 * on the envelope (the origin is compared by the caller), so it can be
 * cached for the certificate whatever envelope carries it. On success *pkey and
 * *ident are set and the validity window filled. *cacheable says whether a
 * refusal may be remembered. */
static int check_cert(X509_STORE *store, const uint8_t *der, size_t len, int64_t now_s,
                      EVP_PKEY **pkey, ss_ident *ident, int64_t *from, int64_t *until,
                      int *cacheable, char *reason, size_t rcap)
{
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)len);
    X509_STORE_CTX *sctx = NULL;
    int rc = SS_ECERT;
    *cacheable = 1;
    if (!x || p != der + len) {
        snprintf(reason, rcap, "origin certificate is not one DER X.509 certificate");
        goto exit;
    }
    if (!store) {
        snprintf(reason, rcap, "no trust store loaded");
        *cacheable = 0;
        goto exit;
    }
    sctx = X509_STORE_CTX_new();
    if (!sctx || X509_STORE_CTX_init(sctx, store, x, NULL) != 1) {
        snprintf(reason, rcap, "out of memory verifying the origin certificate");
        rc = SS_ENOMEM;
        *cacheable = 0;
        goto exit;
    }
    /* The same profile a peer certificate gets at the TLS handshake:
     * clientAuth purpose, CRL checked; the time is the receive time. */
    X509_STORE_CTX_set_default(sctx, "ssl_client");
    X509_VERIFY_PARAM *param = X509_STORE_CTX_get0_param(sctx);
    X509_VERIFY_PARAM_set_flags(param, X509_V_FLAG_CRL_CHECK);
    X509_VERIFY_PARAM_set_time(param, (time_t)now_s);
    if (X509_verify_cert(sctx) != 1) {
        int v = X509_STORE_CTX_get_error(sctx);
        snprintf(reason, rcap, "origin certificate: %s", X509_verify_cert_error_string(v));
        rc = v == X509_V_ERR_CERT_REVOKED ? SS_EREVOKED : SS_ECERT;
        *cacheable = !time_dependent(v);
        goto exit;
    }
    if (!sd_tls_cert_client_eku(x)) {
        snprintf(reason, rcap, "origin certificate is not for clientAuth");
        goto exit;
    }
    if (sd_tls_cert_ident(x, ident) != 0) {
        snprintf(reason, rcap, "origin certificate has no valid sitesync identity");
        goto exit;
    }
    if (ident->role != SS_ROLE_GATEWAY) {
        snprintf(reason, rcap, "origin certificate of %s is a %s certificate, not a gateway's",
                 ident->node, ss_role_name(ident->role));
        goto exit;
    }
    EVP_PKEY *k = X509_get0_pubkey(x);
    char group[32] = "";
    if (!k || !EVP_PKEY_is_a(k, "EC") ||
        EVP_PKEY_get_group_name(k, group, sizeof group, NULL) != 1 ||
        strcmp(group, "prime256v1") != 0) {
        snprintf(reason, rcap, "origin certificate key is not ECDSA P-256");
        goto exit;
    }
    if (asn1_epoch(X509_get0_notBefore(x), from) != 0 ||
        asn1_epoch(X509_get0_notAfter(x), until) != 0) {
        snprintf(reason, rcap, "origin certificate validity unreadable");
        goto exit;
    }
    if (EVP_PKEY_up_ref(k) != 1) {
        rc = SS_EINTERNAL;
        *cacheable = 0;
        goto exit;
    }
    *pkey = k;
    rc = 0;
exit:
    ERR_clear_error();
    X509_STORE_CTX_free(sctx);
    X509_free(x);
    return rc;
}

int sd_sig_verify(sd_sig *s, const ss_envelope *env, int64_t now_ms, sd_sig_result *res)
{
    ss_sig sig;
    uint8_t digest[32];
    unsigned int dlen = 0;
    EVP_PKEY *pkey = NULL;
    EVP_MD_CTX *md = NULL;
    int rc;
    memset(res, 0, sizeof *res);
    if (!(env->flags & SS_ENV_FLAG_SIGNED)) {
        snprintf(res->reason, sizeof res->reason, "envelope is not signed");
        rc = SS_ESIG;
        goto count;
    }
    if (ss_sig_parse(env, &sig) != 0) {
        snprintf(res->reason, sizeof res->reason,
                 "malformed signature block (algorithm or lengths)");
        rc = SS_ESIG;
        goto count;
    }
    if (EVP_Digest(sig.cert, sig.cert_len, digest, &dlen, s->sha256, NULL) != 1 || dlen != 32) {
        ERR_clear_error();
        snprintf(res->reason, sizeof res->reason, "cannot hash the origin certificate");
        rc = SS_EINTERNAL;
        goto count;
    }
    hex32(digest, res->fingerprint);
    int64_t now_s = now_ms / 1000;

    pthread_mutex_lock(&s->mu);
    entry *e = lookup_locked(s, digest);
    if (e && (e->code != 0 || (now_s >= e->valid_from && now_s <= e->valid_until))) {
        e->stamp = ++s->clock;
        s->st.cache_hits++;
        res->cached = 1;
        rc = e->code;
        if (rc == 0) {
            res->origin = *e->ident;
            EVP_PKEY_up_ref(e->pkey);
            pkey = e->pkey;
        } else {
            memcpy(res->reason, e->reason, sizeof res->reason);
        }
        pthread_mutex_unlock(&s->mu);
        if (rc != 0)
            goto count;
    } else {
        X509_STORE *store = s->store;
        if (store)
            X509_STORE_up_ref(store);
        uint64_t gen = s->gen;
        int64_t crl_next = s->crl_next;
        if (store)
            s->st.chain_checks++;
        pthread_mutex_unlock(&s->mu);

        int64_t from = 0, until = 0;
        int cacheable = 0;
        rc = check_cert(store, sig.cert, sig.cert_len, now_s, &pkey, &res->origin, &from, &until,
                        &cacheable, res->reason, sizeof res->reason);
        if (until > crl_next)
            until = crl_next;
        ss_ident *keep = NULL;
        if (rc == 0 && s->cap) {
            keep = ss_malloc(sizeof *keep);
            if (keep)
                *keep = res->origin;
        }
        pthread_mutex_lock(&s->mu);
        /* Dropped under the lock, as the key at the end. */
        X509_STORE_free(store);
        /* Only a verdict made against the store still in force is kept. */
        if (s->cap && gen == s->gen && (rc == 0 ? keep != NULL : cacheable) &&
            (rc == 0 || rc == SS_ECERT || rc == SS_EREVOKED)) {
            entry *slot = lookup_locked(s, digest);
            if (slot)
                entry_clear(slot);
            else
                slot = slot_locked(s, digest);
            memcpy(slot->digest, digest, 32);
            slot->used = 1;
            slot->stamp = ++s->clock;
            slot->code = rc;
            if (rc == 0) {
                slot->valid_from = from;
                slot->valid_until = until;
                EVP_PKEY_up_ref(pkey);
                slot->pkey = pkey;
                slot->ident = keep;
                keep = NULL;
            } else {
                memcpy(slot->reason, res->reason, sizeof slot->reason);
            }
            s->n++;
        }
        pthread_mutex_unlock(&s->mu);
        ss_free(keep);
        if (rc != 0)
            goto count;
    }

    /* A good certificate of another node: a relay (or anyone) presenting
     * one origin's certificate for another origin's envelope. */
    if (strcmp(res->origin.node, env->origin) != 0) {
        snprintf(res->reason, sizeof res->reason,
                 "origin certificate names node %s, not the envelope origin %s", res->origin.node,
                 env->origin);
        rc = SS_ECERT;
        goto done;
    }
    /* The envelope's own signature: ECDSA over SHA-256 of the signed
     * region (header with the SIGNED flag, and the body). */
    md = EVP_MD_CTX_new();
    if (!md) {
        snprintf(res->reason, sizeof res->reason, "out of memory");
        rc = SS_ENOMEM;
    } else if (EVP_DigestVerifyInit(md, NULL, s->sha256, NULL, pkey) != 1) {
        snprintf(res->reason, sizeof res->reason, "cannot set up signature verification");
        rc = SS_EINTERNAL;
    } else if (EVP_DigestVerify(md, sig.sig, sig.sig_len, env->signed_bytes, env->signed_len) !=
               1) {
        snprintf(res->reason, sizeof res->reason,
                 "signature does not verify with the certificate of %s", res->origin.node);
        rc = SS_ESIG;
    }
done:
    ERR_clear_error();
count:
    pthread_mutex_lock(&s->mu);
    /* This thread's references to the key (and, above, to the store) are
     * dropped under the lock that a reload takes to free the cache's:
     * libcrypto's reference counts are atomics that ThreadSanitizer cannot
     * see (OpenSSL is not instrumented), and the lock makes the order of this
     * thread's last use and the other thread's free visible to it. */
    EVP_MD_CTX_free(md);
    EVP_PKEY_free(pkey);
    if (rc == 0)
        s->st.verified++;
    else
        s->st.refused++;
    pthread_mutex_unlock(&s->mu);
    return rc;
}

int sd_sig_store_crl_der(X509_STORE *store, uint8_t **der, size_t *len)
{
    int rc = SS_ENOENT;
    *der = NULL;
    *len = 0;
    if (!store || !X509_STORE_lock(store))
        return SS_ENOENT;
    STACK_OF(X509_OBJECT) *objs = X509_STORE_get0_objects(store);
    for (int i = 0; objs && i < sk_X509_OBJECT_num(objs); i++) {
        X509_OBJECT *o = sk_X509_OBJECT_value(objs, i);
        if (X509_OBJECT_get_type(o) != X509_LU_CRL)
            continue;
        X509_CRL *crl = X509_OBJECT_get0_X509_CRL(o);
        int n = i2d_X509_CRL(crl, NULL);
        if (n <= 0) {
            rc = SS_EINTERNAL;
            break;
        }
        uint8_t *buf = malloc((size_t)n);
        unsigned char *w = buf;
        if (!buf || i2d_X509_CRL(crl, &w) != n) {
            free(buf);
            rc = buf ? SS_EINTERNAL : SS_ENOMEM;
            break;
        }
        *der = buf;
        *len = (size_t)n;
        rc = 0;
        break;
    }
    X509_STORE_unlock(store);
    ERR_clear_error();
    return rc;
}

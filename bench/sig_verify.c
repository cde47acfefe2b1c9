/* sig_verify.c - what origin-signature verification costs sitesyncd per
 * envelope: sd_sig_verify with its certificate cache warm, with no cache
 * (chain + CRL check of every envelope's certificate), and the bare ECDSA
 * P-256 verification of the signed region as the floor. A micro-benchmark,
 * not a test: it prints CPU microseconds per envelope and asserts nothing.
 *
 * Everything is made in process (a CA, a CRL, gateway certificates with
 * sitesync identities, signed envelopes), so it needs no PKI on disk.
 * usage: sig_verify [ITERATIONS] [ORIGINS] [CHANGES_PER_ENVELOPE] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/relay.h"
#include "sd/sig.h"

#define DIE(...)                                     \
    do {                                             \
        fprintf(stderr, "sig_verify: " __VA_ARGS__); \
        fprintf(stderr, "\n");                       \
        exit(1);                                     \
    } while (0)

/* CPU time of this thread: the machine is shared, and CPU is what a
 * verification costs the daemon's writer thread. */
static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static EVP_PKEY *p256_key(void)
{
    EVP_PKEY *k = EVP_EC_gen("P-256");
    if (!k)
        DIE("EC key generation failed");
    return k;
}

static void add_ext(X509 *x, X509 *issuer, int nid, const char *value)
{
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer, x, NULL, NULL, 0);
    X509_EXTENSION *e = X509V3_EXT_conf_nid(NULL, &ctx, nid, value);
    if (!e || X509_add_ext(x, e, -1) != 1)
        DIE("extension %d", nid);
    X509_EXTENSION_free(e);
}

static X509 *make_cert(EVP_PKEY *key, X509 *issuer, EVP_PKEY *issuer_key, const char *cn,
                       long serial, const char *san)
{
    X509 *x = X509_new();
    X509_set_version(x, X509_VERSION_3);
    ASN1_INTEGER_set(X509_get_serialNumber(x), serial);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(x), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(x, issuer ? X509_get_subject_name(issuer) : X509_get_subject_name(x));
    X509_gmtime_adj(X509_getm_notBefore(x), -3600);
    X509_gmtime_adj(X509_getm_notAfter(x), 86400L * 365);
    X509_set_pubkey(x, key);
    X509 *iss = issuer ? issuer : x;
    if (!issuer) {
        add_ext(x, iss, NID_basic_constraints, "critical,CA:TRUE");
        add_ext(x, iss, NID_key_usage, "critical,keyCertSign,cRLSign");
        add_ext(x, iss, NID_subject_key_identifier, "hash");
    } else {
        add_ext(x, iss, NID_basic_constraints, "critical,CA:FALSE");
        add_ext(x, iss, NID_key_usage, "critical,digitalSignature");
        add_ext(x, iss, NID_ext_key_usage, "clientAuth");
        add_ext(x, iss, NID_authority_key_identifier, "keyid:always");
        add_ext(x, iss, NID_subject_alt_name, san);
    }
    if (X509_sign(x, issuer ? issuer_key : key, EVP_sha256()) <= 0)
        DIE("certificate signing failed");
    return x;
}

static X509_CRL *make_crl(X509 *ca, EVP_PKEY *ca_key)
{
    X509_CRL *crl = X509_CRL_new();
    X509_CRL_set_version(crl, X509_CRL_VERSION_2);
    X509_CRL_set_issuer_name(crl, X509_get_subject_name(ca));
    ASN1_TIME *t = ASN1_TIME_adj(NULL, time(NULL), 0, -60);
    X509_CRL_set1_lastUpdate(crl, t);
    ASN1_TIME_adj(t, time(NULL), 30, 0);
    X509_CRL_set1_nextUpdate(crl, t);
    ASN1_TIME_free(t);
    if (X509_CRL_sign(crl, ca_key, EVP_sha256()) <= 0)
        DIE("CRL signing failed");
    return crl;
}

/* An envelope of n site_status changes of origin, signed with key. */
static uint8_t *make_envelope(const char *origin, const char *site, uint32_t n, EVP_PKEY *key,
                              const uint8_t *cert, size_t cert_len, size_t *out_len)
{
    size_t cap = 64 + (size_t)n * 256;
    char *body = malloc(cap);
    size_t pos = 0;
    body[pos++] = '[';
    for (uint32_t i = 0; i < n; i++) {
        int w = snprintf(body + pos, cap - pos,
                         "%s{\"seq\":%u,\"hlc\":\"0194a8f1c2d%05x\",\"collection\":\"site_status\","
                         "\"key\":\"%s\",\"site\":\"%s\",\"op\":\"update\",\"fields\":{\"note\":"
                         "\"benchmark note number %u\",\"alert_level\":\"normal\"}}",
                         i ? "," : "", i + 1, i, site, site, i);
        pos += (size_t)w;
    }
    body[pos++] = ']';
    size_t hl = ss_envelope_header_len(origin);
    size_t total = hl + pos + ss_sig_trailer_len(cert_len, SS_SIG_DER_MAX);
    uint8_t *env = malloc(total);
    if (ss_envelope_write_header(env, hl, origin, 1, n, (uint32_t)pos, SS_ENV_FLAG_SIGNED) !=
        (int)hl)
        DIE("envelope header");
    memcpy(env + hl, body, pos);
    free(body);
    uint8_t sig[SS_SIG_DER_MAX + 8];
    size_t siglen = sizeof sig;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, sig, &siglen, env, hl + pos) != 1)
        DIE("envelope signing");
    EVP_MD_CTX_free(md);
    int t = ss_sig_write_trailer(env + hl + pos, total - hl - pos, cert, cert_len, sig, siglen);
    if (t < 0)
        DIE("trailer: %s", ss_strerror(t));
    *out_len = hl + pos + (size_t)t;
    return env;
}

typedef struct origin {
    char node[32];
    EVP_PKEY *key;
    uint8_t *env;
    size_t env_len;
    ss_envelope parsed;
} origin;

static double run(sd_sig *sig, origin *o, int norigins, long iters)
{
    static sd_sig_result r; /* ~4.5 KiB: not on the stack in a loop */
    int64_t now_ms = (int64_t)time(NULL) * 1000;
    double t0 = now_s();
    for (long i = 0; i < iters; i++) {
        int rc = sd_sig_verify(sig, &o[i % norigins].parsed, now_ms, &r);
        if (rc != 0)
            DIE("verify: %s (%s)", ss_err_name(rc), r.reason);
    }
    return (now_s() - t0) / (double)iters * 1e6;
}

int main(int argc, char **argv)
{
    long iters = argc > 1 ? strtol(argv[1], NULL, 10) : 20000;
    int norigins = argc > 2 ? (int)strtol(argv[2], NULL, 10) : 16;
    uint32_t nchanges = argc > 3 ? (uint32_t)strtoul(argv[3], NULL, 10) : 10;
    if (iters < 1 || norigins < 1 || norigins > 4096 || nchanges < 1 || nchanges > 4096)
        DIE("usage: sig_verify [ITERATIONS >= 1] [ORIGINS 1..4096] [CHANGES 1..4096]");

    EVP_PKEY *ca_key = p256_key();
    X509 *ca = make_cert(ca_key, NULL, NULL, "bench CA", 1, NULL);
    X509_CRL *crl = make_crl(ca, ca_key);
    X509_STORE *store = X509_STORE_new();
    X509_STORE_add_cert(store, ca);
    X509_STORE_add_crl(store, crl);
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);

    origin *o = calloc((size_t)norigins, sizeof *o);
    size_t env_bytes = 0;
    for (int i = 0; i < norigins; i++) {
        char site[32], san[160];
        snprintf(o[i].node, sizeof o[i].node, "gw-bench-%d", i);
        snprintf(site, sizeof site, "site-%d", i);
        snprintf(san, sizeof san,
                 "URI:urn:sitesync:node:%s,URI:urn:sitesync:role:gateway,URI:urn:sitesync:site:%s",
                 o[i].node, site);
        o[i].key = p256_key();
        X509 *leaf = make_cert(o[i].key, ca, ca_key, o[i].node, 100 + i, san);
        int dl = i2d_X509(leaf, NULL);
        uint8_t *der = malloc((size_t)dl);
        unsigned char *w = der;
        i2d_X509(leaf, &w);
        o[i].env =
            make_envelope(o[i].node, site, nchanges, o[i].key, der, (size_t)dl, &o[i].env_len);
        if (ss_envelope_parse(o[i].env, o[i].env_len, &o[i].parsed) != 0)
            DIE("envelope does not parse");
        env_bytes = o[i].env_len;
        free(der);
        X509_free(leaf);
    }

    sd_sig *cached = NULL, *uncached = NULL;
    if (sd_sig_new(SD_SIG_CACHE_DEFAULT, &cached) != 0 || sd_sig_new(0, &uncached) != 0 ||
        sd_sig_set_store(cached, store) != 0 || sd_sig_set_store(uncached, store) != 0)
        DIE("verifier setup");

    /* Floor: the envelope's own ECDSA verification and nothing else. */
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    double t0 = now_s();
    for (long i = 0; i < iters; i++) {
        origin *x = &o[i % norigins];
        EVP_MD_CTX_reset(md);
        const ss_envelope *e = &x->parsed;
        ss_sig s;
        ss_sig_parse(e, &s);
        if (EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, x->key) != 1 ||
            EVP_DigestVerify(md, s.sig, s.sig_len, e->signed_bytes, e->signed_len) != 1)
            DIE("bare verify failed");
    }
    double bare = (now_s() - t0) / (double)iters * 1e6;
    EVP_MD_CTX_free(md);

    run(cached, o, norigins, norigins); /* warm the cache: one chain check per origin */
    double hit = run(cached, o, norigins, iters);
    double miss = run(uncached, o, norigins, iters);
    sd_sig_stats st;
    sd_sig_get_stats(cached, &st);

    printf("sig_verify: %ld envelopes, %d origins, %u changes (%zu bytes) per envelope\n", iters,
           norigins, nchanges, env_bytes);
    printf("  bare ECDSA P-256 verify of the signed region  %8.1f us/envelope\n", bare);
    printf("  sd_sig_verify, certificate cache warm          %8.1f us/envelope  (%.0f/s)\n", hit,
           1e6 / hit);
    printf("  sd_sig_verify, no cache (chain + CRL each)     %8.1f us/envelope  (%.0f/s)\n", miss,
           1e6 / miss);
    printf("  cache: hits %llu, chain checks %llu, entries %zu\n",
           (unsigned long long)st.cache_hits, (unsigned long long)st.chain_checks, st.entries);

    sd_sig_destroy(cached);
    sd_sig_destroy(uncached);
    for (int i = 0; i < norigins; i++) {
        EVP_PKEY_free(o[i].key);
        free(o[i].env);
    }
    free(o);
    X509_STORE_free(store);
    X509_CRL_free(crl);
    X509_free(ca);
    EVP_PKEY_free(ca_key);
    return 0;
}

/* sig_cost.c - what verifying an origin signature costs per envelope, with
 * OpenSSL as the daemon uses it: ECDSA P-256 over SHA-256 of a 40 KiB
 * envelope (about 80 changes of 500 bytes). Two paths: "cached" (the
 * origin's certificate was verified before and its public key is kept, as
 * the daemon caches verified certificates by their SHA-256: digest + ECDSA
 * verify only) and "uncached" (parse the certificate DER from the envelope,
 * verify it against the CA, then the signature). The split into SHA-256 and
 * ECDSA is printed too, so the doc can say where the time goes. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "bench_util.h"

static X509 *make_cert(EVP_PKEY *key, EVP_PKEY *issuer_key, X509 *issuer, const char *cn, int ca)
{
    X509 *c = X509_new();
    if (!c)
        return NULL;
    ASN1_INTEGER_set(X509_get_serialNumber(c), ca ? 1 : 2);
    X509_set_version(c, 2);
    X509_NAME_add_entry_by_txt(X509_get_subject_name(c), "CN", MBSTRING_ASC,
                               (const unsigned char *)cn, -1, -1, 0);
    X509_set_issuer_name(c, X509_get_subject_name(issuer ? issuer : c));
    X509_gmtime_adj(X509_getm_notBefore(c), -3600);
    X509_gmtime_adj(X509_getm_notAfter(c), 86400);
    X509_set_pubkey(c, key);
    X509V3_CTX ctx;
    X509V3_set_ctx(&ctx, issuer ? issuer : c, c, NULL, NULL, 0);
    X509_EXTENSION *ex = X509V3_EXT_conf_nid(NULL, &ctx, NID_basic_constraints,
                                             ca ? "critical,CA:TRUE" : "critical,CA:FALSE");
    if (!ex || !X509_add_ext(c, ex, -1)) {
        X509_EXTENSION_free(ex);
        X509_free(c);
        return NULL;
    }
    X509_EXTENSION_free(ex);
    if (X509_sign(c, issuer_key, EVP_sha256()) <= 0) {
        X509_free(c);
        return NULL;
    }
    return c;
}

int main(int argc, char **argv)
{
    uint64_t n = 2000, size = 40960;
    for (int i = 1; i + 1 < argc; i += 2) {
        int rc = 0;
        if (strcmp(argv[i], "-n") == 0)
            rc = bench_parse_u64("-n", argv[i + 1], 1, 10000000, &n);
        else if (strcmp(argv[i], "--size") == 0)
            rc = bench_parse_u64("--size", argv[i + 1], 1, 64u << 20, &size);
        else {
            fprintf(stderr, "usage: sig_cost [-n N] [--size BYTES]\n");
            return 2;
        }
        if (rc != 0)
            return 2;
    }
    if (argc % 2 == 0) {
        fprintf(stderr, "usage: sig_cost [-n N] [--size BYTES]\n");
        return 2;
    }
    EVP_PKEY *cakey = EVP_EC_gen("P-256"), *key = EVP_EC_gen("P-256");
    X509 *ca = cakey ? make_cert(cakey, cakey, NULL, "bench CA", 1) : NULL;
    X509 *leaf = ca && key ? make_cert(key, cakey, ca, "gw-00000", 0) : NULL;
    uint8_t *env = malloc(size), *der = NULL;
    int der_len = leaf ? i2d_X509(leaf, &der) : -1;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    X509_STORE *store = X509_STORE_new();
    if (!leaf || !env || der_len <= 0 || !md || !store || X509_STORE_add_cert(store, ca) != 1) {
        fprintf(stderr, "sig_cost: setup failed\n");
        return 1;
    }
    uint64_t rng = 1;
    for (uint64_t i = 0; i < size; i++)
        env[i] = (uint8_t)bench_rand(&rng);
    uint8_t sig[80], dig[32];
    size_t sig_len = sizeof sig;
    if (EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, key) != 1 ||
        EVP_DigestSign(md, sig, &sig_len, env, size) != 1) {
        fprintf(stderr, "sig_cost: sign failed\n");
        return 1;
    }
    const EVP_MD *sha = EVP_MD_fetch(NULL, "SHA256", NULL);

    /* cached: the public key is kept; digest + verify per envelope */
    uint64_t t0 = bench_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        if (EVP_DigestVerifyInit(md, NULL, sha, NULL, key) != 1 ||
            EVP_DigestVerify(md, sig, sig_len, env, size) != 1) {
            fprintf(stderr, "sig_cost: verify failed\n");
            return 1;
        }
    }
    double cached = (double)(bench_now_ns() - t0) / 1e3 / (double)n;

    /* the split: SHA-256 of the envelope alone, ECDSA verify of a digest */
    t0 = bench_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        unsigned int dl = sizeof dig;
        if (EVP_Digest(env, size, dig, &dl, sha, NULL) != 1)
            return 1;
    }
    double sha_us = (double)(bench_now_ns() - t0) / 1e3 / (double)n;
    EVP_PKEY_CTX *pc = EVP_PKEY_CTX_new(key, NULL);
    if (!pc || EVP_PKEY_verify_init(pc) != 1 ||
        EVP_PKEY_CTX_set_signature_md(pc, EVP_sha256()) != 1)
        return 1;
    t0 = bench_now_ns();
    for (uint64_t i = 0; i < n; i++)
        if (EVP_PKEY_verify(pc, sig, sig_len, dig, sizeof dig) != 1) {
            fprintf(stderr, "sig_cost: digest verify failed\n");
            return 1;
        }
    double ecdsa_us = (double)(bench_now_ns() - t0) / 1e3 / (double)n;

    /* uncached: parse the certificate, verify it against the CA, then the
     * signature (what a cache miss costs) */
    t0 = bench_now_ns();
    for (uint64_t i = 0; i < n; i++) {
        const unsigned char *p = der;
        X509 *c = d2i_X509(NULL, &p, der_len);
        X509_STORE_CTX *sc = X509_STORE_CTX_new();
        int ok =
            c && sc && X509_STORE_CTX_init(sc, store, c, NULL) == 1 && X509_verify_cert(sc) == 1;
        EVP_PKEY *pk = ok ? X509_get0_pubkey(c) : NULL;
        ok = ok && EVP_DigestVerifyInit(md, NULL, sha, NULL, pk) == 1 &&
             EVP_DigestVerify(md, sig, sig_len, env, size) == 1;
        X509_STORE_CTX_free(sc);
        X509_free(c);
        if (!ok) {
            fprintf(stderr, "sig_cost: uncached verify failed\n");
            return 1;
        }
    }
    double uncached = (double)(bench_now_ns() - t0) / 1e3 / (double)n;
    printf("sig_verify_us_per_envelope=%.1f sig_verify_uncached_us=%.1f sha256_us=%.1f "
           "ecdsa_verify_us=%.1f envelope_bytes=%llu n=%llu\n",
           cached, uncached, sha_us, ecdsa_us, (unsigned long long)size, (unsigned long long)n);
    EVP_PKEY_CTX_free(pc);
    EVP_MD_free((EVP_MD *)sha);
    EVP_MD_CTX_free(md);
    X509_STORE_free(store);
    OPENSSL_free(der);
    X509_free(leaf);
    X509_free(ca);
    EVP_PKEY_free(key);
    EVP_PKEY_free(cakey);
    free(env);
    return 0;
}

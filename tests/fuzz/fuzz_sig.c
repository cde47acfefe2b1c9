/* fuzz_sig.c - libFuzzer target for the daemon's origin-signature verifier
 * (sd_sig_verify): envelopes arrive from any hub, so the signature block, the
 * certificate inside it and the signed region are attacker bytes, and the
 * property that matters is that nothing but a gateway's own unaltered
 * envelope is ever accepted.
 *
 * The trust store is a fixed test PKI made with sitesync-pki (embedded below:
 * a CA valid 2026-12-04..2046, its CRL revoking gw2, the daemon certificate
 * "central", gateways gw1 (site s1) and gw2 (revoked), a relay hub1, and a
 * gw1 certificate from another CA). Verification runs at a fixed receive time
 * (2027-01-01) so the run does not depend on the clock; other times are
 * picked by the input to reach the expired / not-yet-valid paths.
 *
 * Input, byte 0 (mode): bit 0 clear: the rest is an envelope, verified as
 * is. Bit 0 set: the target builds an envelope itself, byte 1 picks the
 * signer's key and certificate, byte 2 the origin, byte 3 the number of
 * mutations (0..7), then 4 bytes per mutation (op, position hi, lo, value),
 * the rest is the body; it signs it with OpenSSL, applies the mutations and
 * verifies. Bit 1 selects a verifier without cache; bits 2-3 the receive
 * time (0 and 3: 2027; 1: before the certificates; 2: after them).
 *
 * Properties (else abort): whatever verifies carries gw1's certificate, its
 * signature verifies under that certificate's key by a direct OpenSSL check
 * and its origin is the certificate's node; a built envelope verifies only
 * if its signed region is byte for byte the one signed, with gw1's key as
 * gw1; unmutated, each signer gets its documented verdict (gw1 accepted,
 * gw2 SS_EREVOKED, the others SS_ECERT); every refusal says why.
 *
 * Seeds: SITESYNC_FUZZ_SIG_SEEDS=DIR fuzz_sig writes the seed corpus (signed
 * envelopes of every signer, raw and as build inputs) to DIR and exits; the
 * committed tests/fuzz/corpus/sig/ was made that way. To re-make the PKI:
 * sitesync-pki init/issue/revoke with --days 7300 and paste the PEM files. */
// fuzz-link: sd
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <openssl/bio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include "proto/envelope.h"
#include "proto/err.h"
#include "proto/relay.h"
#include "sd/sig.h"
#include "sd/tls.h"
#include "ss_test.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define NOW_MS    1798761600000LL /* 2027-01-01T00:00:00Z */
#define BEFORE_MS 1767225600000LL /* 2026-01-01: before every notBefore */
#define AFTER_MS  2461449600000LL /* 2048-01-01: after the CA's notAfter */
#define NSIGNERS  5
#define MAX_ENV   8192

/* The test PKI (sitesync-pki, 2026-12-04). Test keys only. */
static const char PEM_CA_CRT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIIBmzCCAUGgAwIBAgIQDyQVQpDIW7Quq+6uYCCqrjAKBggqhkjOPQQDAjAsMRQw\n"
    "EgYDVQQKDAtzaXRlc3luYyBDQTEUMBIGA1UEAwwLc2l0ZXN5bmMgQ0EwHhcNMjYx\n"
    "MjA0MTYzOTU5WhcNNDYxMTI5MTczOTU5WjAsMRQwEgYDVQQKDAtzaXRlc3luYyBD\n"
    "QTEUMBIGA1UEAwwLc2l0ZXN5bmMgQ0EwWTATBgcqhkjOPQIBBggqhkjOPQMBBwNC\n"
    "AASr/Px0AWTQfqCB3a/rih00EXQip2E1dEuLbGPqNZZbZRgg8jlQGECP5AOb6piS\n"
    "SUAH3SdpXrx/97Gy+Wp0G/ULo0UwQzASBgNVHRMBAf8ECDAGAQH/AgEAMA4GA1Ud\n"
    "DwEB/wQEAwIBBjAdBgNVHQ4EFgQUhM9d4zinHEzfZh0dkHBzXcsEX5YwCgYIKoZI\n"
    "zj0EAwIDSAAwRQIhANzfBxx+KXHb8+vziaXsawRTi1F/geKZ7baKcdqbgbeiAiBh\n"
    "VlsoHsFj1zqb25vNypfAcxThCzuQTzuaZKi5ciQopA==\n"
    "-----END CERTIFICATE-----\n";
static const char PEM_CRL_PEM[] =
    "-----BEGIN X509 CRL-----\n"
    "MIIBCjCBsQIBATAKBggqhkjOPQQDAjAsMRQwEgYDVQQKDAtzaXRlc3luYyBDQTEU\n"
    "MBIGA1UEAwwLc2l0ZXN5bmMgQ0EXDTI2MTIwNDE3NDAwMFoXDTM2MTIwMTE3NDAw\n"
    "MFowIzAhAhBv0IxKdUf+02qeh4a6ecWBFw0yNjEyMDQxNzQwMDBaoC8wLTAKBgNV\n"
    "HRQEAwIBAjAfBgNVHSMEGDAWgBSEz13jOKccTN9mHR2QcHNdywRfljAKBggqhkjO\n"
    "PQQDAgNIADBFAiEA2M9ODYabkcLLhxgw+V9+VyATqdpBQKLQKHojoRP9gYYCIBpn\n"
    "BwYPQP1wtXeg4MdagiqcKDruCO/cfpe+8jtOfSd6\n"
    "-----END X509 CRL-----\n";
static const char PEM_CENTRAL_CRT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIICGjCCAcCgAwIBAgIQICxdBAGlCIz3GMaJpJnY1DAKBggqhkjOPQQDAjAsMRQw\n"
    "EgYDVQQKDAtzaXRlc3luYyBDQTEUMBIGA1UEAwwLc2l0ZXN5bmMgQ0EwHhcNMjYx\n"
    "MjA0MTYzOTU5WhcNNDYxMTI5MTczOTU5WjAoMRQwEgYDVQQKDAtzaXRlc3luYyBD\n"
    "QTEQMA4GA1UEAwwHY2VudHJhbDBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABKby\n"
    "gX6NYnbxVomjk50uz1XTN1I+Ll4g0nNTXkEeeUa9JV3kMzg0tqLYYMn2Yq6xcYqW\n"
    "RCDLcW7WjPfjb72UIdGjgccwgcQwDAYDVR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMC\n"
    "B4AwEwYDVR0lBAwwCgYIKwYBBQUHAwEwHQYDVR0OBBYEFEyM9OJgjRlNMZezd0VG\n"
    "7tT7ei8hMB8GA1UdIwQYMBaAFITPXeM4pxxM32YdHZBwc13LBF+WME8GA1UdEQRI\n"
    "MEaGGXVybjpzaXRlc3luYzpub2RlOmNlbnRyYWyGGHVybjpzaXRlc3luYzpyb2xl\n"
    "OmRhZW1vboIJbG9jYWxob3N0hwR/AAABMAoGCCqGSM49BAMCA0gAMEUCIDO/0Z33\n"
    "Y1SSfHbqiNafOTOzCO45FwleGWBUUvcixZuYAiEAsP40rvo1COVs+ZSmaAMPxz8a\n"
    "O3vFMcAXM0li4LuOGoc=\n"
    "-----END CERTIFICATE-----\n";
static const char PEM_CENTRAL_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQge9lv1/BRfUwV7p5n\n"
    "ISh1WL/vHSUKq+vjFc0Lwl/8ZD+hRANCAASm8oF+jWJ28VaJo5OdLs9V0zdSPi5e\n"
    "INJzU15BHnlGvSVd5DM4NLai2GDJ9mKusXGKlkQgy3Fu1oz342+9lCHR\n"
    "-----END PRIVATE KEY-----\n";
static const char PEM_GW1_CRT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIICGTCCAb6gAwIBAgIQdoxvoSUw+b2dZoK2EcFOXjAKBggqhkjOPQQDAjAsMRQw\n"
    "EgYDVQQKDAtzaXRlc3luYyBDQTEUMBIGA1UEAwwLc2l0ZXN5bmMgQ0EwHhcNMjYx\n"
    "MjA0MTYzOTU5WhcNNDYxMTI5MTczOTU5WjAkMRQwEgYDVQQKDAtzaXRlc3luYyBD\n"
    "QTEMMAoGA1UEAwwDZ3cxMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAE0MHCCyxE\n"
    "JE6HRPukpZjkirYnDOYXh4+fiTdVZEAeQxccx49O4LBETeX2qP/f3EdbFnRNVxsp\n"
    "CCwxEPu2MCpVVaOByTCBxjAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQEAwIHgDAT\n"
    "BgNVHSUEDDAKBggrBgEFBQcDAjAdBgNVHQ4EFgQU7CYHEkyoJoSdg0d7LS65jXFl\n"
    "o4gwHwYDVR0jBBgwFoAUhM9d4zinHEzfZh0dkHBzXcsEX5YwUQYDVR0RBEowSIYV\n"
    "dXJuOnNpdGVzeW5jOm5vZGU6Z3cxhhl1cm46c2l0ZXN5bmM6cm9sZTpnYXRld2F5\n"
    "hhR1cm46c2l0ZXN5bmM6c2l0ZTpzMTAKBggqhkjOPQQDAgNJADBGAiEA96THd2YC\n"
    "De5XTeu2znvR5fBlZKJ9hsQlzMCE+DZtFo0CIQCnwbtqXxHU4Ta4mO1XhNOwg1Ng\n"
    "FZElQE0wt13dYyDBvg==\n"
    "-----END CERTIFICATE-----\n";
static const char PEM_GW1_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgHvbyS+XIByqeC+ZO\n"
    "6sRLmmUfPSfSi5X7CcteKuNsyHyhRANCAATQwcILLEQkTodE+6SlmOSKticM5heH\n"
    "j5+JN1VkQB5DFxzHj07gsERN5fao/9/cR1sWdE1XGykILDEQ+7YwKlVV\n"
    "-----END PRIVATE KEY-----\n";
static const char PEM_GW2_CRT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIICGTCCAb6gAwIBAgIQb9CMSnVH/tNqnoeGunnFgTAKBggqhkjOPQQDAjAsMRQw\n"
    "EgYDVQQKDAtzaXRlc3luYyBDQTEUMBIGA1UEAwwLc2l0ZXN5bmMgQ0EwHhcNMjYx\n"
    "MjA0MTYzOTU5WhcNNDYxMTI5MTczOTU5WjAkMRQwEgYDVQQKDAtzaXRlc3luYyBD\n"
    "QTEMMAoGA1UEAwwDZ3cyMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEgSdTriJN\n"
    "QDEcCftyXemyDel7Z2BcalUd7HoJqLoY9jDxQkLbON+8fxCADQt2WoPorNJGkbsj\n"
    "Oe996/A/xvOgkKOByTCBxjAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQEAwIHgDAT\n"
    "BgNVHSUEDDAKBggrBgEFBQcDAjAdBgNVHQ4EFgQU0ihWrv8wWm2yfj8KgC1QZpsy\n"
    "YF0wHwYDVR0jBBgwFoAUhM9d4zinHEzfZh0dkHBzXcsEX5YwUQYDVR0RBEowSIYV\n"
    "dXJuOnNpdGVzeW5jOm5vZGU6Z3cyhhl1cm46c2l0ZXN5bmM6cm9sZTpnYXRld2F5\n"
    "hhR1cm46c2l0ZXN5bmM6c2l0ZTpzMjAKBggqhkjOPQQDAgNJADBGAiEAyGaUYbsL\n"
    "7dffMPOcGQLSJwADoRjSa7z9M5r0HOdJ/N4CIQDl/QbmXo3avZIxCEGuDrbhi1IN\n"
    "BVx1sFoh2p4oeci5ag==\n"
    "-----END CERTIFICATE-----\n";
static const char PEM_GW2_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgfbQVsNsqK8XjXSJ5\n"
    "sBFh66Ol/X0Hxw9VUhnFqIN7qyWhRANCAASBJ1OuIk1AMRwJ+3Jd6bIN6XtnYFxq\n"
    "VR3segmouhj2MPFCQts437x/EIANC3Zag+is0kaRuyM5733r8D/G86CQ\n"
    "-----END PRIVATE KEY-----\n";
static const char PEM_HUB1_CRT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIICIjCCAcigAwIBAgIQCT+pGaTUwApjUJmKuyXIqjAKBggqhkjOPQQDAjAsMRQw\n"
    "EgYDVQQKDAtzaXRlc3luYyBDQTEUMBIGA1UEAwwLc2l0ZXN5bmMgQ0EwHhcNMjYx\n"
    "MjA0MTYzOTU5WhcNNDYxMTI5MTczOTU5WjAlMRQwEgYDVQQKDAtzaXRlc3luYyBD\n"
    "QTENMAsGA1UEAwwEaHViMTBZMBMGByqGSM49AgEGCCqGSM49AwEHA0IABG+r2NpB\n"
    "cAUYNFdyBJ6SQimxg6x7I5lm5s1SAJuflljwGgg1+rlIXyzFBnJHfDXPE8N8VQ8O\n"
    "rUnYTZ35qqvgH7WjgdIwgc8wDAYDVR0TAQH/BAIwADAOBgNVHQ8BAf8EBAMCB4Aw\n"
    "HQYDVR0lBBYwFAYIKwYBBQUHAwEGCCsGAQUFBwMCMB0GA1UdDgQWBBRU+v/WYWXx\n"
    "cl7v0Y9jZr2leNvRazAfBgNVHSMEGDAWgBSEz13jOKccTN9mHR2QcHNdywRfljBQ\n"
    "BgNVHREESTBHhhZ1cm46c2l0ZXN5bmM6bm9kZTpodWIxhhd1cm46c2l0ZXN5bmM6\n"
    "cm9sZTpyZWxheYYUdXJuOnNpdGVzeW5jOnNpdGU6czEwCgYIKoZIzj0EAwIDSAAw\n"
    "RQIgfDvYfJZJByWY7ZbtyQwh0B9gED3NMv+8De4JrkIWXU4CIQC05uwWQsOokd0Z\n"
    "WuTMw50H7iGNfw/HkFq1qk3W+atcQA==\n"
    "-----END CERTIFICATE-----\n";
static const char PEM_HUB1_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgLO+Rae4OthbmyaZV\n"
    "tWXFydi7LMEYtwU49vHU72kd+SmhRANCAARvq9jaQXAFGDRXcgSekkIpsYOseyOZ\n"
    "ZubNUgCbn5ZY8BoINfq5SF8sxQZyR3w1zxPDfFUPDq1J2E2d+aqr4B+1\n"
    "-----END PRIVATE KEY-----\n";
static const char PEM_OGW1_CRT[] =
    "-----BEGIN CERTIFICATE-----\n"
    "MIICGTCCAb6gAwIBAgIQX6l3bRuSrXRpEY7y5txzMzAKBggqhkjOPQQDAjAsMRQw\n"
    "EgYDVQQKDAtzaXRlc3luYyBDQTEUMBIGA1UEAwwLc2l0ZXN5bmMgQ0EwHhcNMjYx\n"
    "MjA0MTY0MDAyWhcNNDYwMjAyMTc0MDAyWjAkMRQwEgYDVQQKDAtzaXRlc3luYyBD\n"
    "QTEMMAoGA1UEAwwDZ3cxMFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEYKA37Up7\n"
    "Dh3Gr9xTV/nOFRFIVVjOdTbTNHy22XG4bD8tt3mJMvL25fcIihYLMGG2nHWB4hU8\n"
    "pgTex6xUtQMbS6OByTCBxjAMBgNVHRMBAf8EAjAAMA4GA1UdDwEB/wQEAwIHgDAT\n"
    "BgNVHSUEDDAKBggrBgEFBQcDAjAdBgNVHQ4EFgQUBDpJXTfsbQmJuWKEmlW/du1O\n"
    "f98wHwYDVR0jBBgwFoAUE/yaxJPJiiGU3k8BkrjAWRKK92owUQYDVR0RBEowSIYV\n"
    "dXJuOnNpdGVzeW5jOm5vZGU6Z3cxhhl1cm46c2l0ZXN5bmM6cm9sZTpnYXRld2F5\n"
    "hhR1cm46c2l0ZXN5bmM6c2l0ZTpzMTAKBggqhkjOPQQDAgNJADBGAiEA+TnQNRIA\n"
    "Ayc4YZ5/hjJxbHfqke6IZc3ASYlxKva1NA4CIQCWqlBs2+5GhG3ZkBLTD//D+/U/\n"
    "pq2t1zGUEVFED/oFng==\n"
    "-----END CERTIFICATE-----\n";
static const char PEM_OGW1_KEY[] =
    "-----BEGIN PRIVATE KEY-----\n"
    "MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQghNtogClo73bz5Q9E\n"
    "3N8xGwhbtoyLco//qIoLxYRq9dyhRANCAARgoDftSnsOHcav3FNX+c4VEUhVWM51\n"
    "NtM0fLbZcbhsPy23eYky8vbl9wiKFgswYbacdYHiFTymBN7HrFS1AxtL\n"
    "-----END PRIVATE KEY-----\n";

typedef struct signer {
    const char *name;
    const char *cert_pem, *key_pem;
    EVP_PKEY *key;
    uint8_t *der;
    int der_len;
    int expect; /* verdict for an unmutated envelope of its own origin */
} signer;

/* The verifiers, keys and certificates are made once: libFuzzer targets have
 * no main() to own them, and a PKI per input would spend the run in setup. */
static struct {
    SSL_CTX *ctx;
    sd_sig *cached, *uncached;
    signer s[NSIGNERS];
} st;

static const char *const origins[4] = { "gw1", "gw2", "hub1", "gw9" };

static void write_file(const char *dir, const char *name, const char *text)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    ASSERT(fd >= 0);
    size_t n = strlen(text);
    ASSERT(write(fd, text, n) == (ssize_t)n);
    close(fd);
}

static EVP_PKEY *load_key(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    ASSERT(b != NULL);
    EVP_PKEY *k = PEM_read_bio_PrivateKey(b, NULL, NULL, NULL);
    BIO_free(b);
    ASSERT(k != NULL);
    return k;
}

static X509 *load_cert(const char *pem)
{
    BIO *b = BIO_new_mem_buf(pem, -1);
    ASSERT(b != NULL);
    X509 *x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    ASSERT(x != NULL);
    return x;
}

/* Builds the signed envelope of signer s for origin with body; returns its
 * length in out[cap] and the signed region's length in *signed_len. */
static size_t build(const signer *s, const char *origin, uint64_t first, const uint8_t *body,
                    size_t body_len, uint8_t *out, size_t cap, size_t *signed_len)
{
    int h = ss_envelope_write_header(out, cap, origin, first, 1, (uint32_t)body_len,
                                     SS_ENV_FLAG_SIGNED);
    ASSERT(h > 0);
    ASSERT((size_t)h + body_len + 4096 <= cap);
    memcpy(out + h, body, body_len);
    size_t sl = (size_t)h + body_len;
    uint8_t sig[128];
    size_t sig_len = sizeof sig;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ASSERT(md != NULL);
    ASSERT_EQ(EVP_DigestSignInit(md, NULL, EVP_sha256(), NULL, s->key), 1);
    ASSERT_EQ(EVP_DigestSign(md, sig, &sig_len, out, sl), 1);
    EVP_MD_CTX_free(md);
    int t = ss_sig_write_trailer(out + sl, cap - sl, s->der, (size_t)s->der_len, sig, sig_len);
    ASSERT(t > 0);
    *signed_len = sl;
    return sl + (size_t)t;
}

/* An accepted envelope, checked without the daemon's code: the certificate
 * in its block is gw1's (the only valid gateway of this PKI: the fuzzer
 * cannot mint CA signatures), the signature verifies under its key over the
 * signed region, and the origin is the certificate's node. */
static void check_accepted(const ss_envelope *env, const sd_sig_result *res)
{
    ss_sig sig;
    ASSERT_EQ(ss_sig_parse(env, &sig), 0);
    ASSERT_EQ(sig.cert_len, st.s[0].der_len);
    ASSERT(memcmp(sig.cert, st.s[0].der, sig.cert_len) == 0);
    const unsigned char *p = sig.cert;
    X509 *x = d2i_X509(NULL, &p, sig.cert_len);
    ASSERT(x != NULL);
    EVP_PKEY *pub = X509_get0_pubkey(x);
    ASSERT(pub != NULL);
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    ASSERT(md != NULL);
    ASSERT_EQ(EVP_DigestVerifyInit(md, NULL, EVP_sha256(), NULL, pub), 1);
    ASSERT_EQ(EVP_DigestVerify(md, sig.sig, sig.sig_len, env->signed_bytes, env->signed_len), 1);
    EVP_MD_CTX_free(md);
    X509_free(x);
    ASSERT_STR_EQ(env->origin, "gw1");
    ASSERT_STR_EQ(res->origin.node, "gw1");
    ASSERT_EQ(res->origin.role, SS_ROLE_GATEWAY);
}

/* Verifies buf; returns the verdict (or 1 if the envelope does not parse)
 * after checking the result's contract. */
static int verify(sd_sig *v, const uint8_t *buf, size_t len, int64_t now, ss_envelope *env)
{
    if (ss_envelope_parse(buf, len, env) != 0)
        return 1;
    static sd_sig_result res; /* 4 KiB identity: keep it off the stack */
    memset(&res, 0xA5, sizeof res);
    int rc = sd_sig_verify(v, env, now, &res);
    if (rc == 0) {
        check_accepted(env, &res);
        return 0;
    }
    ASSERT(rc == SS_ESIG || rc == SS_ECERT || rc == SS_EREVOKED);
    ASSERT(memchr(res.reason, '\0', sizeof res.reason) != NULL);
    ASSERT(res.reason[0] != '\0');
    return rc;
}

static void mutate(uint8_t *buf, size_t *len, size_t cap, const uint8_t m[4])
{
    size_t pos = ((size_t)m[1] << 8 | m[2]);
    uint8_t val = m[3];
    switch (m[0] % 6) {
    case 0: /* flip bits: always a different byte */
        if (*len)
            buf[pos % *len] ^= (uint8_t)(val | 1);
        break;
    case 1:
        if (*len)
            buf[pos % *len] = val;
        break;
    case 2: /* insert */
        if (*len < cap) {
            pos %= *len + 1;
            memmove(buf + pos + 1, buf + pos, *len - pos);
            buf[pos] = val;
            (*len)++;
        }
        break;
    case 3: /* delete */
        if (*len) {
            pos %= *len;
            memmove(buf + pos, buf + pos + 1, *len - pos - 1);
            (*len)--;
        }
        break;
    case 4: /* truncate */
        if (*len)
            *len = pos % *len;
        break;
    default: /* append */
        if (*len < cap)
            buf[(*len)++] = val;
        break;
    }
}

static void build_case(sd_sig *v, int64_t now, const uint8_t *data, size_t size)
{
    if (size < 4)
        return;
    const signer *s = &st.s[data[1] % NSIGNERS];
    const char *origin = origins[data[2] % 4];
    unsigned nmut = data[3] % 8;
    if (size < 4 + 4u * nmut)
        return;
    const uint8_t *muts = data + 4;
    const uint8_t *body = data + 4 + 4u * nmut;
    size_t body_len = size - 4 - 4u * nmut;
    if (body_len > 2048)
        body_len = 2048;
    static uint8_t orig[MAX_ENV], buf[MAX_ENV + 16];
    size_t sl;
    size_t len = build(s, origin, 1 + (data[1] >> 4), body, body_len, orig, sizeof orig, &sl);
    memcpy(buf, orig, len);
    for (unsigned i = 0; i < nmut; i++)
        mutate(buf, &len, sizeof buf, muts + 4 * i);
    ss_envelope env;
    int rc = verify(v, buf, len, now, &env);
    int genuine = s == &st.s[0] && strcmp(origin, "gw1") == 0;
    if (rc == 0) {
        /* Accepted: only gw1's own envelope, its signed bytes unchanged
         * (a bent signature encoding may still verify: ECDSA signatures are
         * not unique, the signed message is). */
        ASSERT(genuine);
        ASSERT_EQ(env.signed_len, sl);
        ASSERT(memcmp(env.signed_bytes, orig, sl) == 0);
    }
    if (nmut == 0) {
        int want = now == NOW_MS ? s->expect : SS_ECERT;
        if (want == 0 && !genuine)
            want = SS_ECERT; /* gw1's certificate speaking for another node */
        /* A revoked verdict is cached whatever the receive time: out of
         * the validity period gw2 may get either refusal. */
        if (s->expect == SS_EREVOKED && want == SS_ECERT && rc == SS_EREVOKED)
            want = rc;
        ASSERT_EQ(rc, want);
    }
}

static void write_seed(const char *dir, const char *name, const uint8_t *p, size_t n)
{
    char path[512];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    ASSERT(f != NULL);
    ASSERT_EQ(fwrite(p, 1, n, f), n);
    ASSERT_EQ(fclose(f), 0);
}

static void make_seeds(const char *dir)
{
    static const char body[] = "[{\"seq\":1,\"hlc\":\"1798761600000.0\",\"op\":\"update\","
                               "\"coll\":\"site_status\",\"key\":\"s1\",\"site\":\"s1\","
                               "\"fields\":{\"note\":\"fuzz\"}}]";
    static uint8_t env[MAX_ENV], in[MAX_ENV + 8];
    char name[64];
    for (int i = 0; i < NSIGNERS; i++) {
        for (int o = 0; o < 2; o++) {
            size_t sl;
            size_t n = build(&st.s[i], o ? st.s[i].name : "gw1", 1, (const uint8_t *)body,
                             strlen(body), env, sizeof env, &sl);
            in[0] = 0; /* raw */
            memcpy(in + 1, env, n);
            snprintf(name, sizeof name, "raw_%s_as_%s", st.s[i].name, o ? st.s[i].name : "gw1");
            write_seed(dir, name, in, n + 1);
            /* the same as a build input, unmutated and with one flip */
            int oi = 0;
            for (int k = 0; k < 4; k++)
                if (strcmp(origins[k], o ? st.s[i].name : "gw1") == 0)
                    oi = k;
            for (int m = 0; m < 2; m++) {
                size_t p = 0;
                in[p++] = 1;
                in[p++] = (uint8_t)i;
                in[p++] = (uint8_t)oi;
                in[p++] = (uint8_t)m;
                if (m) {
                    in[p++] = 0;
                    in[p++] = 0;
                    in[p++] = 30;
                    in[p++] = 0x20;
                }
                memcpy(in + p, body, strlen(body));
                p += strlen(body);
                snprintf(name, sizeof name, "build_%s_as_%s_mut%d", st.s[i].name,
                         o ? st.s[i].name : "gw1", m);
                write_seed(dir, name, in, p);
            }
        }
    }
    /* gw1's genuine envelope with its signature block bent: the signature's
     * DER high-s twin would verify, these must not. */
    size_t sl;
    size_t n = build(&st.s[0], "gw1", 7, (const uint8_t *)body, strlen(body), env, sizeof env, &sl);
    in[0] = 0;
    memcpy(in + 1, env, n);
    in[1 + n - 3] ^= 0x01; /* last bytes of the signature */
    write_seed(dir, "raw_gw1_sig_flipped", in, n + 1);
    memcpy(in + 1, env, n);
    in[1 + sl + 10] ^= 0x40; /* inside the certificate */
    write_seed(dir, "raw_gw1_cert_flipped", in, n + 1);
    memcpy(in + 1, env, n);
    in[1 + 2] ^= 0x01; /* origin byte in the signed header */
    write_seed(dir, "raw_gw1_origin_flipped", in, n + 1);
    /* unsigned */
    int h = ss_envelope_write_header(env, sizeof env, "gw1", 1, 1, (uint32_t)strlen(body), 0);
    ASSERT(h > 0);
    memcpy(env + h, body, strlen(body));
    in[0] = 0;
    memcpy(in + 1, env, (size_t)h + strlen(body));
    write_seed(dir, "raw_unsigned", in, 1 + (size_t)h + strlen(body));
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char dir[] = "/tmp/fuzz_sig.XXXXXX";
    ASSERT(mkdtemp(dir) != NULL);
    write_file(dir, "ca.crt", PEM_CA_CRT);
    write_file(dir, "crl.pem", PEM_CRL_PEM);
    write_file(dir, "central.crt", PEM_CENTRAL_CRT);
    write_file(dir, "central.key", PEM_CENTRAL_KEY);
    char ca[600], crl[600], cert[600], key[600], err[512];
    snprintf(ca, sizeof ca, "%s/ca.crt", dir);
    snprintf(crl, sizeof crl, "%s/crl.pem", dir);
    snprintf(cert, sizeof cert, "%s/central.crt", dir);
    snprintf(key, sizeof key, "%s/central.key", dir);
    int rc = sd_tls_ctx_new(ca, crl, cert, key, &st.ctx, err, sizeof err);
    if (rc != 0)
        SS_TEST_FAIL("trust store: %s", err);
    unlink(ca);
    unlink(crl);
    unlink(cert);
    unlink(key);
    rmdir(dir);
    ASSERT_EQ(sd_sig_new(4, &st.cached), 0);
    ASSERT_EQ(sd_sig_new(0, &st.uncached), 0);
    ASSERT_EQ(sd_sig_set_store(st.cached, SSL_CTX_get_cert_store(st.ctx)), 0);
    ASSERT_EQ(sd_sig_set_store(st.uncached, SSL_CTX_get_cert_store(st.ctx)), 0);
    const struct {
        const char *name, *crt, *key;
        int expect;
    } t[NSIGNERS] = {
        { "gw1", PEM_GW1_CRT, PEM_GW1_KEY, 0 },
        { "gw2", PEM_GW2_CRT, PEM_GW2_KEY, SS_EREVOKED },
        { "hub1", PEM_HUB1_CRT, PEM_HUB1_KEY, SS_ECERT },
        { "ogw1", PEM_OGW1_CRT, PEM_OGW1_KEY, SS_ECERT },
        { "central", PEM_CENTRAL_CRT, PEM_CENTRAL_KEY, SS_ECERT },
    };
    for (int i = 0; i < NSIGNERS; i++) {
        signer *s = &st.s[i];
        s->name = t[i].name;
        s->expect = t[i].expect;
        s->key = load_key(t[i].key);
        X509 *x = load_cert(t[i].crt);
        s->der = NULL;
        s->der_len = i2d_X509(x, &s->der);
        ASSERT(s->der_len > 0);
        X509_free(x);
    }
    const char *seeds = getenv("SITESYNC_FUZZ_SIG_SEEDS");
    if (seeds != NULL && seeds[0] != '\0') {
        make_seeds(seeds);
        exit(0);
    }
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    static const int64_t times[4] = { NOW_MS, BEFORE_MS, AFTER_MS, NOW_MS };
    int64_t now = times[(data[0] >> 2) & 3];
    sd_sig *v = (data[0] & 2) ? st.uncached : st.cached;
    if (data[0] & 1) {
        build_case(v, now, data, size);
    } else if (size - 1 <= MAX_ENV) {
        ss_envelope env;
        int rc = verify(v, data + 1, size - 1, now, &env);
        if (rc == 0)
            ASSERT_EQ(now, NOW_MS);
    }
    return 0;
}

/* fuzz_cert_ident.c - libFuzzer target for the daemon's certificate identity
 * extraction (sd_tls_cert_ident, sd_tls_cert_fingerprint), which also runs
 * on the unverified leaf inside the verify callback, so its input is
 * attacker-chosen DER, and the clientAuth check (sd_tls_cert_client_eku)
 * that every peer certificate must pass. An input starting with 0x30 (an ASN.1 SEQUENCE) is a
 * whole DER certificate. Any other first byte makes a certificate from the
 * rest: records [type][len][bytes] become subjectAltName entries (URI, DNS,
 * email, IP; bit 7 of type puts the entry into a second SAN extension), bits
 * 0 and 1 of the first byte add clientAuth and serverAuth to an
 * extendedKeyUsage extension, and the certificate is signed, encoded and parsed back with d2i_X509,
 * so the fuzzer reaches the URI rules without having to keep DER lengths consistent. The identity
 * must match the independent model in ident_model.h. */
// fuzz-link: sd
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "ident_model.h"
#include "proto/err.h"
#include "proto/ident.h"
#include "sd/tls.h"
#include "ss_test.h"

int LLVMFuzzerInitialize(int *argc, char ***argv);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* One signing key for every synthesised certificate: generating a key per
 * input would spend most of the run in key generation. libFuzzer targets
 * have no main(), so it lives here, set once before the first input. */
static EVP_PKEY *sign_key;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    sign_key = EVP_EC_gen("P-256");
    ASSERT(sign_key != NULL);
    return 0;
}

static int is_lower_hex(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    }
    return 1;
}

static void check_fingerprint(X509 *x)
{
    char fp[65], serial[41];
    memset(fp, 'X', sizeof(fp));
    memset(serial, 'X', sizeof(serial));
    int rc = sd_tls_cert_fingerprint(x, fp, serial);
    if (rc != 0) {
        ASSERT_EQ(rc, SS_EINTERNAL);
        return;
    }
    ASSERT(fp[64] == '\0' && strlen(fp) == 64 && is_lower_hex(fp, 64));
    size_t sl = strnlen(serial, sizeof(serial));
    ASSERT(sl < sizeof(serial) && sl % 2 == 0 && is_lower_hex(serial, sl));

    /* The fingerprint is the SHA-256 of the certificate's DER encoding. */
    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    ASSERT_GT(len, 0);
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    ASSERT_EQ(EVP_Digest(der, (size_t)len, md, &mdlen, EVP_sha256(), NULL), 1);
    OPENSSL_free(der);
    ASSERT_EQ(mdlen, 32);
    static const char hex[] = "0123456789abcdef";
    for (unsigned i = 0; i < 32; i++)
        ASSERT(fp[2 * i] == hex[md[i] >> 4] && fp[2 * i + 1] == hex[md[i] & 15]);
}

/* The identity sd_tls_cert_ident finds agrees with the model fed the same SAN
 * URIs; a certificate with no (or more than one) SAN extension has none. */
static void check_ident(X509 *x)
{
    ss_ident id;
    int rc = sd_tls_cert_ident(x, &id);
    ASSERT(rc == 0 || rc == SS_EIDENT);

    int nsan = 0;
    for (int at = -1; (at = X509_get_ext_by_NID(x, NID_subject_alt_name, at)) >= 0;)
        nsan++;
    int crit = 0;
    GENERAL_NAMES *gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    if (!gens) {
        ASSERT_EQ(rc, SS_EIDENT);
        return;
    }
    ASSERT_EQ(nsan, 1);

    model_ident m;
    memset(&m, 0, sizeof(m));
    for (int i = 0; i < sk_GENERAL_NAME_num(gens) && !m.bad; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_URI)
            continue;
        const ASN1_IA5STRING *s = g->d.uniformResourceIdentifier;
        (void)model_add(&m, (const char *)ASN1_STRING_get0_data(s), (size_t)ASN1_STRING_length(s));
    }
    GENERAL_NAMES_free(gens);

    ASSERT_EQ(rc, model_finish(&m) == 0 ? 0 : SS_EIDENT);
    if (rc == 0) {
        model_expect_same(&m, &id);
        model_expect_uri_roundtrip(&id);
    }
}

/* clientAuth is granted only by an extendedKeyUsage extension that names
 * it: never by its absence ("any purpose" to OpenSSL), never by serverAuth.
 * On a certificate OpenSSL flags invalid (a duplicate extension, say) the
 * answer may be 0 but never 1 without clientAuth; X509_verify_cert refuses
 * such a certificate anyway. */
static void check_eku(X509 *x)
{
    int got = sd_tls_cert_client_eku(x);
    ASSERT(got == 0 || got == 1);
    int invalid = (X509_get_extension_flags(x) & EXFLAG_INVALID) != 0;
    int crit = 0, want = 0;
    EXTENDED_KEY_USAGE *eku = X509_get_ext_d2i(x, NID_ext_key_usage, &crit, NULL);
    if (eku) {
        for (int i = 0; i < sk_ASN1_OBJECT_num(eku); i++)
            want |= OBJ_obj2nid(sk_ASN1_OBJECT_value(eku, i)) == NID_client_auth;
        EXTENDED_KEY_USAGE_free(eku);
    } else if (crit != -1) {
        /* Repeated or undecodable: an EKU nobody can read grants nothing. */
        ASSERT_EQ(got, 0);
        return;
    }
    if (invalid)
        ASSERT(got == 0 || want == 1);
    else
        ASSERT_EQ(got, want);
}

static void check_der(const uint8_t *der, size_t size)
{
    if (size > INT32_MAX)
        return;
    const unsigned char *p = der;
    X509 *x = d2i_X509(NULL, &p, (long)size);
    if (!x)
        return;
    ASSERT(p > der && p <= der + size);
    check_ident(x);
    check_eku(x);
    check_fingerprint(x);
    X509_free(x);
}

/* Adds one SAN entry of the given kind with the bytes as they are (OpenSSL
 * encodes any IA5String or IP octets without checking them, like a hostile
 * CA would). */
static void add_name(GENERAL_NAMES *gens, unsigned kind, const uint8_t *b, size_t n)
{
    static const int types[] = { GEN_URI, GEN_DNS, GEN_EMAIL, GEN_IPADD };
    GENERAL_NAME *g = GENERAL_NAME_new();
    ASN1_STRING *s = types[kind] == GEN_IPADD ? ASN1_OCTET_STRING_new() : ASN1_IA5STRING_new();
    ASSERT(g != NULL && s != NULL);
    ASSERT_EQ(ASN1_STRING_set(s, b, (int)n), 1);
    GENERAL_NAME_set0_value(g, types[kind], s);
    ASSERT_GT(sk_GENERAL_NAME_push(gens, g), 0);
}

static void add_eku(X509 *x, uint8_t bits)
{
    EXTENDED_KEY_USAGE *eku = sk_ASN1_OBJECT_new_null();
    ASSERT(eku != NULL);
    if (bits & 1)
        ASSERT_GT(sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_client_auth)), 0);
    if (bits & 2)
        ASSERT_GT(sk_ASN1_OBJECT_push(eku, OBJ_nid2obj(NID_server_auth)), 0);
    ASSERT_EQ(X509_add1_ext_i2d(x, NID_ext_key_usage, eku, 0, X509V3_ADD_APPEND), 1);
    sk_ASN1_OBJECT_free(eku); /* the objects are static */
}

static void check_synthesised(uint8_t mode, const uint8_t *data, size_t size)
{
    GENERAL_NAMES *san[2] = { GENERAL_NAMES_new(), GENERAL_NAMES_new() };
    X509 *x = X509_new();
    X509_NAME *name = X509_NAME_new();
    ASSERT(san[0] != NULL && san[1] != NULL && x != NULL && name != NULL);

    size_t pos = 0;
    while (pos + 2 <= size) {
        uint8_t type = data[pos];
        size_t n = data[pos + 1];
        pos += 2;
        if (n > size - pos)
            n = size - pos;
        add_name(san[type >> 7], type & 3u, data + pos, n);
        pos += n;
    }

    ASSERT_EQ(X509_set_version(x, 2), 1);
    ASSERT_EQ(ASN1_INTEGER_set(X509_get_serialNumber(x), (long)size + 1), 1);
    ASSERT_EQ(X509_NAME_add_entry_by_txt(name, "CN", MBSTRING_ASC, (const unsigned char *)"fuzz",
                                         -1, -1, 0),
              1);
    ASSERT_EQ(X509_set_subject_name(x, name), 1);
    ASSERT_EQ(X509_set_issuer_name(x, name), 1);
    ASSERT(X509_gmtime_adj(X509_getm_notBefore(x), 0) != NULL);
    ASSERT(X509_gmtime_adj(X509_getm_notAfter(x), 3600) != NULL);
    ASSERT_EQ(X509_set_pubkey(x, sign_key), 1);
    for (int k = 0; k < 2; k++) {
        if (sk_GENERAL_NAME_num(san[k]) > 0)
            ASSERT_EQ(X509_add1_ext_i2d(x, NID_subject_alt_name, san[k], 0, X509V3_ADD_APPEND), 1);
    }
    if (mode & 3)
        add_eku(x, mode & 3);
    ASSERT_GT(X509_sign(x, sign_key, EVP_sha256()), 0);

    unsigned char *der = NULL;
    int len = i2d_X509(x, &der);
    ASSERT_GT(len, 0);
    check_der(der, (size_t)len);

    OPENSSL_free(der);
    X509_free(x);
    X509_NAME_free(name);
    GENERAL_NAMES_free(san[0]);
    GENERAL_NAMES_free(san[1]);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1)
        return 0;
    if (data[0] == 0x30)
        check_der(data, size);
    else
        check_synthesised(data[0], data + 1, size - 1);
    return 0;
}

/* sd_tls.c - OpenSSL server context, memory-BIO sessions and certificate
 * identities for sitesyncd (see sd/tls.h). */
#include "sd/tls.h"

#include <stdio.h>
#include <string.h>

#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proto/err.h"

const char *sd_tls_errors(char *err, size_t errcap)
{
    size_t pos = 0;
    unsigned long e;
    if (errcap)
        err[0] = '\0';
    while ((e = ERR_get_error()) != 0) {
        char one[256];
        ERR_error_string_n(e, one, sizeof one);
        if (errcap && pos + 3 < errcap) {
            int n = snprintf(err + pos, errcap - pos, "%s%s", pos ? "; " : "", one);
            if (n > 0)
                pos += (size_t)n < errcap - pos ? (size_t)n : errcap - pos - 1;
        }
    }
    return err;
}

static int load_crls(X509_STORE *store, const char *path, char *err, size_t errcap)
{
    BIO *in = BIO_new_file(path, "r");
    int n = 0;
    if (!in) {
        snprintf(err, errcap, "crl %s: cannot open", path);
        ERR_clear_error();
        return SS_EIO;
    }
    for (;;) {
        X509_CRL *crl = PEM_read_bio_X509_CRL(in, NULL, NULL, NULL);
        if (!crl)
            break;
        int ok = X509_STORE_add_crl(store, crl);
        X509_CRL_free(crl);
        if (!ok) {
            char e[256];
            snprintf(err, errcap, "crl %s: %s", path, sd_tls_errors(e, sizeof e));
            BIO_free(in);
            return SS_ECERT;
        }
        n++;
    }
    BIO_free(in);
    ERR_clear_error(); /* the loop ends on "no start line" */
    if (n == 0) {
        snprintf(err, errcap, "crl %s: no PEM CRL found", path);
        return SS_ECERT;
    }
    return 0;
}

int sd_tls_cert_client_eku(X509 *cert)
{
    /* X509_PURPOSE_SSL_CLIENT alone accepts a leaf with no EKU extension at
     * all ("any purpose"). sitesync-pki always writes one, so a client
     * certificate must name clientAuth explicitly: a daemon certificate
     * (serverAuth only), or a leaf made by other means for another purpose,
     * cannot be used to connect as a peer. */
    uint32_t flags = X509_get_extension_flags(cert);
    return (flags & EXFLAG_XKUSAGE) && (X509_get_extended_key_usage(cert) & XKU_SSL_CLIENT);
}

/* Records why a peer certificate failed so the daemon can log and audit it:
 * OpenSSL drops the peer certificate when verification fails. */
static int verify_cb(int ok, X509_STORE_CTX *sctx)
{
    if (ok && X509_STORE_CTX_get_error_depth(sctx) == 0 &&
        !sd_tls_cert_client_eku(X509_STORE_CTX_get_current_cert(sctx))) {
        X509_STORE_CTX_set_error(sctx, X509_V_ERR_INVALID_PURPOSE);
        ok = 0;
    }
    if (ok)
        return ok;
    SSL *ssl = X509_STORE_CTX_get_ex_data(sctx, SSL_get_ex_data_X509_STORE_CTX_idx());
    sd_tls_conn *t = ssl ? SSL_get_app_data(ssl) : NULL;
    if (t && t->fail.verify_err == 0) {
        t->fail.verify_err = X509_STORE_CTX_get_error(sctx);
        X509 *leaf = X509_STORE_CTX_get0_cert(sctx);
        if (leaf && sd_tls_cert_fingerprint(leaf, t->fail.fingerprint, t->fail.serial) == 0) {
            ss_ident id;
            t->fail.have_cert = 1;
            if (sd_tls_cert_ident(leaf, &id) == 0)
                memcpy(t->fail.node, id.node, sizeof t->fail.node);
        }
    }
    return ok;
}

int sd_tls_ctx_new(const char *ca, const char *crl, const char *cert, const char *key,
                   SSL_CTX **out, char *err, size_t errcap)
{
    char e[512];
    int rc = SS_ECERT;
    STACK_OF(X509_NAME) *names = NULL;
    SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
    if (!ctx) {
        snprintf(err, errcap, "SSL_CTX_new: %s", sd_tls_errors(e, sizeof e));
        return SS_ENOMEM;
    }
    /* TLS 1.2 only with ECDHE + AEAD, or TLS 1.3 (all of its suites are
     * ECDHE/AEAD). */
    if (!SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION) ||
        !SSL_CTX_set_cipher_list(ctx, SD_TLS_CIPHERS) ||
        !SSL_CTX_set_ciphersuites(ctx, SD_TLS_CIPHERSUITES)) {
        snprintf(err, errcap, "tls parameters: %s", sd_tls_errors(e, sizeof e));
        goto exit;
    }
    /* No renegotiation or compression; no session resumption either: a
     * resumed session skips certificate verification, so a certificate
     * revoked since its first handshake could come back through a ticket.
     * Our order otherwise, but ChaCha20-Poly1305 for a client that lists it
     * first: mbed TLS gateways do, because it is their cheaper cipher. */
    SSL_CTX_set_options(ctx, SSL_OP_NO_RENEGOTIATION | SSL_OP_NO_COMPRESSION |
                                 SSL_OP_CIPHER_SERVER_PREFERENCE | SSL_OP_PRIORITIZE_CHACHA |
                                 SSL_OP_NO_TICKET);
    SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
    SSL_CTX_set_num_tickets(ctx, 0);
    /* Partial writes let the loop hand OpenSSL whole frames without retry
     * bookkeeping; memory BIOs never refuse a write anyway. */
    SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_RELEASE_BUFFERS);

    if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1) {
        snprintf(err, errcap, "cert %s: %s", cert, sd_tls_errors(e, sizeof e));
        goto exit;
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1) {
        snprintf(err, errcap, "key %s: %s", key, sd_tls_errors(e, sizeof e));
        goto exit;
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
        snprintf(err, errcap, "key %s does not match cert %s", key, cert);
        ERR_clear_error();
        goto exit;
    }
    if (SSL_CTX_load_verify_locations(ctx, ca, NULL) != 1) {
        snprintf(err, errcap, "ca %s: %s", ca, sd_tls_errors(e, sizeof e));
        goto exit;
    }
    names = SSL_load_client_CA_file(ca);
    if (!names) {
        snprintf(err, errcap, "ca %s: no certificate", ca);
        ERR_clear_error();
        goto exit;
    }
    SSL_CTX_set_client_CA_list(ctx, names);
    X509_STORE *store = SSL_CTX_get_cert_store(ctx);
    rc = load_crls(store, crl, err, errcap);
    if (rc != 0)
        goto exit;
    rc = SS_ECERT;
    X509_STORE_set_flags(store, X509_V_FLAG_CRL_CHECK);
    X509_VERIFY_PARAM_set_flags(SSL_CTX_get0_param(ctx), X509_V_FLAG_CRL_CHECK);
    X509_VERIFY_PARAM_set_purpose(SSL_CTX_get0_param(ctx), X509_PURPOSE_SSL_CLIENT);
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER | SSL_VERIFY_FAIL_IF_NO_PEER_CERT, verify_cb);
    SSL_CTX_set_verify_depth(ctx, 4);

    ss_ident self;
    X509 *own = SSL_CTX_get0_certificate(ctx);
    if (!own || sd_tls_cert_ident(own, &self) != 0 || self.role != SS_ROLE_DAEMON) {
        snprintf(err, errcap,
                 "cert %s: not a sitesync daemon certificate (needs urn:sitesync:node and "
                 "urn:sitesync:role:daemon SAN URIs)",
                 cert);
        rc = SS_EIDENT;
        goto exit;
    }
    *out = ctx;
    return 0;
exit:
    SSL_CTX_free(ctx);
    return rc;
}

int sd_tls_cert_ident(X509 *cert, ss_ident *id)
{
    ss_ident_init(id);
    GENERAL_NAMES *gens = X509_get_ext_d2i(cert, NID_subject_alt_name, NULL, NULL);
    if (!gens)
        return SS_EIDENT;
    int rc = 0;
    for (int i = 0; i < sk_GENERAL_NAME_num(gens) && rc == 0; i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        if (g->type != GEN_URI)
            continue;
        const ASN1_IA5STRING *s = g->d.uniformResourceIdentifier;
        rc = ss_ident_add_uri(id, (const char *)ASN1_STRING_get0_data(s),
                              (size_t)ASN1_STRING_length(s));
    }
    GENERAL_NAMES_free(gens);
    if (rc != 0)
        return SS_EIDENT;
    return ss_ident_finish(id) == 0 ? 0 : SS_EIDENT;
}

int sd_tls_cert_fingerprint(X509 *cert, char fp[65], char serial[41])
{
    static const char hex[] = "0123456789abcdef";
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int mdlen = 0;
    if (X509_digest(cert, EVP_sha256(), md, &mdlen) != 1 || mdlen != 32)
        return SS_EINTERNAL;
    for (unsigned i = 0; i < 32; i++) {
        fp[2 * i] = hex[md[i] >> 4];
        fp[2 * i + 1] = hex[md[i] & 15];
    }
    fp[64] = '\0';
    const ASN1_INTEGER *sn = X509_get0_serialNumber(cert);
    int len = sn ? ASN1_STRING_length(sn) : 0;
    const unsigned char *p = sn ? ASN1_STRING_get0_data(sn) : NULL;
    /* RFC 5280 caps serials at 20 octets; a longer one is shown truncated. */
    size_t o = 0;
    for (int i = 0; i < len && o + 2 < 41; i++) {
        serial[o++] = hex[p[i] >> 4];
        serial[o++] = hex[p[i] & 15];
    }
    serial[o] = '\0';
    return 0;
}

void sd_tls_conn_init(sd_tls_conn *t)
{
    memset(t, 0, sizeof *t);
}

int sd_tls_conn_setup(sd_tls_conn *t, SSL_CTX *ctx)
{
    t->ssl = SSL_new(ctx);
    t->rbio = BIO_new(BIO_s_mem());
    t->wbio = BIO_new(BIO_s_mem());
    if (!t->ssl || !t->rbio || !t->wbio) {
        sd_tls_conn_free(t);
        ERR_clear_error();
        return SS_ENOMEM;
    }
    /* An empty memory BIO reports "retry" rather than EOF, so SSL_read says
     * WANT_READ and the loop waits for more bytes. */
    BIO_set_mem_eof_return(t->rbio, -1);
    BIO_set_mem_eof_return(t->wbio, -1);
    SSL_set_bio(t->ssl, t->rbio, t->wbio); /* the SSL owns both BIOs now */
    SSL_set_app_data(t->ssl, t);
    SSL_set_accept_state(t->ssl);
    return 0;
}

void sd_tls_conn_free(sd_tls_conn *t)
{
    if (t->ssl) {
        SSL_free(t->ssl); /* frees the BIOs */
    } else {
        BIO_free(t->rbio);
        BIO_free(t->wbio);
    }
    t->ssl = NULL;
    t->rbio = t->wbio = NULL;
}

int sd_tls_peer(SSL *ssl, ss_ident *id, char fp[65], char serial[41])
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    if (!cert || SSL_get_verify_result(ssl) != X509_V_OK)
        return SS_ECERT;
    if (sd_tls_cert_fingerprint(cert, fp, serial) != 0)
        return SS_ECERT;
    return sd_tls_cert_ident(cert, id);
}

int sd_tls_recheck(SSL_CTX *ctx, SSL *ssl, char *err, size_t errcap)
{
    X509 *cert = SSL_get0_peer_certificate(ssl);
    STACK_OF(X509) *chain = SSL_get_peer_cert_chain(ssl);
    if (!cert) {
        snprintf(err, errcap, "no peer certificate");
        return SS_ECERT;
    }
    X509_STORE_CTX *sctx = X509_STORE_CTX_new();
    if (!sctx)
        return SS_ENOMEM;
    int rc = SS_ECERT;
    if (X509_STORE_CTX_init(sctx, SSL_CTX_get_cert_store(ctx), cert, chain) != 1) {
        char e[256];
        snprintf(err, errcap, "%s", sd_tls_errors(e, sizeof e));
        goto exit;
    }
    X509_STORE_CTX_set_default(sctx, "ssl_client");
    X509_VERIFY_PARAM_set_flags(X509_STORE_CTX_get0_param(sctx), X509_V_FLAG_CRL_CHECK);
    if (X509_verify_cert(sctx) == 1) {
        if (sd_tls_cert_client_eku(cert)) {
            rc = 0;
            goto exit;
        }
        snprintf(err, errcap, "%s", X509_verify_cert_error_string(X509_V_ERR_INVALID_PURPOSE));
        goto exit;
    }
    int v = X509_STORE_CTX_get_error(sctx);
    snprintf(err, errcap, "%s", X509_verify_cert_error_string(v));
    rc = v == X509_V_ERR_CERT_REVOKED ? SS_EREVOKED : SS_ECERT;
    ERR_clear_error();
exit:
    X509_STORE_CTX_free(sctx);
    return rc;
}

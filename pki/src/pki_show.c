/* pki_show.c - read-only views: one certificate as sitesync parses it (show)
 * and the CA's issuance index (list), as text for people or JSON for tools. */
#include <arpa/inet.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <cjson/cJSON.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include "proto/err.h"
#include "internal.h"

#define CERT_MAX_BYTES (1024u * 1024u)

static void copy_printable(char *dst, size_t cap, const unsigned char *src, size_t len)
{
    size_t i = 0;

    for (; i < len && i + 1 < cap; i++)
        dst[i] = (src[i] < 0x20 || src[i] >= 0x7f) ? '?' : (char)src[i];
    dst[i] = '\0';
}

static void name_text(const X509_NAME *nm, char *buf, size_t cap)
{
    BIO *b = BIO_new(BIO_s_mem());
    BUF_MEM *bm = NULL;

    buf[0] = '\0';
    if (!b)
        return;
    /* RFC 2253 with UTF-8 left as is; control characters escaped. */
    if (X509_NAME_print_ex(b, nm, 0, XN_FLAG_RFC2253 & ~ASN1_STRFLGS_ESC_MSB) >= 0) {
        BIO_get_mem_ptr(b, &bm);
        copy_printable(buf, cap, (const unsigned char *)bm->data, bm->length);
    }
    BIO_free(b);
}

static X509 *parse_cert(const char *text, size_t len)
{
    BIO *b = BIO_new_mem_buf(text, (int)len);
    const unsigned char *p = (const unsigned char *)text;
    X509 *x = NULL;

    if (b)
        x = PEM_read_bio_X509(b, NULL, NULL, NULL);
    BIO_free(b);
    if (!x) {
        ERR_clear_error();
        x = d2i_X509(NULL, &p, (long)len);
    }
    return x;
}

int pki_cert_info_load(const char *file, pki_cert_info *info, char *err, size_t errcap)
{
    char *text = NULL;
    size_t len = 0;
    X509 *x = NULL;
    GENERAL_NAMES *gens = NULL;
    int rc, crit = -1;

    memset(info, 0, sizeof(*info));
    ss_ident_init(&info->ident);
    if (!file)
        return pki__fail(err, errcap, SS_EINVAL, "a certificate file is required");
    if ((rc = pki__read_file(file, CERT_MAX_BYTES, &text, &len, NULL, err, errcap)) != 0)
        return rc;
    x = parse_cert(text, len);
    free(text);
    if (!x)
        return pki__fail_ossl(err, errcap, SS_ECERT, "%s is not a certificate (PEM or DER)", file);
    name_text(X509_get_subject_name(x), info->subject, sizeof(info->subject));
    name_text(X509_get_issuer_name(x), info->issuer, sizeof(info->issuer));
    if (pki__serial_hex(X509_get0_serialNumber(x), info->serial, sizeof(info->serial)) != 0 ||
        pki__fingerprint(x, info->fingerprint, sizeof(info->fingerprint)) != 0 ||
        pki__asn1_time_to_epoch(X509_get0_notBefore(x), &info->not_before_t) != 0 ||
        pki__asn1_time_to_epoch(X509_get0_notAfter(x), &info->not_after_t) != 0) {
        rc = pki__fail(err, errcap, SS_ECERT, "%s: unreadable serial, digest or validity", file);
        goto exit;
    }
    pki__fmt_time(info->not_before_t, info->not_before, sizeof(info->not_before));
    pki__fmt_time(info->not_after_t, info->not_after, sizeof(info->not_after));
    info->is_ca = (X509_get_extension_flags(x) & EXFLAG_CA) != 0;

    gens = X509_get_ext_d2i(x, NID_subject_alt_name, &crit, NULL);
    if (!gens && crit != -1) {
        /* Present but undecodable, or present twice: which one would a peer
         * believe? Neither. */
        info->ident.bad = 1;
    }
    for (int i = 0; gens && i < sk_GENERAL_NAME_num(gens); i++) {
        const GENERAL_NAME *g = sk_GENERAL_NAME_value(gens, i);
        const ASN1_STRING *s;
        if (g->type == GEN_URI) {
            s = g->d.uniformResourceIdentifier;
            /* Exactly the daemon's path: every SAN URI through proto/. */
            ss_ident_add_uri(&info->ident, (const char *)ASN1_STRING_get0_data(s),
                             (size_t)ASN1_STRING_length(s));
        } else if (g->type == GEN_DNS && info->ndns < PKI_MAX_DNS) {
            s = g->d.dNSName;
            copy_printable(info->dns[info->ndns++], sizeof(info->dns[0]), ASN1_STRING_get0_data(s),
                           (size_t)ASN1_STRING_length(s));
        } else if (g->type == GEN_IPADD && info->nips < PKI_MAX_IP) {
            s = g->d.iPAddress;
            int n = ASN1_STRING_length(s);
            int af = n == 4 ? AF_INET : n == 16 ? AF_INET6 : -1;
            if (af < 0 || !inet_ntop(af, ASN1_STRING_get0_data(s), info->ips[info->nips],
                                     sizeof(info->ips[0])))
                snprintf(info->ips[info->nips], sizeof(info->ips[0]), "(bad %d-byte address)", n);
            info->nips++;
        }
    }
    info->ident_rc = ss_ident_finish(&info->ident);
    rc = 0;
exit:
    GENERAL_NAMES_free(gens);
    X509_free(x);
    return rc;
}

static const char *ident_problem(const pki_cert_info *in)
{
    if (in->is_ca)
        return "CA certificate: it names no node";
    if (in->ident.bad)
        return "a sitesync URI is malformed or repeated";
    if (in->ident.node[0] == '\0')
        return "no urn:sitesync:node URI";
    if (in->ident.role == SS_ROLE_NONE)
        return "no urn:sitesync:role URI";
    if (in->ident.role == SS_ROLE_DAEMON)
        return "a daemon certificate must name no site";
    return "a gateway or relay certificate must name at least one site";
}

static int show_json(const char *file, const pki_cert_info *in, FILE *out)
{
    cJSON *o = cJSON_CreateObject(), *id = NULL, *a;
    char *text = NULL;
    int ok = o != NULL;

    ok = ok && cJSON_AddStringToObject(o, "file", file);
    ok = ok && cJSON_AddStringToObject(o, "subject", in->subject);
    ok = ok && cJSON_AddStringToObject(o, "issuer", in->issuer);
    ok = ok && cJSON_AddStringToObject(o, "serial", in->serial);
    ok = ok && cJSON_AddStringToObject(o, "not_before", in->not_before);
    ok = ok && cJSON_AddStringToObject(o, "not_after", in->not_after);
    ok = ok && cJSON_AddStringToObject(o, "fingerprint_sha256", in->fingerprint);
    ok = ok && cJSON_AddBoolToObject(o, "is_ca", in->is_ca);
    ok = ok && cJSON_AddBoolToObject(o, "identity_ok", in->ident_rc == 0 && !in->is_ca);
    if (ok && in->ident_rc == 0 && !in->is_ca) {
        ok = (id = cJSON_AddObjectToObject(o, "identity")) != NULL &&
             cJSON_AddStringToObject(id, "node", in->ident.node) &&
             cJSON_AddStringToObject(id, "role", ss_role_name(in->ident.role)) &&
             (a = cJSON_AddArrayToObject(id, "sites")) != NULL;
        for (int i = 0; ok && i < in->ident.nsites; i++)
            ok = cJSON_AddItemToArray(a, cJSON_CreateString(in->ident.sites[i]));
        ok = ok && cJSON_AddNullToObject(o, "identity_error");
    } else if (ok) {
        ok = cJSON_AddNullToObject(o, "identity") &&
             cJSON_AddStringToObject(o, "identity_error", ident_problem(in));
    }
    ok = ok && (a = cJSON_AddArrayToObject(o, "dns")) != NULL;
    for (int i = 0; ok && i < in->ndns; i++)
        ok = cJSON_AddItemToArray(a, cJSON_CreateString(in->dns[i]));
    ok = ok && (a = cJSON_AddArrayToObject(o, "ip")) != NULL;
    for (int i = 0; ok && i < in->nips; i++)
        ok = cJSON_AddItemToArray(a, cJSON_CreateString(in->ips[i]));
    if (ok)
        text = cJSON_Print(o);
    cJSON_Delete(o);
    if (!text)
        return SS_ENOMEM;
    fprintf(out, "%s\n", text);
    cJSON_free(text);
    return 0;
}

static void show_text(const char *file, const pki_cert_info *in, FILE *out)
{
    fprintf(out, "file:        %s\n", file);
    fprintf(out, "subject:     %s\n", in->subject);
    fprintf(out, "issuer:      %s\n", in->issuer);
    fprintf(out, "serial:      %s\n", in->serial);
    fprintf(out, "not before:  %s\n", in->not_before);
    fprintf(out, "not after:   %s\n", in->not_after);
    fprintf(out, "fingerprint: %s\n", in->fingerprint);
    if (in->ident_rc == 0 && !in->is_ca) {
        fprintf(out, "node:        %s\n", in->ident.node);
        fprintf(out, "role:        %s\n", ss_role_name(in->ident.role));
        fprintf(out, "sites:       ");
        for (int i = 0; i < in->ident.nsites; i++)
            fprintf(out, "%s%s", i ? " " : "", in->ident.sites[i]);
        fprintf(out, "%s\n", in->ident.nsites ? "" : "(none)");
        fprintf(out, "identity:    valid\n");
    } else {
        fprintf(out, "identity:    %s%s\n", in->is_ca ? "" : "INVALID: ", ident_problem(in));
    }
    for (int i = 0; i < in->ndns; i++)
        fprintf(out, "dns:         %s\n", in->dns[i]);
    for (int i = 0; i < in->nips; i++)
        fprintf(out, "ip:          %s\n", in->ips[i]);
}

int pki_show(const char *file, int json, FILE *out, char *err, size_t errcap)
{
    pki_cert_info *in = malloc(sizeof(*in)); /* ~12 KiB: keep it off the stack */
    int rc;

    if (!in)
        return pki__fail(err, errcap, SS_ENOMEM, "out of memory");
    rc = pki_cert_info_load(file, in, err, errcap);
    if (rc == 0) {
        if (json)
            rc = show_json(file, in, out);
        else
            show_text(file, in, out);
        if (rc != 0)
            rc = pki__fail(err, errcap, rc, "out of memory");
        else if (!in->is_ca && in->ident_rc != 0)
            rc = pki__fail(err, errcap, SS_EIDENT, "%s: sitesync would refuse this identity: %s",
                           file, ident_problem(in));
    }
    free(in);
    return rc;
}

static int list_json(const pki__index *ix, int64_t now, FILE *out)
{
    cJSON *root = cJSON_CreateObject(), *certs = NULL, *o, *a;
    char t[32], *text = NULL;
    int ok = root != NULL;

    ok = ok && cJSON_AddNumberToObject(root, "crl_number", (double)ix->crl_number);
    ok = ok && (certs = cJSON_AddArrayToObject(root, "certs")) != NULL;
    for (int i = 0; ok && i < ix->n; i++) {
        const pki__entry *e = &ix->e[i];
        ok = (o = cJSON_CreateObject()) != NULL && cJSON_AddItemToArray(certs, o);
        ok = ok && cJSON_AddStringToObject(o, "serial", e->serial);
        ok = ok && cJSON_AddStringToObject(o, "node", e->node);
        ok = ok && cJSON_AddStringToObject(o, "role", ss_role_name(e->role));
        ok = ok && (a = cJSON_AddArrayToObject(o, "sites")) != NULL;
        for (int j = 0; ok && j < e->nsites; j++)
            ok = cJSON_AddItemToArray(a, cJSON_CreateString(e->sites[j]));
        pki__fmt_time(e->not_before, t, sizeof(t));
        ok = ok && cJSON_AddStringToObject(o, "not_before", t);
        pki__fmt_time(e->not_after, t, sizeof(t));
        ok = ok && cJSON_AddStringToObject(o, "not_after", t);
        ok = ok && cJSON_AddStringToObject(o, "status", pki__entry_status(e, now));
        ok = ok && cJSON_AddStringToObject(o, "fingerprint_sha256", e->fingerprint);
        if (ok && e->revoked) {
            pki__fmt_time(e->revoked_at, t, sizeof(t));
            ok = cJSON_AddStringToObject(o, "revoked_at", t) &&
                 cJSON_AddStringToObject(o, "reason", pki_reason_name(e->reason));
        } else if (ok) {
            ok = cJSON_AddNullToObject(o, "revoked_at") && cJSON_AddNullToObject(o, "reason");
        }
    }
    if (ok)
        text = cJSON_Print(root);
    cJSON_Delete(root);
    if (!text)
        return SS_ENOMEM;
    fprintf(out, "%s\n", text);
    cJSON_free(text);
    return 0;
}

int pki_list(const char *dir, int json, FILE *out, char *err, size_t errcap)
{
    char path[PATH_MAX], t[32];
    pki__index ix;
    int64_t now = pki__now();
    int rc;

    if (!dir || !*dir)
        return pki__fail(err, errcap, SS_EINVAL, "--dir DIR is required");
    /* Listing needs no key and works on an expired CA too (for audits). */
    if ((rc = pki__path(path, sizeof(path), dir, PKI_CA_CERT_FILE, err, errcap)) != 0)
        return rc;
    if (!pki__exists(path))
        return pki__fail(err, errcap, SS_ENOENT,
                         "no CA in %s (%s not found): create one with 'sitesync-pki init --dir %s'",
                         dir, path, dir);
    if ((rc = pki__index_load(dir, &ix, err, errcap)) != 0)
        return rc;
    if (json) {
        rc = list_json(&ix, now, out);
        if (rc != 0)
            rc = pki__fail(err, errcap, rc, "out of memory");
    } else {
        fprintf(out, "%-32s  %-24s  %-7s  %-7s  %-20s  %s\n", "SERIAL", "NODE", "ROLE", "STATUS",
                "NOT AFTER", "SITES");
        for (int i = 0; i < ix.n; i++) {
            const pki__entry *e = &ix.e[i];
            pki__fmt_time(e->not_after, t, sizeof(t));
            fprintf(out, "%-32s  %-24s  %-7s  %-7s  %-20s  ", e->serial, e->node,
                    ss_role_name(e->role), pki__entry_status(e, now), t);
            for (int j = 0; j < e->nsites; j++)
                fprintf(out, "%s%s", j ? "," : "", e->sites[j]);
            fprintf(out, "%s\n", e->nsites ? "" : "-");
        }
    }
    if (rc == 0)
        rc = ix.n;
    pki__index_free(&ix);
    return rc;
}

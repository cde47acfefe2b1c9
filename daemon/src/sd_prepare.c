/* sd_prepare.c - the part of applying an envelope that needs no database:
 * envelope structure, origin signature, body parse with the schema check of
 * every change, and the SHA-256 of every change's bytes. The writer runs it
 * on its prepare threads ahead of the transaction (sd_writer.c), so the one
 * thread that must be serial spends its time in SQLite only.
 *
 * Design note: nothing here decides an outcome. Each check's verdict is
 * recorded, and sd_store_apply_prepared (sd_merge.c) acts on the verdicts
 * in the order sd_store_apply always checked them, so the outcome, the
 * audit entries and the error text are the same whichever thread prepared
 * the envelope and however long before. The one verdict that can go stale
 * is the signature's (a SIGHUP swaps the trust store): it carries the
 * verifier's generation and is made again at apply time if that moved. */
#include <string.h>

#include <openssl/err.h>

#include "proto/alloc.h"
#include "proto/err.h"
#include "sd/sig.h"
#include "sd_store_internal.h"

struct sd_preparer {
    sd_sig *sig;
    EVP_MD *sha256; /* fetched once: implicit fetches take a lock each */
    EVP_MD_CTX *md;
};

int sd_preparer_new(sd_sig *sig, sd_preparer **out)
{
    if (!out)
        return SS_EINVAL;
    *out = NULL;
    sd_preparer *pp = ss_malloc(sizeof *pp);
    if (!pp)
        return SS_ENOMEM;
    memset(pp, 0, sizeof *pp);
    pp->sig = sig;
    pp->sha256 = EVP_MD_fetch(NULL, "SHA256", NULL);
    pp->md = EVP_MD_CTX_new();
    if (!pp->sha256 || !pp->md) {
        ERR_clear_error();
        sd_preparer_destroy(pp);
        return SS_EINTERNAL;
    }
    *out = pp;
    return 0;
}

void sd_preparer_destroy(sd_preparer *pp)
{
    if (!pp)
        return;
    EVP_MD_CTX_free(pp->md);
    EVP_MD_free(pp->sha256);
    ss_free(pp);
}

void sd_prepared_free(sd_prepared *p)
{
    if (!p)
        return;
    ss_body_free(p->body);
    ss_free(p);
}

int sd__prepare(sd_sig *sig, EVP_MD_CTX *md, const EVP_MD *sha256, const uint8_t *bytes, size_t len,
                int64_t now_ms, sd_prepared **out)
{
    if (!out)
        return SS_EINVAL;
    *out = NULL;
    if (!bytes || !md || !sha256)
        return SS_EINVAL;
    ss_envelope env;
    int env_rc = ss_envelope_parse(bytes, len, &env);
    uint32_t count = env_rc ? 0 : env.count;
    /* One allocation for the verdicts and the change hashes. */
    size_t head = (sizeof(sd_prepared) + SD_HASH_LEN - 1) / SD_HASH_LEN * SD_HASH_LEN;
    sd_prepared *p = ss_malloc(head + (size_t)count * SD_HASH_LEN);
    if (!p)
        return SS_ENOMEM;
    memset(p, 0, sizeof *p);
    p->bytes = bytes;
    p->len = len;
    p->now_ms = now_ms;
    p->env_rc = env_rc;
    if (env_rc) {
        *out = p;
        return 0;
    }
    p->env = env;
    /* A signed envelope is authenticated before its body is looked at
     * (sd_store_apply_prepared refuses it as such whatever the body is);
     * a failure of ours (memory) leaves the body unparsed, as before. */
    if (sig && (env.flags & SS_ENV_FLAG_SIGNED)) {
        p->sig = sig;
        p->sig_gen = sd_sig_generation(sig);
        p->sig_rc = sd_sig_verify(sig, &p->env, now_ms, &p->sres);
        if (p->sig_rc == SS_ENOMEM || p->sig_rc == SS_EINTERNAL) {
            *out = p;
            return 0;
        }
    }
    p->body_rc = ss_body_parse(&p->env, &p->body, &p->verr);
    if (p->body_rc == 0) {
        p->chash = (uint8_t(*)[SD_HASH_LEN])((uint8_t *)p + head);
        for (uint32_t i = 0; i < count; i++) {
            const uint8_t *raw = NULL;
            size_t rawlen = 0;
            unsigned int n = 0;
            ss_body_change_raw(p->body, i, &raw, &rawlen);
            if (EVP_DigestInit_ex(md, sha256, NULL) != 1 ||
                EVP_DigestUpdate(md, raw, rawlen) != 1 ||
                EVP_DigestFinal_ex(md, p->chash[i], &n) != 1 || n != SD_HASH_LEN) {
                ERR_clear_error();
                p->hash_rc = SS_EINTERNAL;
                break;
            }
        }
    }
    *out = p;
    return 0;
}

int sd_prepare(sd_preparer *pp, const uint8_t *env_bytes, size_t env_len, int64_t now_ms,
               sd_prepared **out)
{
    if (!pp) {
        if (out)
            *out = NULL;
        return SS_EINVAL;
    }
    return sd__prepare(pp->sig, pp->md, pp->sha256, env_bytes, env_len, now_ms, out);
}

/* gw_nbtls.c - non-blocking mbed TLS connections over shim sockets for the
 * relay's single-threaded poll loop: bio callbacks that never wait, a fixed
 * plaintext output buffer (allocated on first use), and mbed TLS's rule that a write which returned
 * WANT_WRITE is retried with the same length. */
#include "gw/tls.h"

#include <string.h>

#include <mbedtls/error.h>
#include <mbedtls/net_sockets.h>

#include "proto/alloc.h"
#include "proto/err.h"

static void log_mbed(const fws *shim, const char *what, int rc)
{
    char msg[160];
    mbedtls_strerror(rc, msg, sizeof(msg));
    fws_log(shim, FWS_LOG_WARN, "event=tls_error op=%s mbedtls=-0x%04x reason=\"%s\"", what,
            (unsigned)-rc, msg);
}

static int nb_send(void *ctx, const unsigned char *buf, size_t len)
{
    gw_nbconn *c = ctx;
    int rc = fws_send(c->shim, c->sock, buf, len);
    if (rc > 0)
        return rc;
    if (rc == FWS_EAGAIN || rc == 0)
        return MBEDTLS_ERR_SSL_WANT_WRITE;
    return MBEDTLS_ERR_NET_CONN_RESET;
}

static int nb_recv(void *ctx, unsigned char *buf, size_t len)
{
    gw_nbconn *c = ctx;
    int rc = fws_recv(c->shim, c->sock, buf, len, 0);
    if (rc > 0)
        return rc;
    if (rc == FWS_ETIMEDOUT || rc == FWS_EAGAIN)
        return MBEDTLS_ERR_SSL_WANT_READ;
    if (rc == FWS_ECLOSED) {
        c->eof = 1;
        return 0;
    }
    return MBEDTLS_ERR_NET_CONN_RESET;
}

void gw_nb_init(gw_nbconn *c)
{
    memset(c, 0, sizeof(*c));
    mbedtls_ssl_init(&c->ssl);
}

int gw_nb_start(gw_nbconn *c, const fws *shim, fws_sock *sock, const mbedtls_ssl_config *conf,
                const char *hostname, size_t out_cap)
{
    gw_nb_init(c);
    c->shim = shim;
    c->sock = sock;
    c->started = 1;
    /* The plaintext output buffer is allocated on first use: a hub holding
     * many connections that never finish their handshake (slowloris) then
     * pays for mbed TLS's record buffers only. */
    c->out = NULL;
    c->out_cap = out_cap;
    int rc = mbedtls_ssl_setup(&c->ssl, conf);
    if (rc == 0 && hostname)
        rc = mbedtls_ssl_set_hostname(&c->ssl, hostname);
    if (rc != 0) {
        log_mbed(shim, "ssl_setup", rc);
        gw_nb_close(c);
        return SS_EIO;
    }
    mbedtls_ssl_set_bio(&c->ssl, c, nb_send, nb_recv, NULL);
    return 0;
}

static int map_rc(gw_nbconn *c, const char *op, int rc)
{
    if (rc == 0 || rc == MBEDTLS_ERR_SSL_PEER_CLOSE_NOTIFY || rc == MBEDTLS_ERR_NET_CONN_RESET ||
        rc == MBEDTLS_ERR_SSL_CONN_EOF)
        return SS_ECLOSED;
    log_mbed(c->shim, op, rc);
    if (rc == MBEDTLS_ERR_X509_CERT_VERIFY_FAILED || rc == MBEDTLS_ERR_SSL_BAD_HS_CERTIFICATE ||
        rc == MBEDTLS_ERR_SSL_FATAL_ALERT_MESSAGE || rc == MBEDTLS_ERR_SSL_NO_CLIENT_CERTIFICATE)
        return SS_ECERT;
    return SS_EIO;
}

int gw_nb_handshake(gw_nbconn *c)
{
    if (c->hs_done)
        return 0;
    int rc = mbedtls_ssl_handshake(&c->ssl);
    if (rc == 0) {
        c->hs_done = 1;
        return 0;
    }
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 1;
    uint32_t flags = mbedtls_ssl_get_verify_result(&c->ssl);
    if (flags != 0 && flags != (uint32_t)-1) {
        char info[256];
        mbedtls_x509_crt_verify_info(info, sizeof(info), "", flags);
        for (char *p = info; *p; p++)
            if (*p == '\n')
                *p = ';';
        fws_log(c->shim, FWS_LOG_WARN, "event=tls_verify_failed reason=\"%s\"", info);
        return SS_ECERT;
    }
    return map_rc(c, "handshake", rc);
}

int gw_nb_read(gw_nbconn *c, uint8_t *buf, size_t cap)
{
    int rc = mbedtls_ssl_read(&c->ssl, buf, cap);
    if (rc > 0)
        return rc;
    if (rc == MBEDTLS_ERR_SSL_WANT_READ || rc == MBEDTLS_ERR_SSL_WANT_WRITE)
        return 0;
    return map_rc(c, "read", rc);
}

size_t gw_nb_room(const gw_nbconn *c)
{
    return c->out_cap - c->out_len;
}

int gw_nb_queue(gw_nbconn *c, const void *buf, size_t len)
{
    if (len > c->out_cap - c->out_len)
        return SS_ENOSPC;
    if (!c->out && (c->out = ss_malloc(c->out_cap)) == NULL)
        return SS_ENOMEM;
    memcpy(c->out + c->out_len, buf, len);
    c->out_len += len;
    return 0;
}

int gw_nb_flush(gw_nbconn *c)
{
    for (int guard = 0; guard < 4096 && c->out_len > 0; guard++) {
        size_t len = c->wpend ? c->wpend : c->out_len;
        int rc = mbedtls_ssl_write(&c->ssl, c->out, len);
        if (rc == MBEDTLS_ERR_SSL_WANT_WRITE || rc == MBEDTLS_ERR_SSL_WANT_READ) {
            c->wpend = len;
            return 1;
        }
        if (rc < 0)
            return map_rc(c, "write", rc);
        c->wpend = 0;
        memmove(c->out, c->out + rc, c->out_len - (size_t)rc);
        c->out_len -= (size_t)rc;
    }
    if (c->out_len > 0 || c->ssl.out_left > 0)
        return 1;
    return 0;
}

int gw_nb_want_write(const gw_nbconn *c)
{
    return c->started && (c->out_len > 0 || c->ssl.out_left > 0);
}

void gw_nb_close(gw_nbconn *c)
{
    if (!c->started)
        return;
    if (c->hs_done && c->sock && !c->eof)
        (void)mbedtls_ssl_close_notify(&c->ssl); /* best effort, never waits */
    if (c->sock)
        fws_sock_close(c->shim, c->sock);
    c->sock = NULL;
    mbedtls_ssl_free(&c->ssl);
    mbedtls_ssl_init(&c->ssl);
    ss_free(c->out);
    c->out = NULL;
    c->out_len = c->out_cap = c->wpend = 0;
    c->started = 0;
    c->hs_done = 0;
}

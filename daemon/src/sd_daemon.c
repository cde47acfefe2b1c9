/* sd_daemon.c - sitesyncd's wiring: configuration, store, signature
 * verifier, writer thread and TLS server on one libuv loop, run until a
 * drain completes. */
#include <signal.h>
#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "proto/err.h"
#include "sd/config.h"
#include "sd/daemon.h"
#include "sd/log.h"
#include "sd/server.h"
#include "sd/sig.h"
#include "sd/store.h"
#include "sd/writer.h"

int sd_daemon_main(int argc, char **argv, const char *prog)
{
    sd_config cfg;
    sd_config_action action;
    char err[1024];
    int exit_code = 1;
    sd_store *store = NULL;
    sd_writer *writer = NULL;
    sd_server *server = NULL;
    sd_sig *sig = NULL;
    uv_loop_t loop;
    int loop_ready = 0;

    if (sd_config_from_args(&cfg, argc, argv, &action, err, sizeof err) != 0) {
        fprintf(stderr, "%s: %s\n", prog, err);
        return 2;
    }
    switch (action) {
    case SD_CONFIG_HELP:
        sd_config_print_help(stdout, prog);
        return 0;
    case SD_CONFIG_PRINT:
        sd_config_print_json(&cfg, stdout);
        return 0;
    case SD_CONFIG_PRINT_MARKDOWN:
        sd_config_print_markdown(stdout);
        return 0;
    case SD_CONFIG_RUN:
        break;
    }
    sd_log log;
    sd_log_init(&log, (sd_log_level)sd_log_level_parse(cfg.log_level), stderr);
    /* A peer closing mid-write must give EPIPE, not kill the daemon. */
    signal(SIGPIPE, SIG_IGN);
    /* One descriptor per session: the usual soft limit of 1024 would cap
     * the daemon far below max_connections. */
    sd_server_raise_fd_limit(&cfg, &log);

    if (uv_loop_init(&loop) != 0) {
        SD_ERROR(&log, "startup_failed", "what=loop");
        return 1;
    }
    loop_ready = 1;
    sd_store_config sc = { .path = cfg.db,
                           .readonly = 0,
                           .skew_tolerance_ms = (int64_t)cfg.skew_tolerance_ms,
                           .busy_timeout_ms = 5000 };
    char q[1100];
    int rc = sd_store_open(&sc, &store, err, sizeof err);
    if (rc != 0) {
        SD_ERROR(&log, "startup_failed", "what=db path=%s err=%s msg=%s", cfg.db, ss_err_name(rc),
                 sd_log_quote(q, sizeof q, err));
        goto exit;
    }
    /* Origin signatures: the verifier gets its trust store from the
     * server's TLS context (sd_server_set_sig), before anything listens. */
    rc = sd_sig_new((size_t)cfg.sig_cache_size, &sig);
    if (rc != 0) {
        SD_ERROR(&log, "startup_failed", "what=sig err=%s", ss_err_name(rc));
        goto exit;
    }
    sd_store_set_sig(store, sig, cfg.require_signatures != 0);
    sd_writer_config wc = { .max_batch = (size_t)cfg.writer_max_batch,
                            .prepare_threads = (size_t)cfg.prepare_threads };
    rc = sd_writer_new(&loop, store, &wc, &writer);
    if (rc != 0) {
        SD_ERROR(&log, "startup_failed", "what=writer err=%s", ss_err_name(rc));
        goto exit;
    }
    store = NULL; /* the writer owns it now */
    /* The writer logs storage faults (store_fault, store_recovered). */
    sd_writer_set_log(writer, &log);
    rc = sd_server_new(&loop, &cfg, &log, writer, &server, err, sizeof err);
    if (rc == 0)
        rc = sd_server_set_sig(server, sig, err, sizeof err);
    if (rc == 0)
        rc = sd_server_start(server, err, sizeof err);
    if (rc != 0) {
        SD_ERROR(&log, "startup_failed", "what=server err=%s msg=%s", ss_err_name(rc),
                 sd_log_quote(q, sizeof q, err));
        /* Close whatever was opened, through the same path as a drain. */
        if (server)
            sd_server_shutdown(server, NULL, NULL);
        else
            sd_writer_stop(writer, NULL, NULL);
        uv_run(&loop, UV_RUN_DEFAULT);
        goto exit;
    }
    uv_run(&loop, UV_RUN_DEFAULT);
    exit_code = 0;
exit:
    if (loop_ready) {
        int lc = uv_loop_close(&loop);
        if (lc != 0) {
            SD_ERROR(&log, "loop_close_failed", "err=%s", uv_strerror(lc));
            exit_code = 1;
        }
    }
    sd_server_destroy(server);
    sd_writer_destroy(writer);
    sd_store_close(store);
    sd_sig_destroy(sig); /* after the writer: it verified on its threads */
    if (exit_code == 0)
        SD_INFO(&log, "exit", "code=0");
    return exit_code;
}

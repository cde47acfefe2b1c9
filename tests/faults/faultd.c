/* faultd.c - sitesyncd for the I/O-fault tests: the daemon's own wiring
 * (config, store, writer, TLS server on one libuv loop, as in daemon/main.c)
 * with the fault-injecting SQLite VFS of faultvfs.h installed first. It
 * refuses to start without FAULTVFS_CTL, the control file the test maps to
 * arm and clear faults while it runs. A test program only: sitesyncd itself
 * never contains fault injection. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>
#include <uv.h>

#include "faultvfs.h"
#include "proto/err.h"
#include "sd/config.h"
#include "sd/log.h"
#include "sd/server.h"
#include "sd/store.h"
#include "sd/writer.h"

int main(int argc, char **argv)
{
    sd_config cfg;
    sd_config_action action;
    char err[1024];
    int exit_code = 1;
    sd_store *store = NULL;
    sd_writer *writer = NULL;
    sd_server *server = NULL;
    uv_loop_t loop;
    int loop_ready = 0;

    const char *ctl_path = getenv("FAULTVFS_CTL");
    if (!ctl_path || !ctl_path[0]) {
        fprintf(stderr, "faultd: FAULTVFS_CTL must name the fault control file\n");
        return 2;
    }
    fv_ctl *ctl = fv_ctl_map(ctl_path, 0);
    if (!ctl) {
        fprintf(stderr, "faultd: cannot map %s\n", ctl_path);
        return 2;
    }
    if (fv_register(ctl) != SQLITE_OK) {
        fprintf(stderr, "faultd: cannot register the fault VFS\n");
        return 2;
    }
    if (sd_config_from_args(&cfg, argc, argv, &action, err, sizeof err) != 0) {
        fprintf(stderr, "faultd: %s\n", err);
        return 2;
    }
    if (action != SD_CONFIG_RUN) {
        fprintf(stderr, "faultd: only runs the daemon\n");
        return 2;
    }
    sd_log log;
    sd_log_init(&log, (sd_log_level)sd_log_level_parse(cfg.log_level), stderr);
    signal(SIGPIPE, SIG_IGN);
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
    sd_writer_config wc = { .max_batch = (size_t)cfg.writer_max_batch };
    rc = sd_writer_new(&loop, store, &wc, &writer);
    if (rc != 0) {
        SD_ERROR(&log, "startup_failed", "what=writer err=%s", ss_err_name(rc));
        goto exit;
    }
    store = NULL;
    sd_writer_set_log(writer, &log);
    rc = sd_server_new(&loop, &cfg, &log, writer, &server, err, sizeof err);
    if (rc == 0)
        rc = sd_server_start(server, err, sizeof err);
    if (rc != 0) {
        SD_ERROR(&log, "startup_failed", "what=server err=%s msg=%s", ss_err_name(rc),
                 sd_log_quote(q, sizeof q, err));
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
    if (loop_ready && uv_loop_close(&loop) != 0)
        exit_code = 1;
    sd_server_destroy(server);
    sd_writer_destroy(writer);
    sd_store_close(store);
    if (exit_code == 0)
        SD_INFO(&log, "exit", "code=0");
    return exit_code;
}

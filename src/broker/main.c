// sluiced: the sluice broker. Parses the configuration, opens the data directory (refusing one
// that another sluiced holds), serves until SIGINT or SIGTERM, then drains and syncs.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>

#include <sluice/error.h>

#include "broker/admin_http.h"
#include "broker/broker.h"
#include "core/parse.h"

int
main(int argc, char **argv)
{
    sl_broker_config config;
    sl_broker_config_default(&config);
    char err[1024] = "";
    int exit_now = 0;
    if (sl_broker_config_from_args(&config, argc, argv, &exit_now, err, sizeof(err)) != SL_OK) {
        fprintf(stderr, "sluiced: %s\n", err);
        return 2;
    }
    if (exit_now) {
        return 0;
    }
    // A peer that resets its connection while a write is queued must cost that connection an
    // EPIPE, not the broker its life.
    signal(SIGPIPE, SIG_IGN);
    static sl_broker broker;
    int rc = sl_broker_open(&broker, &config, err, sizeof(err));
    if (rc != SL_OK) {
        fprintf(stderr, "sluiced: %s\n", err);
        sl_broker_close(&broker);
        return rc == SL_EBUSY ? 3 : 1;
    }
    char mem[32];
    char disk[32];
    char admin[SL_CONFIG_HOST_MAX + 32] = "off";
    if (config.admin_enabled) {
        snprintf(admin, sizeof(admin), "http://%s:%u", config.admin_host, sl_admin_port(&broker));
    }
    printf("sluiced %s: listening on %s:%u, admin %s, data in %s, memory budget %s, disk budget "
           "%s, fsync %s\n",
           SL_VERSION_STRING, config.listen_host, broker.bound_port, admin, config.data_dir,
           sl_format_size(config.memory_budget_bytes, mem, sizeof(mem)),
           sl_format_size(config.disk_budget_bytes, disk, sizeof(disk)),
           config.fsync_policy == SL_FSYNC_ALWAYS     ? "always"
           : config.fsync_policy == SL_FSYNC_INTERVAL ? "interval"
                                                      : "never");
    fflush(stdout);
    sl_broker_run(&broker);
    sl_broker_close(&broker);
    fprintf(stderr, "sluiced: stopped cleanly\n");
    return 0;
}

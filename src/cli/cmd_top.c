// `sluice top`: the `sluice stats` summary redrawn every second with plain ANSI escapes (no
// curses), what pushes back highlighted. Stops on q, Ctrl-C, or after --iterations redraws.
#include "cli/ops.h"

#include <getopt.h>
#include <poll.h>
#include <string.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <sluice/error.h>

#define TOP_CLEAR "\033[H\033[2J"
// Redraw period and the poll slice within it (stdin and Ctrl-C are looked at this often).
#define TOP_PERIOD_MS 1000
#define TOP_SLICE_MS  100

static const char top_usage[] =
    "usage: sluice top [--topic NAME] [--admin HOST:PORT] [--iterations N] [--no-clear]\n"
    "Redraws the stats summary every second; q or Ctrl-C quits. --iterations stops after N\n"
    "redraws; --no-clear appends instead of clearing the screen (for logs and tests).\n";

typedef struct top_opts {
    const char *admin;
    const char *topic;
    uint64_t iterations; // 0: until q or Ctrl-C
    bool clear;
} top_opts;

static int
top_opt(void *user, int c, FILE *err)
{
    top_opts *o = user;
    switch (c) {
    case 'a':
        o->admin = optarg;
        return SL_OK;
    case 't':
        o->topic = optarg;
        return SL_OK;
    case 'n':
        return sl_cli_parse_u64(err, "top", "--iterations", optarg, &o->iterations);
    case 'C':
        o->clear = false;
        return SL_OK;
    default:
        sl_cli_fail(err, "top", 0, "unknown option (try --help)");
        return SL_EINVAL;
    }
}

// Waits up to one period for a key; true when q (or Q) was typed. EOF on stdin stops looking.
static bool
wait_for_quit(bool *stdin_open)
{
    // Bounded: TOP_PERIOD_MS / TOP_SLICE_MS slices.
    for (int slice = 0; slice < TOP_PERIOD_MS / TOP_SLICE_MS && !sl_cli_interrupted; slice++) {
        struct pollfd p = {.fd = STDIN_FILENO, .events = POLLIN};
        if (!*stdin_open || poll(&p, 1, TOP_SLICE_MS) <= 0) {
            if (!*stdin_open) {
                struct timespec ts = {0, TOP_SLICE_MS * 1000000L};
                nanosleep(&ts, NULL);
            }
            continue;
        }
        char ch = 0;
        ssize_t n = read(STDIN_FILENO, &ch, 1);
        if (n <= 0) {
            *stdin_open = false;
        } else if (ch == 'q' || ch == 'Q') {
            return true;
        }
    }
    return false;
}

static void
draw(FILE *out, const top_opts *o, json_t *stats, const char *why)
{
    if (o->clear) {
        fputs(TOP_CLEAR, out);
    }
    time_t now = time(NULL);
    struct tm tm;
    localtime_r(&now, &tm);
    char when[32];
    strftime(when, sizeof(when), "%H:%M:%S", &tm);
    fprintf(out, "sluice top - %s - admin %s - q quits\n\n", when, sl_cli_admin_addr(o->admin));
    if (stats == NULL) {
        fprintf(out, "\033[1;31mbroker not reached: %s\033[0m\n", why);
    } else {
        sl_cli_summary_print(out, stats, o->admin, o->topic, true);
    }
    fflush(out);
}

int
sl_cli_top(int argc, char **argv, FILE *out, FILE *err)
{
    static const struct option longs[] = {{"admin", required_argument, NULL, 'a'},
                                          {"topic", required_argument, NULL, 't'},
                                          {"iterations", required_argument, NULL, 'n'},
                                          {"no-clear", no_argument, NULL, 'C'},
                                          {"help", no_argument, NULL, 'h'},
                                          {NULL, 0, NULL, 0}};
    top_opts o = {.clear = true};
    int code = sl_cli_getopt(argc, argv, "h", longs, top_usage, out, err, top_opt, &o);
    if (code != SL_CLI_EXIT_OK) {
        return code == SL_CLI_HELP_SHOWN ? SL_CLI_EXIT_OK : code;
    }
    // Keys without Enter while top runs on a terminal; restored on the way out.
    struct termios saved;
    bool tty = isatty(STDIN_FILENO) && tcgetattr(STDIN_FILENO, &saved) == 0;
    if (tty) {
        struct termios raw = saved;
        raw.c_lflag &= ~(tcflag_t)(ICANON | ECHO);
        tcsetattr(STDIN_FILENO, TCSANOW, &raw);
    }
    bool stdin_open = true;
    bool reached = false;
    // Bounded by --iterations, q or Ctrl-C: top runs until told to stop.
    for (uint64_t i = 0; (o.iterations == 0 || i < o.iterations) && !sl_cli_interrupted; i++) {
        json_t *stats = NULL;
        long status = 0;
        char why[320] = "";
        int rc = sl_cli_admin_json(o.admin, "/stats", SL_CLI_ADMIN_TIMEOUT_MS, &stats, &status, why,
                                   sizeof(why));
        reached = reached || rc == SL_OK;
        draw(out, &o, rc == SL_OK ? stats : NULL, why);
        json_decref(stats);
        if ((o.iterations == 0 || i + 1 < o.iterations) && wait_for_quit(&stdin_open)) {
            break;
        }
    }
    if (tty) {
        tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    }
    return reached ? SL_CLI_EXIT_OK : SL_CLI_EXIT_UNREACHED;
}

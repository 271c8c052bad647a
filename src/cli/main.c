// The `sluice` command-line tool: everything lives in the sluice_core library (src/cli/*.c) so
// tests can run commands in-process; this file only hands over the arguments.
#include "cli/cli.h"

int
main(int argc, char **argv)
{
    sl_cli_catch_signals();
    return sl_cli_main(argc, argv, stdout, stderr);
}

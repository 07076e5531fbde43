#pragma once

#include <CLI/CLI.hpp>

namespace freeswim::cli {

void add_check_command(CLI::App& app);
// Runs whichever subcommand was parsed; returns the exit status.
int run_selected(CLI::App& app);

}  // namespace freeswim::cli

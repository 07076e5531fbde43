#pragma once

#include <CLI/CLI.hpp>

namespace freeswim::cli {

void add_check_command(CLI::App& app);
void add_job_commands(CLI::App& app);  // generate, upscale
void add_info_command(CLI::App& app);
// Runs whichever subcommand was parsed; returns the exit status.
int run_selected(CLI::App& app);

// Each file's runner: returns -1 when its subcommand was not the one parsed.
int run_check_if_parsed();
int run_jobs_if_parsed();
int run_info_if_parsed();

}  // namespace freeswim::cli

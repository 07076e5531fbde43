// freeswim: command-line entry point. Every error a user can cause ends here as one message
// and a non-zero exit status.
#include <CLI/CLI.hpp>
#include <cstdio>
#include <string>

#include "cli/commands.h"
#include "core/environment.h"
#include "core/error.h"
#ifdef FREESWIM_WITH_CUDA
#include "ops/cuda/cuda_backend.h"
#endif

int main(int argc, char** argv) {
  CLI::App app{"freeswim: training-free 1080p-4K video with Wan2.1 and FreeSwim attention"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "freeswim 0.1.0");
  freeswim::cli::add_job_commands(app);
  freeswim::cli::add_info_command(app);
  freeswim::cli::add_check_command(app);
  // Which attention kernels the CUDA backend runs: a process-wide backend option, so it belongs to
  // the program and not to one subcommand; fallthrough lets it follow the subcommand's name too
  // (`freeswim check --gpu-kernels portable ...`).
  std::string gpu_kernels = "auto";
  app.add_option("--gpu-kernels", gpu_kernels,
                 "GPU attention kernels: auto (Hopper kernels on compute capability 9.0, portable "
                 "elsewhere), hopper, portable, or portable-narrow (the portable kernels with the "
                 "blocks of GPUs with 100 or 164 KB of shared memory per SM, on any GPU)")
      ->capture_default_str();
  for (CLI::App* sub : app.get_subcommands([](CLI::App*) { return true; })) sub->fallthrough();
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return app.exit(e);
  }
  try {
    const freeswim::Environment env = freeswim::read_environment();
#ifdef FREESWIM_WITH_CUDA
    // Touches no GPU: `--device cuda` fails with a clear message at first use when none exists.
    freeswim::ops::cuda::register_cuda_backend(
        {env.gpu_memory_limit, env.profile, freeswim::ops::cuda::parse_gpu_kernels(gpu_kernels)});
#else
    (void)env;
    FS_CHECK(gpu_kernels == "auto" || gpu_kernels == "hopper" || gpu_kernels == "portable" ||
                 gpu_kernels == "portable-narrow",
             "--gpu-kernels must be auto, hopper, portable or portable-narrow, got '{}'",
             gpu_kernels);
#endif
    return freeswim::cli::run_selected(app);
  } catch (const freeswim::Error& e) {
    std::fprintf(stderr, "freeswim: error: %s\n", e.what());
    return 1;
  } catch (const std::bad_alloc&) {
    std::fprintf(stderr, "freeswim: error: out of host memory\n");
    return 1;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "freeswim: internal error: %s\n", e.what());
    return 2;
  }
}

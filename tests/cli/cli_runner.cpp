#include "cli_runner.h"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>

extern char** environ;

namespace freeswim::clitest {

namespace {

fs::path make_temp_dir(const char* stem) {
  std::string tmpl = (fs::temp_directory_path() / (std::string(stem) + "XXXXXX")).string();
  if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed: " + tmpl);
  return tmpl;
}

void check(int rc, const char* what) {
  if (rc != 0) throw std::runtime_error(std::string(what) + ": " + std::strerror(rc));
}

}  // namespace

std::string RunResult::describe() const {
  std::ostringstream s;
  s << "exit code " << exit_code;
  if (signal) s << " (signal " << signal << ")";
  s << "\n--- stdout ---\n" << out << "\n--- stderr ---\n" << err;
  return s.str();
}

Child::Child(const std::vector<std::string>& args, const std::vector<std::string>& extra_env,
             const fs::path& cwd)
    : capture_(make_temp_dir("freeswim_cli_capture_")) {
  // Streams go to files in a folder of their own, so the folder a test inspects only holds
  // what freeswim wrote, and no pipe can fill up and block the child.
  const std::string out_path = (capture_ / "stdout").string();
  const std::string err_path = (capture_ / "stderr").string();

  std::vector<std::string> argv_s{FREESWIM_CLI};
  argv_s.insert(argv_s.end(), args.begin(), args.end());
  std::vector<char*> argv;
  for (auto& a : argv_s) argv.push_back(a.data());
  argv.push_back(nullptr);

  std::vector<std::string> env_s;
  // The CLI tests are CPU runs: `--device auto` (the default) must not pick a GPU of the machine
  // they run on, so the child sees no CUDA device unless extra_env names its own.
  constexpr const char* kDevices = "CUDA_VISIBLE_DEVICES=";
  const size_t kDevicesLen = std::strlen(kDevices);
  for (char** e = environ; *e; ++e)
    if (std::strncmp(*e, "FREESWIM_TEST_", 14) != 0 && std::strncmp(*e, kDevices, kDevicesLen) != 0)
      env_s.emplace_back(*e);
  if (std::none_of(extra_env.begin(), extra_env.end(),
                   [&](const std::string& v) { return v.rfind(kDevices, 0) == 0; }))
    env_s.emplace_back(kDevices);
  env_s.insert(env_s.end(), extra_env.begin(), extra_env.end());
  std::vector<char*> envp;
  for (auto& e : env_s) envp.push_back(e.data());
  envp.push_back(nullptr);

  posix_spawn_file_actions_t actions;
  check(posix_spawn_file_actions_init(&actions), "posix_spawn_file_actions_init");
  const int flags = O_WRONLY | O_CREAT | O_TRUNC;
  check(posix_spawn_file_actions_addopen(&actions, 1, out_path.c_str(), flags, 0644), "addopen");
  check(posix_spawn_file_actions_addopen(&actions, 2, err_path.c_str(), flags, 0644), "addopen");
  check(posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0), "addopen");
  if (!cwd.empty()) check(posix_spawn_file_actions_addchdir_np(&actions, cwd.c_str()), "addchdir");
  pid_t pid = 0;
  const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), envp.data());
  posix_spawn_file_actions_destroy(&actions);
  check(rc, "posix_spawn " FREESWIM_CLI);
  pid_ = pid;
}

Child::~Child() {
  if (!reaped_) {
    ::kill(pid_, SIGKILL);
    while (::waitpid(pid_, &status_, 0) < 0 && errno == EINTR) {
    }
  }
  std::error_code ec;
  fs::remove_all(capture_, ec);
}

bool Child::running() {
  if (reaped_) return false;
  const pid_t r = ::waitpid(pid_, &status_, WNOHANG);
  if (r == pid_) reaped_ = true;
  return !reaped_;
}

void Child::kill(int signal) {
  if (!reaped_) ::kill(pid_, signal);
}

RunResult Child::wait() {
  while (!reaped_) {
    if (::waitpid(pid_, &status_, 0) == pid_)
      reaped_ = true;
    else if (errno != EINTR)
      throw std::runtime_error("waitpid failed");
  }
  RunResult r;
  if (WIFEXITED(status_)) r.exit_code = WEXITSTATUS(status_);
  if (WIFSIGNALED(status_)) r.signal = WTERMSIG(status_);
  r.out = read_bytes(capture_ / "stdout");
  r.err = read_bytes(capture_ / "stderr");
  return r;
}

RunResult run_freeswim(const std::vector<std::string>& args,
                       const std::vector<std::string>& extra_env, const fs::path& cwd) {
  Child child(args, extra_env, cwd);
  return child.wait();
}

TempDir::TempDir() : path_(make_temp_dir("freeswim_cli_test_")) {}

TempDir::~TempDir() {
  if (std::getenv("FREESWIM_KEEP_TEST_DIRS")) return;
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::vector<std::string> list_tree(const fs::path& dir) {
  std::vector<std::string> names;
  for (const auto& e : fs::recursive_directory_iterator(dir))
    names.push_back(fs::relative(e.path(), dir).string());
  std::sort(names.begin(), names.end());
  return names;
}

std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path.string());
}

fs::path golden(const std::string& name) {
  return fs::path(FREESWIM_GOLDEN_DIR) / name;
}

}  // namespace freeswim::clitest

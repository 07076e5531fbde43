// Helpers of the CLI tests: run the built `freeswim` binary as a child process (exit status,
// stdout, stderr), private temporary folders, small file utilities.
#pragma once

#include <filesystem>
#include <string>
#include <vector>

namespace freeswim::clitest {

namespace fs = std::filesystem;

struct RunResult {
  int exit_code = -1;  // the exit status, or -1 when the child died of a signal
  int signal = 0;      // the signal that ended it, if any
  std::string out, err;
  // Both streams and the status, for failure messages.
  std::string describe() const;
};

// Runs `freeswim args...` in `cwd` (the current folder when empty) with `extra_env`
// ("NAME=value") added to this process's environment. FREESWIM_TEST_* variables of the parent
// are not passed on unless given in `extra_env`.
RunResult run_freeswim(const std::vector<std::string>& args,
                       const std::vector<std::string>& extra_env = {}, const fs::path& cwd = {});

// A running `freeswim` (the same set-up as run_freeswim), for tests that act while it runs.
class Child {
 public:
  Child(const std::vector<std::string>& args, const std::vector<std::string>& extra_env = {},
        const fs::path& cwd = {});
  ~Child();  // kills and reaps the child if wait() was not called
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  // Whether it is still running (reaps it when it has ended).
  bool running();
  void kill(int signal);
  RunResult wait();

 private:
  int pid_ = -1;
  bool reaped_ = false;
  int status_ = 0;
  fs::path capture_;
};

// A fresh folder under the system temporary folder, removed with everything in it at the end
// (kept when FREESWIM_KEEP_TEST_DIRS is set, for debugging).
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }
  fs::path operator/(const std::string& name) const { return path_ / name; }

 private:
  fs::path path_;
};

// Every entry below `dir` (recursively), relative to it, sorted.
std::vector<std::string> list_tree(const fs::path& dir);
std::string read_bytes(const fs::path& path);
void write_bytes(const fs::path& path, const std::string& bytes);

// The golden reference folder (../shared/golden) and one file in it.
fs::path golden(const std::string& name);

}  // namespace freeswim::clitest

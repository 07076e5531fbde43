// read_environment: the values the programs take from FREESWIM_GPU_MEMORY_LIMIT and
// FREESWIM_PROFILE, and the refusal of malformed ones (naming the variable).
#include "core/environment.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <string>

#include "core/error.h"

namespace freeswim {
namespace {

// Sets (or, for nullptr, unsets) a variable for one test and restores it afterwards.
class ScopedEnv {
 public:
  ScopedEnv(const char* name, const char* value) : name_(name) {
    if (const char* old = getenv(name)) {
      old_ = old;
      had_ = true;
    }
    if (value) {
      setenv(name, value, 1);
    } else {
      unsetenv(name);
    }
  }
  ~ScopedEnv() {
    if (had_) {
      setenv(name_, old_.c_str(), 1);
    } else {
      unsetenv(name_);
    }
  }
  ScopedEnv(const ScopedEnv&) = delete;
  ScopedEnv& operator=(const ScopedEnv&) = delete;

 private:
  const char* name_;
  std::string old_;
  bool had_ = false;
};

TEST(Environment, DefaultsWhenUnset) {
  const ScopedEnv a("FREESWIM_GPU_MEMORY_LIMIT", nullptr), b("FREESWIM_PROFILE", nullptr);
  const Environment env = read_environment();
  EXPECT_EQ(env.gpu_memory_limit, 0u);
  EXPECT_FALSE(env.profile);
}

TEST(Environment, ReadsValues) {
  const ScopedEnv a("FREESWIM_GPU_MEMORY_LIMIT", "22.35"), b("FREESWIM_PROFILE", "1");
  const Environment env = read_environment();
  EXPECT_EQ(env.gpu_memory_limit, static_cast<size_t>(22.35 * 1024.0 * 1024.0 * 1024.0));
  EXPECT_TRUE(env.profile);
  const ScopedEnv c("FREESWIM_PROFILE", "0"), d("FREESWIM_GPU_MEMORY_LIMIT", "");
  EXPECT_FALSE(read_environment().profile);
  EXPECT_EQ(read_environment().gpu_memory_limit, 0u);
}

TEST(Environment, RefusesMalformedMemoryLimit) {
  for (const char* bad : {"abc", "12GB", "-1", "0", "1e9", "nan"}) {
    const ScopedEnv a("FREESWIM_GPU_MEMORY_LIMIT", bad);
    try {
      read_environment();
      ADD_FAILURE() << bad << " accepted";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("FREESWIM_GPU_MEMORY_LIMIT"), std::string::npos);
    }
  }
}

}  // namespace
}  // namespace freeswim

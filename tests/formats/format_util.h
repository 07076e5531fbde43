// Helpers of the checkpoint-format tests: scratch folders, the golden tiny models as named
// tensors, an fp8 encoder (nearest code, ties to the even code, saturating), and the forward of
// the tiny DiT on the golden inputs.
#pragma once

#include <gtest/gtest.h>

#include <filesystem>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"

namespace freeswim::formats {

namespace fs = std::filesystem;

inline const std::string kGolden = FREESWIM_GOLDEN_DIR;

using Named = std::vector<std::pair<std::string, Tensor>>;

// A fresh folder, removed at the end.
class Scratch {
 public:
  Scratch();
  ~Scratch();
  Scratch(const Scratch&) = delete;
  Scratch& operator=(const Scratch&) = delete;
  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  fs::path path_;
};

// Every tensor of a golden file, as f32 CPU tensors (owning copies).
Named read_golden(const std::string& file);
Tensor find_named(const Named& all, const std::string& name);

// The fp8 code nearest to x (ties to the code with an even mantissa), saturating at the
// largest finite value; NaN is not expected.
uint8_t encode_fp8(float x, DType type);
// Codes of t / scale.
Tensor to_fp8(const Tensor& t, DType type, float scale);
// The largest finite value of an fp8 type.
float fp8_max(DType type);

// The message of the freeswim::Error `f` throws; a test failure when none.
std::string error_of(const std::function<void()>& f);

// The tiny DiT's stock forward of the golden case inputs, loaded from `weights` (with the golden
// config), against the golden `out_plain`: the relative L2 error.
double dit_forward_error(const std::string& weights);

#define EXPECT_MENTIONS(msg, text) \
  EXPECT_NE((msg).find(text), std::string::npos) << "message: " << (msg) << "\nlacks: " << (text)

}  // namespace freeswim::formats

// window_mask*: the inward window rule on one grid (mask, exactly) and one masked attention.
#include <filesystem>

#include "check/golden_files.h"
#include "check/suites.h"
#include "core/error.h"
#include "ops/ops.h"

namespace freeswim::check {

namespace {

// [1, heads, tokens, d] (PyTorch's attention layout) -> [tokens, heads, d].
Tensor to_token_major(const Tensor& t) {
  FS_CHECK(t.ndim() == 4 && t.dim(0) == 1, "expected [1, heads, tokens, head_dim], got {}",
           t.describe());
  const int64_t H = t.dim(1), N = t.dim(2), D = t.dim(3);
  Tensor out = Tensor::empty({N, H, D});
  const float* s = t.data<float>();
  float* o = out.data<float>();
  for (int64_t h = 0; h < H; ++h)
    for (int64_t n = 0; n < N; ++n)
      for (int64_t d = 0; d < D; ++d) o[(n * H + h) * D + d] = s[(h * N + n) * D + d];
  return out;
}

void run_window_file(const Context& ctx, const std::string& json_path) {
  const std::string stem = json_path.substr(0, json_path.size() - 5);
  const std::string label = std::filesystem::path(stem).filename().string();
  const CaseFile f = open_case_file(json_path, stem + ".safetensors");
  const auto& m = f.meta;
  WindowGeometry g{m.at("T").get<int>(), m.at("H").get<int>(), m.at("W").get<int>(),
                   m.at("d_h").get<int>(), m.at("d_w").get<int>()};
  const float scale = m.at("scale").get<float>();

  if (ctx.wanted(label + "/mask")) {
    const Tensor mask = f.tensor("mask");
    const int64_t n = g.tokens();
    if (mask.numel() != n * n) {
      ctx.failed(label + "/mask", fmt::format("{}: mask {} does not match grid of {} tokens",
                                              f.tensors_path, mask.describe(), n));
    } else {
      int64_t wrong = 0;
      const float* md = mask.data<float>();
      for (int64_t q = 0; q < n; ++q)
        for (int64_t k = 0; k < n; ++k) wrong += (md[q * n + k] != 0.f) != window_visible(g, q, k);
      CaseResult r{label + "/mask", static_cast<double>(wrong), 0.5, wrong == 0,
                   wrong ? fmt::format("{} of {} mask entries differ", wrong, n * n) : ""};
      ctx.report(r);
    }
  }
  if (ctx.wanted(label + "/out")) {
    const Tensor q = to_token_major(f.tensor("q")).to(ctx.device),
                 k = to_token_major(f.tensor("k")).to(ctx.device),
                 v = to_token_major(f.tensor("v")).to(ctx.device);
    Tensor out = ops::attention(ops::to_compute(q, ctx.device), ops::to_compute(k, ctx.device),
                                ops::to_compute(v, ctx.device), scale, &g);
    ctx.compare(label + "/out", out, to_token_major(f.tensor("out")),
                ctx.device == Device::CPU ? 1e-5 : 1e-2);
  }
}

}  // namespace

void check_window_mask_cases(const Context& ctx) {
  for (const std::string& json_path : files_ending_with(ctx.golden_dir, ".json")) {
    const std::string name = std::filesystem::path(json_path).filename().string();
    if (name.rfind("window_mask", 0) != 0) continue;
    try {
      run_window_file(ctx, json_path);
    } catch (const std::exception& e) {
      ctx.failed(name, e.what());
    }
  }
}

}  // namespace freeswim::check

#include "freeswim/policy.h"

#include <cmath>

#include "core/error.h"

namespace freeswim {

std::string step_kind_name(StepKind k) {
  switch (k) {
    case StepKind::Stock:
      return "stock";
    case StepKind::Dual:
      return "dual";
    case StepKind::Guide:
      return "guide";
    case StepKind::Reuse:
      return "reuse";
    case StepKind::Uncond:
      return "uncond";
  }
  return "?";
}

double freeswim_attention_scale(int64_t n, int head_dim) {
  FS_CHECK(n >= 2, "attention scale: the base grid must have at least 2 tokens per frame, got {}",
           n);
  FS_CHECK(head_dim > 0, "attention scale: head_dim must be positive, got {}", head_dim);
  const double N = static_cast<double>(n);
  return std::sqrt(std::log(2.0 * N) / std::log(N) / head_dim);
}

FreeSwimParams freeswim_params_for_base_grid(int base_h, int base_w, int head_dim) {
  FS_CHECK(base_h > 0 && base_w > 0, "base grid {}x{} must be positive", base_h, base_w);
  FreeSwimParams p;
  p.dh = base_h / 2;
  p.dw = base_w / 2;
  p.attn_scale = freeswim_attention_scale(int64_t{base_h} * base_w, head_dim);
  return p;
}

}  // namespace freeswim

// pipeline_cases*: stage 2 of the pipeline, the bilinear upsampling of the base video
// (`t2v_frames`) to the target size (`upsampled_frames`). Shapes and layouts come from the
// json's "tensors" table, so any golden directory of this format is checked, whatever its sizes.
#include <filesystem>

#include "check/golden_files.h"
#include "check/suites.h"
#include "core/error.h"
#include "pipeline/upsample.h"

namespace freeswim::check {

namespace {

using pipeline::FrameLayout;

// The layout of a frames tensor [F, H, W, 3] or [F, 3, H, W] from its shape; `fallback` (the
// layout the reference documents for this tensor) settles a shape that fits both.
FrameLayout layout_of(const Shape& s, FrameLayout fallback, const std::string& what) {
  FS_CHECK(s.size() == 4 && (s[1] == 3 || s[3] == 3),
           "{}: shape {} is neither [F, H, W, 3] nor [F, 3, H, W]", what, shape_str(s));
  if (s[1] == 3 && s[3] == 3) return fallback;
  return s[3] == 3 ? FrameLayout::FHWC : FrameLayout::FCHW;
}

Shape json_shape(const CaseFile& f, const std::string& name) {
  FS_CHECK(f.meta.contains("tensors") && f.meta["tensors"].contains(name),
           "{}: \"tensors\" does not list '{}'", f.json_path, name);
  return f.meta["tensors"][name].get<Shape>();
}

void run_upsample_file(const Context& ctx, const std::string& json_path) {
  const std::string stem = json_path.substr(0, json_path.size() - 5);
  const std::string label = std::filesystem::path(stem).filename().string();
  const std::string name = label + "/upsampled_frames";
  if (!ctx.wanted(name)) return;
  try {
    const CaseFile f = open_case_file(json_path, stem + ".safetensors");
    const Shape in_shape = json_shape(f, "t2v_frames"),
                want_shape = json_shape(f, "upsampled_frames");
    const FrameLayout in_layout =
        layout_of(in_shape, FrameLayout::FHWC, f.json_path + " t2v_frames");
    const FrameLayout out_layout =
        layout_of(want_shape, FrameLayout::FCHW, f.json_path + " upsampled_frames");
    const Tensor frames = f.tensor("t2v_frames"), want = f.tensor("upsampled_frames");
    FS_CHECK(frames.shape() == in_shape && want.shape() == want_shape,
             "{}: tensors t2v_frames {} / upsampled_frames {} differ from the json's {} / {}",
             f.tensors_path, shape_str(frames.shape()), shape_str(want.shape()),
             shape_str(in_shape), shape_str(want_shape));
    const bool out_hwc = out_layout == FrameLayout::FHWC;
    const int64_t out_h = out_hwc ? want_shape[1] : want_shape[2];
    const int64_t out_w = out_hwc ? want_shape[2] : want_shape[3];
    if (f.meta.contains("pipe") && f.meta["pipe"].contains("target_hw")) {
      const auto hw = f.meta["pipe"]["target_hw"].get<std::vector<int64_t>>();
      FS_CHECK(hw.size() == 2 && hw[0] == out_h && hw[1] == out_w,
               "{}: pipe.target_hw does not match upsampled_frames {}", f.json_path,
               shape_str(want_shape));
    }
    Tensor got = pipeline::resize_bilinear(frames, out_h, out_w, in_layout);
    if (in_layout != out_layout)
      got = out_hwc ? pipeline::fchw_to_fhwc(got) : pipeline::fhwc_to_fchw(got);
    // Bilinear taps in float32 (the reference) and double (here) differ by rounding only.
    ctx.compare(name, got, want, 1e-5);
  } catch (const std::exception& e) {
    ctx.failed(name, e.what());
  }
}

}  // namespace

void check_upsample_cases(const Context& ctx) {
  for (const std::string& json : files_ending_with(ctx.golden_dir, "pipeline_cases.json"))
    run_upsample_file(ctx, json);
  // Tensors without their json cannot be read; say so rather than pass over them.
  for (const std::string& st : files_ending_with(ctx.golden_dir, "pipeline_cases.safetensors")) {
    const std::string json = st.substr(0, st.size() - 12) + ".json";
    if (!std::filesystem::exists(json))
      ctx.failed(std::filesystem::path(json).stem().string() + "/upsampled_frames",
                 fmt::format("'{}' has no '{}' beside it", st, json));
  }
}

}  // namespace freeswim::check

// Writing frames as an H.264 mp4 through FFmpeg's libraries.
#pragma once

#include <string>

#include "core/tensor.h"
#include "video/frame_rate.h"

namespace freeswim::video {

struct Mp4Options {
  // x264 constant rate factor: 0 lossless .. 51 worst; 17-18 is visually lossless.
  int crf = 17;
  std::string preset = "medium";
};

// Writes `frames` (CPU f32 [F, H, W, 3], RGB in [0, 1]) to `path` as H.264, yuv420p (BT.709,
// limited range, tagged as such), one frame per 1/fps (the stream's time base). The file appears
// only when complete: nothing is left at `path` or beside it when anything fails. Throws Error
// naming the path for odd width or height (yuv420p halves both for chroma), an unwritable
// path, or a missing H.264 encoder.
void write_mp4(const std::string& path, const Tensor& frames, FrameRate fps,
               const Mp4Options& options = {});
void write_mp4(const std::string& path, const Tensor& frames, double fps);

// The encoder write_mp4 uses: "libx264" when the FFmpeg build has it, otherwise the first
// H.264 encoder FFmpeg offers; throws Error when there is none.
std::string h264_encoder_name();

}  // namespace freeswim::video

// Frames as numbered 8-bit RGB PNG files (an alternative to mp4 for lossless output).
#pragma once

#include <string>
#include <vector>

#include "core/tensor.h"

namespace freeswim::video {

// `dir_or_pattern` is either a printf-style pattern with one integer conversion
// ("out/frame_%04d.png") or a directory, which gets "frame_00000.png", "frame_00001.png", ...
// Frames are numbered from 0. Missing directories are created. Each file appears whole (written
// to a temporary and renamed); if any frame fails, the files this call wrote are removed.
// Returns the paths written, in frame order.
std::vector<std::string> write_png_frames(const std::string& dir_or_pattern, const Tensor& frames);

// The file name of frame `index` for `dir_or_pattern` (as write_png_frames names it); throws
// Error naming the pattern when it holds anything but exactly one %d / %0Nd conversion
// (and %% escapes).
std::string png_frame_path(const std::string& dir_or_pattern, int64_t index);

}  // namespace freeswim::video

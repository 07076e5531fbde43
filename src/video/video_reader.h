// Decoding a user's video (anything FFmpeg reads) into float frames for `upscale`.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "video/frame_rate.h"

namespace freeswim::video {

struct DecodedVideo {
  Tensor frames;  // CPU f32 [F, H, W, 3], RGB in [0, 1]
  FrameRate fps;
};

// Decodes up to `max_frames` frames (all when <= 0) of the first video stream of `path`.
// Throws Error naming the file when it is missing, not a video, corrupt, or changes size
// midway.
DecodedVideo read_video(const std::string& path, int64_t max_frames = 0);

}  // namespace freeswim::video

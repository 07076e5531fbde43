#include "video/pixels.h"

#include "core/error.h"

namespace freeswim::video {

void check_frames(const Tensor& frames, const std::string& what) {
  FS_CHECK(frames.defined(), "{}: frames tensor is empty", what);
  FS_CHECK(frames.device() == Device::CPU && frames.dtype() == DType::F32,
           "{}: frames must be a CPU F32 tensor, got {}", what, frames.describe());
  FS_CHECK(frames.ndim() == 4 && frames.dim(3) == 3,
           "{}: frames must be laid out [frames, height, width, 3], got {}", what,
           shape_str(frames.shape()));
  FS_CHECK(frames.dim(0) >= 1 && frames.dim(1) >= 1 && frames.dim(2) >= 1,
           "{}: frames tensor {} holds no pixels", what, shape_str(frames.shape()));
}

void frame_to_rgb24(const float* src, int64_t pixels, uint8_t* dst, const std::string& what,
                    int64_t frame_index) {
  for (int64_t i = 0; i < pixels * 3; ++i) {
    FS_CHECK(!std::isnan(src[i]), "{}: frame {} holds NaN values", what, frame_index);
    dst[i] = float_to_u8(src[i]);
  }
}

}  // namespace freeswim::video

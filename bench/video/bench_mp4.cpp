// bench_mp4 [frames W H]: the last stage of `generate`, writing the decoded frames as an H.264 mp4
// (video::write_mp4, the CLI's settings: crf 17, preset medium, 16 fps), timed on this machine's
// CPU for two kinds of content: a smooth moving pattern (close to what a video model makes) and
// uniform noise (the worst case for the encoder: what random weights decode to). Default size
// 81 x 1920x1080, the cropped 1080p output.
//
// bench_mp4 --probe FILE: decodes every frame of FILE with the engine's reader (FFmpeg) and prints
// `probe: WxH, N frames, R fps`, for machines without ffprobe (bench/cli/run_real_size.sh).
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

#include "core/error.h"
#include "core/rng.h"
#include "core/tensor.h"
#include "core/threads.h"
#include "video/mp4_writer.h"
#include "video/video_reader.h"

using namespace freeswim;

namespace {

Tensor smooth_frames(int64_t F, int64_t H, int64_t W) {
  Tensor t = Tensor::empty({F, H, W, 3}, DType::F32);
  float* d = t.data<float>();
  parallel_for(F, 1, [&](int64_t f0, int64_t f1) {
    for (int64_t f = f0; f < f1; ++f)
      for (int64_t y = 0; y < H; ++y)
        for (int64_t x = 0; x < W; ++x)
          for (int64_t c = 0; c < 3; ++c) {
            const float u = static_cast<float>(x + 4 * f) / static_cast<float>(W);
            const float v = static_cast<float>(y) / static_cast<float>(H);
            d[((f * H + y) * W + x) * 3 + c] =
                0.5f + 0.4f * std::sin(6.0f * u + 3.0f * v + 1.7f * static_cast<float>(c));
          }
  });
  return t;
}

Tensor noise_frames(int64_t F, int64_t H, int64_t W) {
  Tensor t = rng::normal_tensor({F, H, W, 3}, 7);
  float* d = t.data<float>();
  for (int64_t i = 0; i < t.numel(); ++i) d[i] = 0.5f + 0.15f * d[i];
  return t;
}

double write_timed(const Tensor& frames, const std::string& path) {
  const auto t0 = std::chrono::steady_clock::now();
  video::write_mp4(path, frames, 16.0);
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  const auto bytes = std::filesystem::file_size(path);
  std::filesystem::remove(path);
  std::printf("%.2f s, %.1f MB\n", s, static_cast<double>(bytes) / 1e6);
  return s;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    if (argc == 3 && std::string(argv[1]) == "--probe") {
      const video::DecodedVideo v = video::read_video(argv[2]);
      std::printf("probe: %lldx%lld, %lld frames, %.3f fps\n",
                  static_cast<long long>(v.frames.dim(2)), static_cast<long long>(v.frames.dim(1)),
                  static_cast<long long>(v.frames.dim(0)), v.fps.value());
      return 0;
    }
    const int64_t F = argc > 1 ? std::atoll(argv[1]) : 81;
    const int64_t W = argc > 2 ? std::atoll(argv[2]) : 1920;
    const int64_t H = argc > 3 ? std::atoll(argv[3]) : 1080;
    FS_CHECK(F > 0 && W > 0 && H > 0, "bench_mp4: frames, W and H must be positive");
    const std::string path =
        (std::filesystem::temp_directory_path() / "freeswim_bench_mp4.mp4").string();
    std::printf("write_mp4 of %lld frames at %lldx%lld, encoder %s, %d CPU threads\n",
                static_cast<long long>(F), static_cast<long long>(W), static_cast<long long>(H),
                video::h264_encoder_name().c_str(), max_threads());
    std::printf("smooth moving pattern: ");
    std::fflush(stdout);
    write_timed(smooth_frames(F, H, W), path);
    std::printf("noise: ");
    std::fflush(stdout);
    write_timed(noise_frames(F, H, W), path);
    return 0;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "bench_mp4: %s\n", e.what());
    return 1;
  }
}

// mp4 / PNG output and video input: round trips, what ffprobe sees in our files, and that every
// failure leaves nothing behind.
#include "video/video.h"

#include <gtest/gtest.h>
#include <png.h>
#include <stdlib.h>

#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>

#include "core/error.h"
#include "video/pixels.h"

namespace fs = std::filesystem;

namespace freeswim::video {
namespace {

// Smooth moving colour fields: what a decoder reproduces well, so the round trip error measures
// our conversions rather than H.264's losses on noise.
Tensor synthetic_frames(int64_t count, int64_t height, int64_t width) {
  Tensor t = Tensor::empty({count, height, width, 3});
  float* p = t.data<float>();
  for (int64_t f = 0; f < count; ++f)
    for (int64_t y = 0; y < height; ++y)
      for (int64_t x = 0; x < width; ++x) {
        const double u = static_cast<double>(x) / width, v = static_cast<double>(y) / height;
        const double s = 0.15 * f;
        float* px = p + ((f * height + y) * width + x) * 3;
        px[0] = static_cast<float>(0.5 + 0.4 * std::sin(6.0 * u + s));
        px[1] = static_cast<float>(0.5 + 0.4 * std::cos(5.0 * v - s));
        px[2] = static_cast<float>(0.5 + 0.35 * std::sin(4.0 * (u + v) + 2 * s));
      }
  return t;
}

double psnr(const Tensor& a, const Tensor& b) {
  const std::vector<float> x = a.to_float_vector(), y = b.to_float_vector();
  double se = 0;
  for (size_t i = 0; i < x.size(); ++i) se += (x[i] - y[i]) * static_cast<double>(x[i] - y[i]);
  return 10.0 * std::log10(1.0 / (se / static_cast<double>(x.size())));
}

std::string run_command(const std::string& cmd) {
  std::string out;
  FILE* pipe = popen(cmd.c_str(), "r");
  if (!pipe) return out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, pipe)) > 0) out.append(buf, n);
  pclose(pipe);
  return out;
}

// What ffprobe (an independent reader) says about the first video stream of `path`.
nlohmann::json probe(const std::string& path) {
  const std::string out = run_command(
      "ffprobe -v error -select_streams v:0 -count_frames -show_entries "
      "stream=codec_name,pix_fmt,width,height,r_frame_rate,avg_frame_rate,nb_read_frames,"
      "time_base -of json '" +
      path + "'");
  const nlohmann::json j = nlohmann::json::parse(out, nullptr, false);
  if (j.is_discarded() || !j.contains("streams") || j["streams"].empty()) return {};
  return j["streams"][0];
}

class VideoTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/freeswim_video_test_XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (fs::path(dir_) / name).string(); }
  std::vector<std::string> listing() const {
    std::vector<std::string> names;
    for (const auto& e : fs::directory_iterator(dir_)) names.push_back(e.path().filename());
    std::sort(names.begin(), names.end());
    return names;
  }
  std::string dir_;
};

// Runs `fn`, which must throw Error whose message contains every one of `parts`.
template <typename Fn>
void expect_error(Fn fn, std::initializer_list<std::string> parts) {
  try {
    fn();
    ADD_FAILURE() << "no error thrown";
  } catch (const Error& e) {
    for (const std::string& p : parts)
      EXPECT_NE(std::string(e.what()).find(p), std::string::npos)
          << "message '" << e.what() << "' lacks '" << p << "'";
  }
}

TEST_F(VideoTest, RoundTripKeepsFramesSizeAndRate) {
  const Tensor frames = synthetic_frames(9, 64, 96);
  write_mp4(path("a.mp4"), frames, 16.0);
  EXPECT_EQ(listing(), std::vector<std::string>{"a.mp4"});  // no temporary left
  const DecodedVideo back = read_video(path("a.mp4"));
  ASSERT_EQ(back.frames.shape(), frames.shape());
  EXPECT_EQ(back.fps.num, 16);
  EXPECT_EQ(back.fps.den, 1);
  // 8-bit, 4:2:0 and crf 17 on smooth content: well above 35 dB; a colour-matrix or
  // range mismatch between writer and reader drops it below 30.
  EXPECT_GT(psnr(back.frames, frames), 35.0);
}

TEST_F(VideoTest, FfprobeSeesH264Yuv420pSizeFramesAndFps) {
  write_mp4(path("b.mp4"), synthetic_frames(13, 48, 80), FrameRate{16, 1});
  const nlohmann::json s = probe(path("b.mp4"));
  ASSERT_FALSE(s.empty()) << "ffprobe could not read the file";
  EXPECT_EQ(s["codec_name"], "h264");
  EXPECT_EQ(s["pix_fmt"], "yuv420p");
  EXPECT_EQ(s["width"], 80);
  EXPECT_EQ(s["height"], 48);
  EXPECT_EQ(s["nb_read_frames"], "13");
  EXPECT_EQ(s["r_frame_rate"], "16/1");
  EXPECT_EQ(s["avg_frame_rate"], "16/1");
}

TEST_F(VideoTest, FractionalRateIsExact) {
  write_mp4(path("ntsc.mp4"), synthetic_frames(5, 32, 32), 30000.0 / 1001.0);
  const nlohmann::json s = probe(path("ntsc.mp4"));
  ASSERT_FALSE(s.empty());
  EXPECT_EQ(s["avg_frame_rate"], "30000/1001");
  EXPECT_EQ(s["nb_read_frames"], "5");
  const DecodedVideo back = read_video(path("ntsc.mp4"));
  EXPECT_EQ(back.fps.num, 30000);
  EXPECT_EQ(back.fps.den, 1001);
}

TEST_F(VideoTest, OverwritesAnExistingFileWhole) {
  write_mp4(path("c.mp4"), synthetic_frames(3, 32, 32), 8.0);
  write_mp4(path("c.mp4"), synthetic_frames(7, 16, 64), 8.0);
  const nlohmann::json s = probe(path("c.mp4"));
  EXPECT_EQ(s["width"], 64);
  EXPECT_EQ(s["nb_read_frames"], "7");
  EXPECT_EQ(listing(), std::vector<std::string>{"c.mp4"});
}

TEST_F(VideoTest, OddSizeRefusedAndNothingWritten) {
  expect_error([&] { write_mp4(path("odd.mp4"), synthetic_frames(2, 65, 96), 16.0); },
               {"odd.mp4", "96x65", "even"});
  expect_error([&] { write_mp4(path("odd.mp4"), synthetic_frames(2, 64, 33), 16.0); },
               {"odd.mp4", "33x64"});
  EXPECT_TRUE(listing().empty());
}

TEST_F(VideoTest, BadFramesRefusedAndNothingWritten) {
  Tensor nan_frames = synthetic_frames(3, 16, 16);
  nan_frames.data<float>()[2 * 16 * 16 * 3 + 5] = std::nanf("");
  expect_error([&] { write_mp4(path("nan.mp4"), nan_frames, 16.0); },
               {"nan.mp4", "frame 2", "NaN"});
  expect_error(
      [&] {
        write_mp4(path("chw.mp4"), Tensor::zeros({2, 3, 16, 16}), 16.0);
      },
      {"chw.mp4", "[2, 3, 16, 16]"});
  expect_error([&] { write_mp4(path("fps.mp4"), synthetic_frames(2, 16, 16), 0.0); },
               {"frame rate"});
  EXPECT_TRUE(listing().empty());
}

TEST_F(VideoTest, UnwritablePathRefused) {
  expect_error([&] { write_mp4(path("missing/dir/x.mp4"), synthetic_frames(2, 16, 16), 16.0); },
               {"missing/dir/x.mp4"});
  std::ofstream(path("plainfile")) << "x";
  expect_error([&] { write_mp4(path("plainfile/x.mp4"), synthetic_frames(2, 16, 16), 16.0); },
               {"plainfile/x.mp4"});
  // A directory where the file should go: the temporary is written, the rename fails, and the
  // temporary must be gone again.
  fs::create_directory(path("taken.mp4"));
  fs::create_directory(path("taken.mp4/inner"));
  expect_error([&] { write_mp4(path("taken.mp4"), synthetic_frames(2, 16, 16), 16.0); },
               {"taken.mp4"});
  EXPECT_EQ(listing(), (std::vector<std::string>{"plainfile", "taken.mp4"}));
}

TEST_F(VideoTest, MissingOrCorruptInputRefused) {
  expect_error([&] { read_video(path("nope.mp4")); }, {"nope.mp4", "no such file"});
  std::ofstream(path("text.mp4")) << "this is not a video at all\n";
  expect_error([&] { read_video(path("text.mp4")); }, {"text.mp4"});
  std::ofstream(path("empty.mp4")).close();
  expect_error([&] { read_video(path("empty.mp4")); }, {"empty.mp4"});
  // A real mp4 cut after its first 200 bytes: the header is there, the rest is not.
  write_mp4(path("whole.mp4"), synthetic_frames(5, 32, 32), 16.0);
  {
    std::ifstream in(path("whole.mp4"), std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), {});
    std::ofstream(path("cut.mp4"), std::ios::binary).write(bytes.data(), 200);
  }
  expect_error([&] { read_video(path("cut.mp4")); }, {"cut.mp4"});
  expect_error([&] { read_video(dir_); }, {dir_});
}

TEST_F(VideoTest, MaxFramesLimitsDecoding) {
  write_mp4(path("d.mp4"), synthetic_frames(9, 32, 48), 16.0);
  EXPECT_EQ(read_video(path("d.mp4"), 4).frames.shape(), (Shape{4, 32, 48, 3}));
  EXPECT_EQ(read_video(path("d.mp4"), 100).frames.dim(0), 9);
}

// Reads a PNG back with libpng as packed RGB.
std::vector<uint8_t> read_png(const std::string& file, int& width, int& height) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  if (!png_image_begin_read_from_file(&image, file.c_str())) return {};
  image.format = PNG_FORMAT_RGB;
  std::vector<uint8_t> rgb(PNG_IMAGE_SIZE(image));
  if (!png_image_finish_read(&image, nullptr, rgb.data(), 0, nullptr)) return {};
  width = static_cast<int>(image.width);
  height = static_cast<int>(image.height);
  return rgb;
}

TEST_F(VideoTest, PngFramesInDirectoryAreExact) {
  Tensor frames = synthetic_frames(3, 10, 7);  // odd sizes are fine for PNG
  frames.data<float>()[0] = -0.2f;             // clamped
  frames.data<float>()[1] = 1.7f;
  frames.data<float>()[2] = 0.5f / 255.0f;  // a tie: rounds to even (0)
  const std::vector<std::string> files = write_png_frames(path("pngs"), frames);
  ASSERT_EQ(files.size(), 3u);
  EXPECT_EQ(files[2], path("pngs/frame_00002.png"));
  const float* src = frames.data<float>();
  for (int f = 0; f < 3; ++f) {
    int w = 0, h = 0;
    const std::vector<uint8_t> rgb = read_png(files[static_cast<size_t>(f)], w, h);
    ASSERT_EQ(w, 7);
    ASSERT_EQ(h, 10);
    for (size_t i = 0; i < rgb.size(); ++i)
      ASSERT_EQ(rgb[i], float_to_u8(src[f * 10 * 7 * 3 + static_cast<int64_t>(i)]))
          << f << ":" << i;
  }
  int w = 0, h = 0;
  const std::vector<uint8_t> first = read_png(files[0], w, h);
  EXPECT_EQ(first[0], 0);
  EXPECT_EQ(first[1], 255);
  EXPECT_EQ(first[2], 0);
}

TEST_F(VideoTest, PngPatternAndBadPatterns) {
  const std::vector<std::string> files =
      write_png_frames(path("out/f%03d.png"), synthetic_frames(2, 4, 4));
  EXPECT_EQ(files, (std::vector<std::string>{path("out/f000.png"), path("out/f001.png")}));
  EXPECT_TRUE(fs::exists(files[1]));
  EXPECT_EQ(png_frame_path("a%%b%d.png", 12), "a%b12.png");
  EXPECT_EQ(png_frame_path("x%4d.png", 7), "x   7.png");
  expect_error([&] { png_frame_path("f%s.png", 0); }, {"f%s.png"});
  expect_error([&] { png_frame_path("f%d%d.png", 0); }, {"f%d%d.png", "exactly one"});
  expect_error([&] { png_frame_path("f%", 0); }, {"lone"});
  expect_error([&] { write_png_frames(path("bad%x"), synthetic_frames(1, 4, 4)); }, {"bad%x"});
  EXPECT_EQ(listing(), std::vector<std::string>{"out"});
}

TEST_F(VideoTest, PngFailureRemovesFramesAlreadyWritten) {
  Tensor frames = synthetic_frames(3, 4, 4);
  frames.data<float>()[2 * 4 * 4 * 3] = std::nanf("");  // frame 2 is bad
  expect_error([&] { write_png_frames(path("p"), frames); }, {"frame 2", "NaN"});
  EXPECT_TRUE(fs::is_empty(path("p")));
}

TEST(FrameRate, FromDouble) {
  EXPECT_EQ(FrameRate::from_double(16).str(), "16");
  EXPECT_EQ(FrameRate::from_double(24000.0 / 1001).str(), "24000/1001");
  EXPECT_EQ(FrameRate::from_double(59.94005994005994).str(), "60000/1001");
  EXPECT_EQ(FrameRate::from_double(12.5).str(), "25/2");
  EXPECT_THROW(FrameRate::from_double(-1), Error);
  EXPECT_THROW(FrameRate::from_double(std::nan("")), Error);
  EXPECT_THROW(FrameRate::from_double(1e9), Error);
}

TEST(Pixels, RoundingMatchesNumpy) {
  // numpy: (x * 255).round() rounds half to even.
  EXPECT_EQ(float_to_u8(0.0f), 0);
  EXPECT_EQ(float_to_u8(1.0f), 255);
  EXPECT_EQ(float_to_u8(1.5f / 255.0f), 2);
  EXPECT_EQ(float_to_u8(2.5f / 255.0f), 2);
  EXPECT_EQ(float_to_u8(0.6f / 255.0f), 1);
  EXPECT_EQ(float_to_u8(-3.0f), 0);
  EXPECT_EQ(float_to_u8(4.0f), 255);
}

}  // namespace
}  // namespace freeswim::video

#include "video/png_frames.h"

#include <png.h>

#include <cstdio>
#include <filesystem>

#include "core/error.h"
#include "video/atomic_file.h"
#include "video/pixels.h"

namespace freeswim::video {

namespace {

bool is_pattern(const std::string& s) {
  return s.find('%') != std::string::npos;
}

// Expands the one integer conversion of `pattern` (validated here, never handed to printf, so
// a user's string cannot become a format-string attack).
std::string expand(const std::string& pattern, int64_t index) {
  std::string out;
  int conversions = 0;
  for (size_t i = 0; i < pattern.size(); ++i) {
    if (pattern[i] != '%') {
      out += pattern[i];
      continue;
    }
    FS_CHECK(i + 1 < pattern.size(), "frame pattern '{}' ends with a lone '%'", pattern);
    if (pattern[i + 1] == '%') {
      out += '%';
      ++i;
      continue;
    }
    size_t j = i + 1;
    const bool zero_pad = pattern[j] == '0';
    if (zero_pad) ++j;
    int width = 0;
    while (j < pattern.size() && pattern[j] >= '0' && pattern[j] <= '9' && width < 100)
      width = width * 10 + (pattern[j++] - '0');
    FS_CHECK(j < pattern.size() && pattern[j] == 'd' && width <= 32,
             "frame pattern '{}': only %d or %0Nd (N <= 32) may follow '%'", pattern);
    std::string digits = std::to_string(index);
    if (static_cast<int>(digits.size()) < width)
      digits.insert(0, static_cast<size_t>(width) - digits.size(), zero_pad ? '0' : ' ');
    out += digits;
    ++conversions;
    i = j;
  }
  FS_CHECK(conversions == 1, "frame pattern '{}' must hold exactly one %d (it holds {})", pattern,
           conversions);
  return out;
}

void write_png(const AtomicFile& file, const std::vector<uint8_t>& rgb, int width, int height) {
  png_image image{};
  image.version = PNG_IMAGE_VERSION;
  image.width = static_cast<png_uint_32>(width);
  image.height = static_cast<png_uint_32>(height);
  image.format = PNG_FORMAT_RGB;
  // The simplified libpng API reports errors in image.message instead of longjmp, which would
  // skip C++ destructors.
  const int ok =
      png_image_write_to_file(&image, file.temp_path().c_str(), 0, rgb.data(), width * 3, nullptr);
  const std::string message = image.message;
  png_image_free(&image);
  FS_CHECK(ok != 0, "cannot write '{}': {}", file.final_path(), message);
}

}  // namespace

std::string png_frame_path(const std::string& dir_or_pattern, int64_t index) {
  FS_CHECK(!dir_or_pattern.empty(), "PNG output path is empty");
  if (is_pattern(dir_or_pattern)) return expand(dir_or_pattern, index);
  return (std::filesystem::path(dir_or_pattern) / expand("frame_%05d.png", index)).string();
}

std::vector<std::string> write_png_frames(const std::string& dir_or_pattern, const Tensor& frames) {
  const std::string what = fmt::format("PNG frames '{}'", dir_or_pattern);
  check_frames(frames, what);
  const int64_t count = frames.dim(0), height = frames.dim(1), width = frames.dim(2);
  FS_CHECK(width <= 1'000'000 && height <= 1'000'000, "{}: size {}x{} is too large for PNG", what,
           width, height);
  // Validate the pattern (and learn the directory) before writing anything.
  const std::filesystem::path first(png_frame_path(dir_or_pattern, 0));
  if (first.has_parent_path()) {
    std::error_code ec;
    std::filesystem::create_directories(first.parent_path(), ec);
    FS_CHECK(!ec, "{}: cannot create directory '{}': {}", what, first.parent_path().string(),
             ec.message());
  }
  std::vector<std::string> written;
  try {
    const int64_t pixels = width * height;
    std::vector<uint8_t> rgb(static_cast<size_t>(pixels * 3));
    for (int64_t f = 0; f < count; ++f) {
      frame_to_rgb24(frames.data<float>() + f * pixels * 3, pixels, rgb.data(), what, f);
      AtomicFile file(png_frame_path(dir_or_pattern, f));
      write_png(file, rgb, static_cast<int>(width), static_cast<int>(height));
      file.commit();
      written.push_back(file.final_path());
    }
  } catch (...) {
    for (const std::string& p : written) std::remove(p.c_str());
    throw;
  }
  return written;
}

}  // namespace freeswim::video

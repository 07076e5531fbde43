// The tiny model's mp4 as ffprobe (FFmpeg's own reader, not ours) sees it: the asked size
// (also when it is generated larger and centre-cropped), frame count, frame rate, H.264 and
// yuv420p; and the frames written with --png match the mp4's size and count.
#include <gtest/gtest.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <map>
#include <memory>

#include "cli_runner.h"

namespace freeswim::clitest {
namespace {

// ffprobe's view of the first video stream: key -> value.
std::map<std::string, std::string> probe(const fs::path& mp4) {
  const std::string cmd =
      "ffprobe -v error -select_streams v:0 -count_frames -show_entries "
      "stream=codec_name,pix_fmt,width,height,r_frame_rate,avg_frame_rate,nb_read_frames "
      "-of default=noprint_wrappers=1 '" +
      mp4.string() + "' 2>&1";
  std::unique_ptr<FILE, int (*)(FILE*)> pipe(::popen(cmd.c_str(), "r"), ::pclose);
  std::map<std::string, std::string> kv;
  if (!pipe) return kv;
  char line[512];
  while (std::fgets(line, sizeof line, pipe.get())) {
    std::string s(line);
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    const size_t eq = s.find('=');
    if (eq != std::string::npos) kv[s.substr(0, eq)] = s.substr(eq + 1);
  }
  return kv;
}

struct Case {
  const char* size;
  const char* fps;
  int frames;
  const char* width;
  const char* height;
  const char* rate;  // ffprobe's r_frame_rate
  const char* note;  // the line announcing a crop, empty when none
};

class Mp4Probe : public ::testing::TestWithParam<Case> {};

TEST_P(Mp4Probe, SizeFramesRateCodec) {
  const Case& c = GetParam();
  TempDir d;
  const fs::path mp4 = d / "out.mp4";
  const RunResult r =
      run_freeswim({"generate", "--model", "tiny", "-p", "a fox", "--size", c.size, "--frames",
                    std::to_string(c.frames), "--fps", c.fps, "--base-steps", "2", "--steps", "4",
                    "-o", mp4.string(), "--png", (d / "frames").string()});
  ASSERT_EQ(r.exit_code, 0) << r.describe();
  if (*c.note)
    EXPECT_NE(r.err.find(c.note), std::string::npos) << r.describe();
  else
    EXPECT_EQ(r.err.find("centre-cropped"), std::string::npos) << r.describe();
  const auto kv = probe(mp4);
  EXPECT_EQ(kv.count("codec_name") ? kv.at("codec_name") : "", "h264");
  EXPECT_EQ(kv.count("pix_fmt") ? kv.at("pix_fmt") : "", "yuv420p");
  EXPECT_EQ(kv.count("width") ? kv.at("width") : "", c.width);
  EXPECT_EQ(kv.count("height") ? kv.at("height") : "", c.height);
  EXPECT_EQ(kv.count("nb_read_frames") ? kv.at("nb_read_frames") : "", std::to_string(c.frames));
  EXPECT_EQ(kv.count("r_frame_rate") ? kv.at("r_frame_rate") : "", c.rate);
  // The output folder holds the mp4 and the frames only: no state, no temporary.
  std::vector<std::string> expected{"frames", "out.mp4"};
  for (const auto& name : list_tree(d / "frames")) expected.push_back("frames/" + name);
  std::sort(expected.begin(), expected.end());
  EXPECT_EQ(list_tree(d.path()), expected);
  EXPECT_EQ(list_tree(d / "frames").size(), static_cast<size_t>(c.frames));
}

INSTANTIATE_TEST_SUITE_P(
    Sizes, Mp4Probe,
    ::testing::Values(
        Case{"128x96", "24", 9, "128", "96", "24/1", ""},
        Case{"200x120", "16", 5, "200", "120", "16/1",
             "200x120 is generated at 208x128 (multiples of 16) and centre-cropped to 200x120"},
        // Rates are kept exactly: 29.97 as asked, 30000/1001 for NTSC's 29.97002997.
        Case{"96x64", "29.97", 13, "96", "64", "2997/100", ""},
        Case{"96x64", "29.97002997", 5, "96", "64", "30000/1001", ""},
        Case{"96x64", "12.5", 5, "96", "64", "25/2", ""}),
    [](const auto& p) {
      std::string s = std::string(p.param.size) + "_" + p.param.fps;
      for (auto& ch : s)
        if (!std::isalnum(static_cast<unsigned char>(ch))) ch = '_';
      return s;
    });

}  // namespace
}  // namespace freeswim::clitest

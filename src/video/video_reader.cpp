#include "video/video_reader.h"

#include <filesystem>
#include <vector>

#include "core/error.h"
#include "video/ffmpeg_util.h"

namespace freeswim::video {

namespace {

using namespace detail;

// Decoded frames are kept as RGB24 until the end (a quarter of the float size) because the
// frame count is not known in advance.
struct Rgb24Frames {
  int width = 0, height = 0;
  std::vector<std::vector<uint8_t>> frames;
};

class Converter {
 public:
  explicit Converter(std::string what) : what_(std::move(what)) {}

  void add(const AVFrame* frame, Rgb24Frames& out) {
    if (out.frames.empty()) {
      out.width = frame->width;
      out.height = frame->height;
    }
    FS_CHECK(frame->width == out.width && frame->height == out.height,
             "{}: frame {} is {}x{} but the video started at {}x{}", what_, out.frames.size(),
             frame->width, frame->height, out.width, out.height);
    const auto format = static_cast<AVPixelFormat>(frame->format);
    if (!sws_ || format != format_) {
      sws_.reset(sws_getContext(
          frame->width, frame->height, format, frame->width, frame->height, AV_PIX_FMT_RGB24,
          SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, nullptr, nullptr, nullptr));
      FS_CHECK(sws_ != nullptr, "{}: cannot convert pixel format '{}' to RGB", what_,
               av_get_pix_fmt_name(format) ? av_get_pix_fmt_name(format) : "unknown");
      format_ = format;
      // Use the colour matrix the file declares; untagged video is taken as BT.601 (FFmpeg's
      // own default), except that HD sizes are BT.709 by convention.
      int space = frame->colorspace;
      if (space == AVCOL_SPC_UNSPECIFIED || space == AVCOL_SPC_RGB)
        space = frame->height >= 720 ? SWS_CS_ITU709 : SWS_CS_ITU601;
      const int full_range = frame->color_range == AVCOL_RANGE_JPEG;
      sws_setColorspaceDetails(sws_.get(), sws_getCoefficients(space), full_range,
                               sws_getCoefficients(SWS_CS_DEFAULT), 1, 0, 1 << 16, 1 << 16);
    }
    std::vector<uint8_t> rgb(static_cast<size_t>(frame->width) * frame->height * 3);
    uint8_t* planes[1] = {rgb.data()};
    const int strides[1] = {frame->width * 3};
    sws_scale(sws_.get(), frame->data, frame->linesize, 0, frame->height, planes, strides);
    out.frames.push_back(std::move(rgb));
  }

 private:
  std::string what_;
  SwsPtr sws_;
  AVPixelFormat format_ = AV_PIX_FMT_NONE;
};

}  // namespace

DecodedVideo read_video(const std::string& path, int64_t max_frames) {
  const std::string what = fmt::format("video '{}'", path);
  std::error_code ec;
  FS_CHECK(std::filesystem::is_regular_file(path, ec), "{}: no such file", what);
  quiet_ffmpeg_logs();

  AVFormatContext* raw_in = nullptr;
  int rc = avformat_open_input(&raw_in, path.c_str(), nullptr, nullptr);
  FS_CHECK(rc >= 0, "{}: cannot be read as a video: {}", what, av_error_text(rc));
  InputPtr in(raw_in);
  rc = avformat_find_stream_info(in.get(), nullptr);
  FS_CHECK(rc >= 0, "{}: corrupt or unsupported video: {}", what, av_error_text(rc));
  const AVCodec* codec = nullptr;
  const int index = av_find_best_stream(in.get(), AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
  FS_CHECK(index >= 0 && codec != nullptr, "{}: holds no decodable video stream", what);
  const AVStream* stream = in->streams[index];

  CodecContextPtr dec(avcodec_alloc_context3(codec));
  FS_CHECK(dec != nullptr, "{}: out of memory allocating the decoder", what);
  rc = avcodec_parameters_to_context(dec.get(), stream->codecpar);
  FS_CHECK(rc >= 0, "{}: bad stream parameters: {}", what, av_error_text(rc));
  rc = avcodec_open2(dec.get(), codec, nullptr);
  FS_CHECK(rc >= 0, "{}: cannot open the '{}' decoder: {}", what, codec->name, av_error_text(rc));

  AVRational rate = stream->avg_frame_rate;
  if (rate.num <= 0 || rate.den <= 0)
    rate = av_guess_frame_rate(in.get(), in->streams[index], nullptr);
  FS_CHECK(rate.num > 0 && rate.den > 0, "{}: the frame rate is unknown", what);

  FramePtr frame(av_frame_alloc());
  PacketPtr pkt(av_packet_alloc());
  FS_CHECK(frame && pkt, "{}: out of memory allocating frames", what);
  Converter convert(what);
  Rgb24Frames decoded;
  const auto enough = [&] {
    return max_frames > 0 && static_cast<int64_t>(decoded.frames.size()) >= max_frames;
  };
  // Receives every frame the decoder has ready; false once it is drained for good.
  const auto drain = [&]() -> bool {
    while (!enough()) {
      const int r = avcodec_receive_frame(dec.get(), frame.get());
      if (r == AVERROR(EAGAIN)) return true;
      if (r == AVERROR_EOF) return false;
      FS_CHECK(r >= 0, "{}: corrupt video data at frame {}: {}", what, decoded.frames.size(),
               av_error_text(r));
      convert.add(frame.get(), decoded);
      av_frame_unref(frame.get());
    }
    return true;
  };

  bool input_left = true;
  while (input_left && !enough()) {
    rc = av_read_frame(in.get(), pkt.get());
    if (rc == AVERROR_EOF) {
      input_left = false;
      rc = avcodec_send_packet(dec.get(), nullptr);  // flush
    } else {
      FS_CHECK(rc >= 0, "{}: read error after {} frames: {}", what, decoded.frames.size(),
               av_error_text(rc));
      if (pkt->stream_index != index) {
        av_packet_unref(pkt.get());
        continue;
      }
      rc = avcodec_send_packet(dec.get(), pkt.get());
      av_packet_unref(pkt.get());
    }
    FS_CHECK(rc >= 0 || rc == AVERROR_EOF, "{}: corrupt video data at frame {}: {}", what,
             decoded.frames.size(), av_error_text(rc));
    drain();
  }
  FS_CHECK(!decoded.frames.empty(), "{}: no frame could be decoded", what);

  const int64_t count = static_cast<int64_t>(decoded.frames.size());
  const int64_t plane = static_cast<int64_t>(decoded.width) * decoded.height * 3;
  DecodedVideo result;
  result.frames = Tensor::empty({count, decoded.height, decoded.width, 3});
  float* dst = result.frames.data<float>();
  for (int64_t f = 0; f < count; ++f) {
    const uint8_t* src = decoded.frames[static_cast<size_t>(f)].data();
    for (int64_t i = 0; i < plane; ++i) dst[f * plane + i] = src[i] * (1.0f / 255.0f);
  }
  result.fps = FrameRate{rate.num, rate.den};
  return result;
}

}  // namespace freeswim::video

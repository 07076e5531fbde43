#include "video/mp4_writer.h"

extern "C" {
#include <libavutil/opt.h>
}

#include <vector>

#include "core/error.h"
#include "video/atomic_file.h"
#include "video/ffmpeg_util.h"
#include "video/pixels.h"

namespace freeswim::video {

namespace {

using namespace detail;

const AVCodec* find_h264_encoder() {
  // libx264 gives the best quality per bit and honours crf; any other H.264 encoder (hardware
  // ones, openh264) is a fallback that may not open on this machine.
  if (const AVCodec* c = avcodec_find_encoder_by_name("libx264")) return c;
  return avcodec_find_encoder(AV_CODEC_ID_H264);
}

// Sends one frame (or nullptr to flush) and writes every packet the encoder has ready.
void encode(AVCodecContext* enc, const AVFrame* frame, AVFormatContext* out, AVStream* stream,
            AVPacket* pkt, const std::string& path) {
  int rc = avcodec_send_frame(enc, frame);
  FS_CHECK(rc >= 0, "writing '{}': the H.264 encoder refused a frame: {}", path, av_error_text(rc));
  while (true) {
    rc = avcodec_receive_packet(enc, pkt);
    if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return;
    FS_CHECK(rc >= 0, "writing '{}': H.264 encoding failed: {}", path, av_error_text(rc));
    // The muxer may pick its own time base (mp4 timescale); packets carry the encoder's.
    av_packet_rescale_ts(pkt, enc->time_base, stream->time_base);
    pkt->stream_index = stream->index;
    rc = av_interleaved_write_frame(out, pkt);
    FS_CHECK(rc >= 0, "writing '{}' failed: {}", path, av_error_text(rc));
  }
}

}  // namespace

std::string h264_encoder_name() {
  const AVCodec* c = find_h264_encoder();
  FS_CHECK(c != nullptr, "this FFmpeg build has no H.264 encoder (install FFmpeg with libx264)");
  return c->name;
}

void write_mp4(const std::string& path, const Tensor& frames, double fps) {
  write_mp4(path, frames, FrameRate::from_double(fps));
}

void write_mp4(const std::string& path, const Tensor& frames, FrameRate fps,
               const Mp4Options& options) {
  const std::string what = fmt::format("mp4 '{}'", path);
  check_frames(frames, what);
  FS_CHECK(fps.num > 0 && fps.den > 0, "{}: invalid frame rate {}/{}", what, fps.num, fps.den);
  const int64_t count = frames.dim(0), height = frames.dim(1), width = frames.dim(2);
  FS_CHECK(width % 2 == 0 && height % 2 == 0,
           "{}: size {}x{} (width x height) is odd; H.264 in yuv420p needs even width and height",
           what, width, height);
  FS_CHECK(width <= 16384 && height <= 16384, "{}: size {}x{} is larger than H.264 allows", what,
           width, height);
  quiet_ffmpeg_logs();
  const AVCodec* codec = find_h264_encoder();
  FS_CHECK(codec != nullptr,
           "{}: this FFmpeg build has no H.264 encoder (install FFmpeg with libx264)", what);

  AtomicFile file(path);
  AVFormatContext* raw_out = nullptr;
  int rc = avformat_alloc_output_context2(&raw_out, nullptr, "mp4", file.temp_path().c_str());
  FS_CHECK(rc >= 0 && raw_out, "{}: cannot set up the mp4 muxer: {}", what, av_error_text(rc));
  OutputPtr out(raw_out);

  CodecContextPtr enc(avcodec_alloc_context3(codec));
  FS_CHECK(enc != nullptr, "{}: out of memory allocating the encoder", what);
  enc->width = static_cast<int>(width);
  enc->height = static_cast<int>(height);
  enc->pix_fmt = AV_PIX_FMT_YUV420P;
  enc->time_base = AVRational{fps.den, fps.num};  // one tick per frame
  enc->framerate = AVRational{fps.num, fps.den};
  enc->color_range = AVCOL_RANGE_MPEG;
  enc->colorspace = AVCOL_SPC_BT709;
  enc->color_primaries = AVCOL_PRI_BT709;
  enc->color_trc = AVCOL_TRC_BT709;
  if (out->oformat->flags & AVFMT_GLOBALHEADER) enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
  if (std::string(codec->name) == "libx264") {
    av_opt_set(enc->priv_data, "preset", options.preset.c_str(), 0);
    av_opt_set(enc->priv_data, "crf", std::to_string(options.crf).c_str(), 0);
  }
  rc = avcodec_open2(enc.get(), codec, nullptr);
  FS_CHECK(rc >= 0, "{}: cannot open the H.264 encoder '{}' ({}); FFmpeg with libx264 is needed",
           what, codec->name, av_error_text(rc));

  AVStream* stream = avformat_new_stream(out.get(), nullptr);
  FS_CHECK(stream != nullptr, "{}: cannot add a video stream", what);
  rc = avcodec_parameters_from_context(stream->codecpar, enc.get());
  FS_CHECK(rc >= 0, "{}: cannot copy encoder parameters: {}", what, av_error_text(rc));
  stream->time_base = enc->time_base;
  stream->avg_frame_rate = enc->framerate;
  stream->r_frame_rate = enc->framerate;

  rc = avio_open(&out->pb, file.temp_path().c_str(), AVIO_FLAG_WRITE);
  FS_CHECK(rc >= 0, "cannot write '{}': {}", path, av_error_text(rc));
  // faststart: the index goes first so players and browsers can start before the whole file
  // has arrived.
  AVDictionary* mux_opts = nullptr;
  av_dict_set(&mux_opts, "movflags", "+faststart", 0);
  rc = avformat_write_header(out.get(), &mux_opts);
  av_dict_free(&mux_opts);
  FS_CHECK(rc >= 0, "{}: cannot write the mp4 header: {}", what, av_error_text(rc));

  // RGB24 -> yuv420p with BT.709 limited-range coefficients, matching the tags above.
  SwsPtr sws(sws_getContext(enc->width, enc->height, AV_PIX_FMT_RGB24, enc->width, enc->height,
                            AV_PIX_FMT_YUV420P, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INP,
                            nullptr, nullptr, nullptr));
  FS_CHECK(sws != nullptr, "{}: cannot set up the RGB to yuv420p conversion", what);
  const int* bt709 = sws_getCoefficients(SWS_CS_ITU709);
  sws_setColorspaceDetails(sws.get(), bt709, /*srcRange=full*/ 1, bt709, /*dstRange=limited*/ 0, 0,
                           1 << 16, 1 << 16);

  FramePtr yuv(av_frame_alloc());
  PacketPtr pkt(av_packet_alloc());
  FS_CHECK(yuv && pkt, "{}: out of memory allocating frames", what);
  yuv->format = enc->pix_fmt;
  yuv->width = enc->width;
  yuv->height = enc->height;
  rc = av_frame_get_buffer(yuv.get(), 0);
  FS_CHECK(rc >= 0, "{}: cannot allocate a frame: {}", what, av_error_text(rc));

  const int64_t pixels = width * height;
  std::vector<uint8_t> rgb(static_cast<size_t>(pixels * 3));
  const float* src = frames.data<float>();
  for (int64_t f = 0; f < count; ++f) {
    frame_to_rgb24(src + f * pixels * 3, pixels, rgb.data(), what, f);
    // The encoder may still hold the previous frame's buffer (lookahead).
    rc = av_frame_make_writable(yuv.get());
    FS_CHECK(rc >= 0, "{}: cannot allocate a frame: {}", what, av_error_text(rc));
    const uint8_t* planes[1] = {rgb.data()};
    const int strides[1] = {static_cast<int>(width * 3)};
    sws_scale(sws.get(), planes, strides, 0, enc->height, yuv->data, yuv->linesize);
    yuv->pts = f;
    encode(enc.get(), yuv.get(), out.get(), stream, pkt.get(), path);
  }
  encode(enc.get(), nullptr, out.get(), stream, pkt.get(), path);
  rc = av_write_trailer(out.get());
  FS_CHECK(rc >= 0, "{}: cannot finish the mp4: {}", what, av_error_text(rc));
  rc = avio_closep(&out->pb);
  FS_CHECK(rc >= 0, "cannot write '{}': {}", path, av_error_text(rc));
  out.reset();
  file.commit();
}

}  // namespace freeswim::video

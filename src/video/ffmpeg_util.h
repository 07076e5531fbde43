// Ownership of FFmpeg objects (each freed by its own function) and FFmpeg error text. Internal
// to fs_video: nothing outside this folder includes FFmpeg headers.
#pragma once

extern "C" {
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/pixdesc.h>
#include <libswscale/swscale.h>
}

#include <memory>
#include <string>

namespace freeswim::video::detail {

struct CodecContextFree {
  void operator()(AVCodecContext* p) const { avcodec_free_context(&p); }
};
struct FrameFree {
  void operator()(AVFrame* p) const { av_frame_free(&p); }
};
struct PacketFree {
  void operator()(AVPacket* p) const { av_packet_free(&p); }
};
struct SwsFree {
  void operator()(SwsContext* p) const { sws_freeContext(p); }
};
// An input context is closed (avformat_close_input), an output one freed after closing its
// file (avio_closep + avformat_free_context).
struct InputFree {
  void operator()(AVFormatContext* p) const { avformat_close_input(&p); }
};
struct OutputFree {
  void operator()(AVFormatContext* p) const {
    if (p->pb && !(p->oformat->flags & AVFMT_NOFILE)) avio_closep(&p->pb);
    avformat_free_context(p);
  }
};

using CodecContextPtr = std::unique_ptr<AVCodecContext, CodecContextFree>;
using FramePtr = std::unique_ptr<AVFrame, FrameFree>;
using PacketPtr = std::unique_ptr<AVPacket, PacketFree>;
using SwsPtr = std::unique_ptr<SwsContext, SwsFree>;
using InputPtr = std::unique_ptr<AVFormatContext, InputFree>;
using OutputPtr = std::unique_ptr<AVFormatContext, OutputFree>;

std::string av_error_text(int code);

// FFmpeg prints encoder statistics at its default level; keep the library quiet unless it has
// an error to report (our own messages say what failed). Called before any FFmpeg work.
void quiet_ffmpeg_logs();

}  // namespace freeswim::video::detail

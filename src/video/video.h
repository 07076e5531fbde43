// Video in and out: the one header the pipeline and the CLI include.
#pragma once

#include "video/frame_rate.h"
#include "video/mp4_writer.h"
#include "video/png_frames.h"
#include "video/video_reader.h"

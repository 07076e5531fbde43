// Output sizes users ask for versus sizes the model can make. Wan works on a 16-pixel grid
// (8x VAE downsampling, then 2x2 patches), so `--size 1920x1080` is generated at the next
// multiple of 16 (1920x1088) and the centre cropped back to what was asked; the reference simply
// fails on 1080.
#pragma once

#include <cstdint>
#include <string>

#include "core/tensor.h"
#include "pipeline/upsample.h"

namespace freeswim::pipeline {

struct CropBox {
  int64_t x = 0, y = 0;  // top-left corner in the generated frame
  int64_t width = 0, height = 0;
};

struct SizePlan {
  int64_t width = 0, height = 0;          // what the user asked for
  int64_t gen_width = 0, gen_height = 0;  // what the model generates
  CropBox crop;                           // the part of the generated frames that is output

  bool cropped() const { return gen_width != width || gen_height != height; }
  // One line for the user, e.g. "1920x1080 is generated at 1920x1088 (multiples of 16) and
  // centre-cropped to 1920x1080"; empty when nothing is cropped.
  std::string note() const;
};

// Throws Error naming `flag` unless width and height are positive and at most 16384.
SizePlan plan_size(int64_t width, int64_t height, int64_t multiple = 16,
                   const std::string& flag = "--size");

// Parses "WxH" (e.g. "1920x1080"; 'X' accepted too); throws Error naming `flag` and the text.
SizePlan parse_size(const std::string& text, int64_t multiple = 16,
                    const std::string& flag = "--size");

// The `box` region of every frame (a copy), in `layout`; throws Error naming the box and the
// frame size when it does not fit.
Tensor crop_frames(const Tensor& frames, const CropBox& box, FrameLayout layout);

}  // namespace freeswim::pipeline

// Where one tensor of a checkpoint file is and what it holds (shared by the file readers).
#pragma once

#include <cstddef>
#include <string>

#include "core/tensor.h"

namespace freeswim::io {

struct TensorInfo {
  std::string name;
  DType dtype = DType::F32;
  Shape shape;
  size_t begin = 0;  // byte offset into the data section
  size_t nbytes = 0;
};

}  // namespace freeswim::io

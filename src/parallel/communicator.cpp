#include "parallel/communicator.h"

#include <cstring>
#include <utility>

#include "core/error.h"

namespace freeswim::parallel {

int normalise_dim(int dim, int ndim, const std::string& what) {
  const int d = dim < 0 ? dim + ndim : dim;
  FS_CHECK(d >= 0 && d < ndim, "{}: dimension {} out of range for a tensor of {} dimensions", what,
           dim, ndim);
  return d;
}

WorldLayout world_layout(int world, bool with_uncond) {
  FS_CHECK(world >= 1, "a run needs at least one rank, got {}", world);
  WorldLayout l;
  if (with_uncond && world % 2 == 0) l.cfg = 2;
  l.seq = world / l.cfg;
  return l;
}

DimView dim_view(const Shape& shape, int dim, size_t element_bytes, const std::string& what) {
  const int d = normalise_dim(dim, static_cast<int>(shape.size()), what);
  DimView v;
  v.element_bytes = element_bytes;
  for (int i = 0; i < d; ++i) v.outer *= shape[static_cast<size_t>(i)];
  v.extent = shape[static_cast<size_t>(d)];
  for (size_t i = static_cast<size_t>(d) + 1; i < shape.size(); ++i) v.inner *= shape[i];
  return v;
}

Shape split_shape(const Shape& shape, int dim, int parts, const std::string& what) {
  const int d = normalise_dim(dim, static_cast<int>(shape.size()), what);
  const int64_t n = shape[static_cast<size_t>(d)];
  FS_CHECK(parts > 0 && n % parts == 0,
           "{}: dimension {} of {} has {} entries, not a multiple of the {} ranks", what, d,
           shape_str(shape), n, parts);
  Shape s = shape;
  s[static_cast<size_t>(d)] = n / parts;
  return s;
}

Shape join_shape(const Shape& shape, int dim, int parts) {
  const int d = normalise_dim(dim, static_cast<int>(shape.size()), "join");
  Shape s = shape;
  s[static_cast<size_t>(d)] *= parts;
  return s;
}

std::vector<Copy2D> split_copies(const Shape& shape, size_t element_bytes, int dim, int parts) {
  const Shape part = split_shape(shape, dim, parts, "split");
  const DimView v = dim_view(shape, dim, element_bytes, "split");
  const size_t row = static_cast<size_t>(v.extent * v.inner) * element_bytes;
  const size_t width = row / static_cast<size_t>(parts);
  const size_t chunk = width * static_cast<size_t>(v.outer);
  std::vector<Copy2D> out;
  for (int j = 0; j < parts; ++j) {
    Copy2D c;
    c.src_offset = static_cast<size_t>(j) * width;
    c.src_pitch = row;
    c.dst_offset = static_cast<size_t>(j) * chunk;
    c.dst_pitch = width;
    c.width = width;
    c.height = static_cast<size_t>(v.outer);
    out.push_back(c);
  }
  return out;
}

std::vector<Copy2D> join_copies(const Shape& part, size_t element_bytes, int dim, int parts) {
  // Joining is splitting the joined tensor with source and destination swapped.
  std::vector<Copy2D> out = split_copies(join_shape(part, dim, parts), element_bytes, dim, parts);
  for (Copy2D& c : out) {
    std::swap(c.src_offset, c.dst_offset);
    std::swap(c.src_pitch, c.dst_pitch);
  }
  return out;
}

void host_copy(void* dst, const void* src, const Copy2D& c) {
  if (c.width == 0) return;
  auto* d = static_cast<char*>(dst) + c.dst_offset;
  const auto* s = static_cast<const char*>(src) + c.src_offset;
  for (size_t r = 0; r < c.height; ++r)
    std::memcpy(d + r * c.dst_pitch, s + r * c.src_pitch, c.width);
}

}  // namespace freeswim::parallel

#include "io_test_util.h"

#include <gtest/gtest.h>
#include <stdlib.h>

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>

#include "core/error.h"
#include "core/tensor.h"
#include "io/safetensors.h"

namespace freeswim::io::test {

TempDir::TempDir() {
  const char* base = std::getenv("TMPDIR");
  std::string tmpl = std::string(base && *base ? base : "/tmp") + "/freeswim_io_XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr) throw std::runtime_error("mkdtemp failed: " + tmpl);
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::vector<uint8_t> read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path);
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

void write_bytes(const std::string& path, const std::vector<uint8_t>& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(reinterpret_cast<const char*>(bytes.data()),
            static_cast<std::streamsize>(bytes.size()));
  if (!out) throw std::runtime_error("cannot write " + path);
}

Parts split(const std::vector<uint8_t>& file) {
  uint64_t n = 0;
  for (int i = 0; i < 8; ++i)
    n |= static_cast<uint64_t>(file.at(static_cast<size_t>(i))) << (8 * i);
  Parts p;
  p.header.assign(reinterpret_cast<const char*>(file.data()) + 8, static_cast<size_t>(n));
  p.data.assign(file.begin() + static_cast<std::ptrdiff_t>(8 + n), file.end());
  return p;
}

std::vector<uint8_t> join(const Parts& parts) {
  // Sized once and filled in place (growing with insert() trips a false -Warray-bounds in
  // GCC 12 at -O3).
  const uint64_t n = parts.header.size();
  std::vector<uint8_t> out(8 + parts.header.size() + parts.data.size());
  for (int i = 0; i < 8; ++i) out[static_cast<size_t>(i)] = static_cast<uint8_t>(n >> (8 * i));
  std::copy(parts.header.begin(), parts.header.end(), out.begin() + 8);
  std::copy(parts.data.begin(), parts.data.end(),
            out.begin() + 8 + static_cast<std::ptrdiff_t>(parts.header.size()));
  return out;
}

std::string write_valid_file(const TempDir& dir, const std::string& name) {
  const std::string path = dir.file(name);
  Tensor beta = Tensor::from_vector({4}, {1.f, -2.f, 0.5f, 3.f}).to(DType::BF16);
  write_safetensors(path,
                    {{"alpha", Tensor::from_vector({2, 3}, {0, 1, 2, 3, 4, 5})},
                     {"beta", beta},
                     {"gamma", Tensor::from_vector({3}, {-1, -2, -3})}},
                    {{"format", "pt"}});
  return path;
}

std::string error_of(const std::function<void()>& f) {
  try {
    f();
  } catch (const Error& e) {
    return e.what();
  }
  ADD_FAILURE() << "expected a freeswim::Error, none was thrown";
  return "";
}

}  // namespace freeswim::io::test

// libFuzzer target for the GGUF validator. Any input must either be refused with
// freeswim::Error or yield a file whose every tensor can be read in full (block formats
// dequantised) and whose metadata can be walked; anything else is a bug.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "io/gguf.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using freeswim::io::GgufFile;
  try {
    auto file = GgufFile::parse("fuzz-input", data, size);
    unsigned sum = 0;
    for (const auto& t : file->tensors()) {
      // Every byte the header promised, so that a range let through wrongly shows up in ASan.
      const uint8_t* p = file->bytes(t);
      for (size_t i = 0; i < t.nbytes; ++i) sum += p[i];
      if (file->find(t.name) != &t) __builtin_trap();
      // Keep dequantisation cheap on large claims; the byte walk above already covers them.
      if (t.nbytes <= (size_t{1} << 16)) {
        const freeswim::Tensor v = file->tensor(t.name);
        if (v.numel() != freeswim::shape_numel(t.shape)) __builtin_trap();
        sum += static_cast<unsigned>(v.nbytes());
      }
    }
    for (const auto& [key, value] : file->metadata()) {
      sum += static_cast<unsigned>(key.size() + value.str.size() + value.raw.size());
      for (uint64_t i = 0; i < value.count && i < 4; ++i) {
        if (auto n = value.number_at(i)) sum += static_cast<unsigned>(*n != 0);
      }
    }
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const freeswim::Error&) {
  }
  return 0;
}

// libFuzzer target for the safetensors validator. Any input must either be refused with
// freeswim::Error or yield a file whose every tensor can be read in full; anything else
// (a crash, a sanitizer report, another exception type) is a bug.
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "core/error.h"
#include "io/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  using freeswim::io::SafetensorsFile;
  try {
    auto file = SafetensorsFile::parse("fuzz-input", data, size);
    // Touch every byte the header promised, so that a range the validator let through but
    // that lies outside the input is caught by AddressSanitizer.
    unsigned sum = 0;
    for (const auto& t : file->tensors()) {
      const uint8_t* p = file->bytes(t);
      for (size_t i = 0; i < t.nbytes; ++i) sum += p[i];
      freeswim::Tensor view = file->tensor(t.name);
      if (view.nbytes() != t.nbytes) __builtin_trap();
      if (file->find(t.name) != &t) __builtin_trap();
    }
    for (const auto& [key, value] : file->metadata())
      sum += static_cast<unsigned>(key.size() + value.size());
    // Keep the reads from being optimised away.
    volatile unsigned sink = sum;
    (void)sink;
  } catch (const freeswim::Error&) {
    // A refused input is the expected outcome for most of them.
  }
  return 0;
}

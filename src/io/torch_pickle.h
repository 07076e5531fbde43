// A restricted unpickler for the `data.pkl` of a torch.save checkpoint. It understands only
// what a (possibly nested) dict of tensors needs: dicts, lists, tuples, strings, numbers,
// collections.OrderedDict, torch._utils._rebuild_tensor_v2 / _rebuild_parameter, the
// torch.*Storage classes and the persistent ids that name storages. Every other global or
// opcode is refused, so a malicious pickle can neither run code nor allocate more than a small
// multiple of its own length; nothing recurses on the depth of the input.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace freeswim::io {

struct PickledStorage {
  std::string key;             // the zip entry `<prefix>/data/<key>`
  std::string type_name;       // e.g. "BFloat16Storage"
  std::optional<DType> dtype;  // nullopt: a torch type freeswim does not load (double, bool)
  uint64_t numel = 0;          // elements of dtype the storage holds
};

struct PickledTensor {
  std::string name;    // dotted path through nested dicts (and list indices)
  size_t storage = 0;  // index into PickledStateDict::storages
  int64_t offset = 0;  // elements into the storage
  Shape shape;
  std::vector<int64_t> stride;  // elements
};

struct PickledStateDict {
  std::vector<PickledStorage> storages;  // one per distinct key
  std::vector<PickledTensor> tensors;    // in pickle order
};

// Parses `bytes[0, size)`; throws Error naming `label` and the offending opcode, global or
// value. The top-level object must be a dict; tensors are collected from it and every nested
// dict, list or tuple (non-tensor leaves such as an epoch counter are ignored).
PickledStateDict read_state_dict_pickle(const std::string& label, const uint8_t* bytes,
                                        size_t size);

}  // namespace freeswim::io

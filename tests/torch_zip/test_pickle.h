// Hand assembly of pickles for the torch zip tests. `state_dict_pickle` reproduces the opcode
// sequence torch.save (pickle protocol 2, or 4 for `pickle_protocol=4`) emits for a state dict:
// an OrderedDict built by REDUCE, one _rebuild_tensor_v2 call per tensor whose storage is a
// BINPERSID ('storage', torch.<Type>Storage, key, 'cpu', numel) tuple, and a BUILD that sets the
// dict's `_metadata` attribute.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace freeswim::test {

class PickleBuilder {
 public:
  explicit PickleBuilder(int protocol = 2);
  PickleBuilder& op(uint8_t code);
  PickleBuilder& raw(const std::string& bytes);
  PickleBuilder& global(const std::string& module, const std::string& name);
  PickleBuilder& str(const std::string& s);
  PickleBuilder& integer(int64_t v);
  PickleBuilder& put();  // memoizes the top of the stack under the next index
  PickleBuilder& get(uint32_t index);
  std::string finish();  // appends STOP (and wraps protocol 4 in one FRAME)
  uint32_t memo_count() const { return next_memo_; }

 private:
  int protocol_;
  uint32_t next_memo_ = 0;
  std::string body_;
};

struct FixtureTensor {
  std::string name;
  std::string storage_type;  // e.g. "FloatStorage"
  std::string key;           // storage key: the zip entry data/<key>
  int64_t storage_numel = 0;
  int64_t offset = 0;
  std::vector<int64_t> shape;
  std::vector<int64_t> stride;  // empty: contiguous
  bool parameter = false;       // wrapped in torch._utils._rebuild_parameter
};

// Emits the REDUCE call that rebuilds `t` (leaving the tensor on the stack); `ordered_dict` is
// the memo slot of the collections.OrderedDict global.
void emit_tensor(PickleBuilder& p, const FixtureTensor& t, uint32_t ordered_dict);

// The pickle of an OrderedDict of `tensors`; with `wrap_key`, the state dict is the value of
// that key in a plain outer dict ({"state_dict": ...}).
std::string state_dict_pickle(const std::vector<FixtureTensor>& tensors, int protocol = 2,
                              const std::string& wrap_key = "");

}  // namespace freeswim::test

#include "test_pickle.h"

namespace freeswim::test {

namespace {

void put_le(std::string& out, uint64_t v, int n) {
  for (int i = 0; i < n; ++i) out += static_cast<char>((v >> (8 * i)) & 0xff);
}

std::vector<int64_t> contiguous_strides(const std::vector<int64_t>& shape) {
  std::vector<int64_t> stride(shape.size(), 1);
  for (size_t d = shape.size(); d-- > 1;) stride[d - 1] = stride[d] * shape[d];
  return stride;
}

}  // namespace

PickleBuilder::PickleBuilder(int protocol) : protocol_(protocol) {}

PickleBuilder& PickleBuilder::op(uint8_t code) {
  body_ += static_cast<char>(code);
  return *this;
}

PickleBuilder& PickleBuilder::raw(const std::string& bytes) {
  body_ += bytes;
  return *this;
}

PickleBuilder& PickleBuilder::global(const std::string& module, const std::string& name) {
  if (protocol_ >= 4) {
    str(module).put().str(name).put().op(0x93);  // STACK_GLOBAL
  } else {
    op('c').raw(module + "\n" + name + "\n");
  }
  return put();
}

PickleBuilder& PickleBuilder::str(const std::string& s) {
  if (protocol_ >= 4 && s.size() < 256) {
    op(0x8c);  // SHORT_BINUNICODE
    put_le(body_, s.size(), 1);
  } else {
    op('X');  // BINUNICODE
    put_le(body_, s.size(), 4);
  }
  body_ += s;
  return *this;
}

PickleBuilder& PickleBuilder::integer(int64_t v) {
  if (v >= 0 && v < 256) {
    op('K');
    put_le(body_, static_cast<uint64_t>(v), 1);
  } else if (v >= 0 && v < 65536) {
    op('M');
    put_le(body_, static_cast<uint64_t>(v), 2);
  } else if (v >= INT32_MIN && v <= INT32_MAX) {
    op('J');
    put_le(body_, static_cast<uint64_t>(v), 4);
  } else {
    op(0x8a);  // LONG1 with 8 bytes of two's complement
    put_le(body_, 8, 1);
    put_le(body_, static_cast<uint64_t>(v), 8);
  }
  return *this;
}

PickleBuilder& PickleBuilder::put() {
  if (protocol_ >= 4) {
    op(0x94);  // MEMOIZE
  } else if (next_memo_ < 256) {
    op('q');
    put_le(body_, next_memo_, 1);
  } else {
    op('r');
    put_le(body_, next_memo_, 4);
  }
  ++next_memo_;
  return *this;
}

PickleBuilder& PickleBuilder::get(uint32_t index) {
  if (index < 256) {
    op('h');
    put_le(body_, index, 1);
  } else {
    op('j');
    put_le(body_, index, 4);
  }
  return *this;
}

std::string PickleBuilder::finish() {
  op('.');
  std::string out;
  out += static_cast<char>(0x80);
  out += static_cast<char>(protocol_);
  if (protocol_ >= 4) {
    out += static_cast<char>(0x95);  // FRAME
    put_le(out, body_.size(), 8);
  }
  return out + body_;
}

void emit_tensor(PickleBuilder& p, const FixtureTensor& t, uint32_t ordered_dict) {
  if (t.parameter) p.global("torch._utils", "_rebuild_parameter");
  p.global("torch._utils", "_rebuild_tensor_v2");
  p.op('(');
  // The persistent id of the storage.
  p.op('(').str("storage").put().global("torch", t.storage_type).str(t.key).put();
  p.str("cpu").put().integer(t.storage_numel).op('t').put().op('Q');
  p.integer(t.offset);
  const std::vector<int64_t> stride = t.stride.empty() ? contiguous_strides(t.shape) : t.stride;
  // Python's pickler writes small tuples with EMPTY_TUPLE / TUPLE1-3, longer ones with MARK.
  for (const std::vector<int64_t>* tuple : {&t.shape, &stride}) {
    if (tuple->size() > 3) p.op('(');
    for (int64_t v : *tuple) p.integer(v);
    if (tuple->empty()) {
      p.op(')');
    } else {
      p.op(tuple->size() > 3 ? 't' : static_cast<uint8_t>(0x84 + tuple->size()));
    }
    if (!tuple->empty()) p.put();
  }
  p.op(0x89);                                 // requires_grad = False
  p.get(ordered_dict).op(')').op('R').put();  // backward hooks: OrderedDict()
  p.op('t').put().op('R').put();
  // _rebuild_parameter(tensor, requires_grad, backward_hooks)
  if (t.parameter) p.op(0x89).get(ordered_dict).op(')').op('R').put().op(0x87).put().op('R').put();
}

std::string state_dict_pickle(const std::vector<FixtureTensor>& tensors, int protocol,
                              const std::string& wrap_key) {
  PickleBuilder p(protocol);
  if (!wrap_key.empty()) p.op('}').put().str(wrap_key).put();
  p.global("collections", "OrderedDict");
  const uint32_t ordered_dict = p.memo_count() - 1;  // memo slot of the global
  p.op(')').op('R').put().op('(');
  for (const FixtureTensor& t : tensors) {
    p.str(t.name).put();
    emit_tensor(p, t, ordered_dict);
  }
  p.op('u');
  // state_dict()._metadata = {"": {"version": 1}}, set through BUILD as
  // OrderedDict.__reduce__ does.
  p.op('}').put().str("_metadata").put().get(ordered_dict).op(')').op('R').put();
  p.str("").put().op('}').put().str("version").put().integer(1).op('s').op('s');
  p.op('s').op('b');
  if (!wrap_key.empty()) p.op('s');
  return p.finish();
}

}  // namespace freeswim::test

#include "io/torch_pickle.h"

#include <cstring>
#include <map>
#include <set>
#include <unordered_map>
#include <utility>

#include "core/error.h"

namespace freeswim::io {

namespace {

// Values live on the unpickler's stack by value; containers are indices into arenas, so a
// deeply nested pickle builds no deep C++ structure and is freed without recursion.
enum class Kind : uint8_t {
  None,
  Bool,
  Int,
  Float,
  Str,
  Tuple,
  List,
  Dict,
  Global,
  Storage,
  Tensor
};

struct Value {
  Kind kind = Kind::None;
  int64_t i = 0;  // Int/Bool value, arena index, or Global id
  double f = 0;
};

enum Global : int64_t {
  kOrderedDict,
  kRebuildTensorV2,
  kRebuildParameter,
  kRebuildParamState,
  kStorageTypeBase
};

struct StorageType {
  const char* name;
  std::optional<DType> dtype;
};

// The storage classes torch.save names in persistent ids. Those without a freeswim dtype are
// accepted while parsing so that the error can name the tensor that uses them.
constexpr StorageType kStorageTypes[] = {
    {"FloatStorage", DType::F32},
    {"BFloat16Storage", DType::BF16},
    {"HalfStorage", DType::F16},
    {"LongStorage", DType::I64},
    {"IntStorage", DType::I32},
    {"ByteStorage", DType::U8},
    {"DoubleStorage", std::nullopt},
    {"BoolStorage", std::nullopt},
    {"ShortStorage", std::nullopt},
    {"CharStorage", std::nullopt},
    {"ComplexFloatStorage", std::nullopt},
    {"ComplexDoubleStorage", std::nullopt},
};

const char* opcode_name(uint8_t op) {
  static const std::map<uint8_t, const char*> names = {
      {'(', "MARK"},
      {'.', "STOP"},
      {'0', "POP"},
      {'1', "POP_MARK"},
      {'2', "DUP"},
      {'F', "FLOAT"},
      {'I', "INT"},
      {'J', "BININT"},
      {'K', "BININT1"},
      {'L', "LONG"},
      {'M', "BININT2"},
      {'N', "NONE"},
      {'P', "PERSID"},
      {'Q', "BINPERSID"},
      {'R', "REDUCE"},
      {'S', "STRING"},
      {'T', "BINSTRING"},
      {'U', "SHORT_BINSTRING"},
      {'V', "UNICODE"},
      {'X', "BINUNICODE"},
      {'a', "APPEND"},
      {'b', "BUILD"},
      {'c', "GLOBAL"},
      {'d', "DICT"},
      {'}', "EMPTY_DICT"},
      {'e', "APPENDS"},
      {'g', "GET"},
      {'h', "BINGET"},
      {'i', "INST"},
      {'j', "LONG_BINGET"},
      {'l', "LIST"},
      {']', "EMPTY_LIST"},
      {'o', "OBJ"},
      {'p', "PUT"},
      {'q', "BINPUT"},
      {'r', "LONG_BINPUT"},
      {'s', "SETITEM"},
      {'t', "TUPLE"},
      {')', "EMPTY_TUPLE"},
      {'u', "SETITEMS"},
      {'G', "BINFLOAT"},
      {'B', "BINBYTES"},
      {'C', "SHORT_BINBYTES"},
      {0x80, "PROTO"},
      {0x81, "NEWOBJ"},
      {0x82, "EXT1"},
      {0x83, "EXT2"},
      {0x84, "EXT4"},
      {0x85, "TUPLE1"},
      {0x86, "TUPLE2"},
      {0x87, "TUPLE3"},
      {0x88, "NEWTRUE"},
      {0x89, "NEWFALSE"},
      {0x8a, "LONG1"},
      {0x8b, "LONG4"},
      {0x8c, "SHORT_BINUNICODE"},
      {0x8d, "BINUNICODE8"},
      {0x8e, "BINBYTES8"},
      {0x8f, "EMPTY_SET"},
      {0x90, "ADDITEMS"},
      {0x91, "FROZENSET"},
      {0x92, "NEWOBJ_EX"},
      {0x93, "STACK_GLOBAL"},
      {0x94, "MEMOIZE"},
      {0x95, "FRAME"},
      {0x96, "BYTEARRAY8"},
      {0x97, "NEXT_BUFFER"},
      {0x98, "READONLY_BUFFER"},
  };
  auto it = names.find(op);
  return it == names.end() ? "unknown" : it->second;
}

// Text from the file, made safe to print in an error message.
std::string printable(std::string_view s) {
  std::string out;
  for (char c : s.substr(0, 80)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
  if (s.size() > 80) out += "...";
  return out;
}

struct TensorRec {
  size_t storage;
  int64_t offset;
  Shape shape;
  std::vector<int64_t> stride;
};

class Unpickler {
 public:
  Unpickler(const std::string& label, const uint8_t* bytes, size_t size)
      : label_(label), p_(bytes), size_(size) {}

  PickledStateDict run() {
    Value root = parse();
    return flatten(root);
  }

 private:
  const std::string& label_;
  const uint8_t* p_;
  size_t size_;
  size_t pos_ = 0;
  size_t op_pos_ = 0;  // where the current opcode starts, for messages

  std::vector<Value> stack_;
  std::vector<size_t> marks_;
  std::unordered_map<uint64_t, Value> memo_;
  std::vector<std::string> strings_;
  std::vector<std::vector<Value>> seqs_;                     // tuples and lists
  std::vector<std::vector<std::pair<Value, Value>>> dicts_;  // insertion order
  std::vector<TensorRec> tensors_;
  PickledStateDict out_;
  std::map<std::string, size_t, std::less<>> storage_by_key_;

  template <typename... Args>
  [[noreturn]] void bad(fmt::format_string<Args...> f, Args&&... args) const {
    throw Error(fmt::format("'{}': data.pkl byte {}: {}", label_, op_pos_,
                            fmt::format(f, std::forward<Args>(args)...)));
  }

  const uint8_t* take(uint64_t n) {
    if (n > size_ - pos_) bad("truncated pickle ({} more bytes needed, {} left)", n, size_ - pos_);
    const uint8_t* q = p_ + pos_;
    pos_ += n;
    return q;
  }
  uint64_t le(int n) {
    const uint8_t* q = take(static_cast<uint64_t>(n));
    uint64_t v = 0;
    for (int k = n - 1; k >= 0; --k) v = v << 8 | q[k];
    return v;
  }

  Value pop() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) bad("stack underflow");
    Value v = stack_.back();
    stack_.pop_back();
    return v;
  }
  Value& top() {
    if (stack_.size() <= (marks_.empty() ? 0 : marks_.back())) bad("stack underflow");
    return stack_.back();
  }
  // Removes the items above the last MARK (and the mark) and returns them.
  std::vector<Value> pop_to_mark() {
    if (marks_.empty()) bad("{} without a MARK", opcode_name(p_[op_pos_]));
    size_t m = marks_.back();
    marks_.pop_back();
    std::vector<Value> items(stack_.begin() + static_cast<ptrdiff_t>(m), stack_.end());
    stack_.resize(m);
    return items;
  }

  Value make_string(const uint8_t* q, uint64_t n) {
    strings_.emplace_back(reinterpret_cast<const char*>(q), n);
    return Value{Kind::Str, static_cast<int64_t>(strings_.size() - 1)};
  }
  Value make_seq(Kind kind, std::vector<Value> items) {
    seqs_.push_back(std::move(items));
    return Value{kind, static_cast<int64_t>(seqs_.size() - 1)};
  }
  Value make_dict() {
    dicts_.emplace_back();
    return Value{Kind::Dict, static_cast<int64_t>(dicts_.size() - 1)};
  }
  const std::string& str(const Value& v, const char* what) {
    if (v.kind != Kind::Str) bad("{} must be a string", what);
    return strings_[static_cast<size_t>(v.i)];
  }
  const std::vector<Value>& tuple(const Value& v, const char* what) {
    if (v.kind != Kind::Tuple) bad("{} must be a tuple", what);
    return seqs_[static_cast<size_t>(v.i)];
  }
  int64_t integer(const Value& v, const char* what) {
    if (v.kind != Kind::Int) bad("{} must be an integer", what);
    return v.i;
  }

  void memo_put(uint64_t index) {
    // Real pickles number memo entries 0, 1, 2...; an index beyond the pickle's length can only
    // come from a hostile file.
    if (index > size_) bad("memo index {} exceeds the pickle's size ({} bytes)", index, size_);
    if (memo_.size() >= size_) bad("too many memo entries");
    memo_[index] = top();
  }
  void memo_get(uint64_t index) {
    auto it = memo_.find(index);
    if (it == memo_.end()) bad("memo index {} was never stored", index);
    stack_.push_back(it->second);
  }

  Value resolve_global(const std::string& module, const std::string& name) {
    if (module == "collections" && name == "OrderedDict") return Value{Kind::Global, kOrderedDict};
    if (module == "torch._utils") {
      if (name == "_rebuild_tensor_v2") return Value{Kind::Global, kRebuildTensorV2};
      if (name == "_rebuild_parameter") return Value{Kind::Global, kRebuildParameter};
      if (name == "_rebuild_parameter_with_state") return Value{Kind::Global, kRebuildParamState};
    }
    if (module == "torch") {
      for (size_t k = 0; k < std::size(kStorageTypes); ++k)
        if (name == kStorageTypes[k].name)
          return Value{Kind::Global, kStorageTypeBase + static_cast<int64_t>(k)};
    }
    bad("refused global '{}.{}': a state dict needs only collections.OrderedDict, torch._utils "
        "rebuild functions and torch storage types, and this file asks for more (it may run code "
        "when loaded by Python)",
        printable(module), printable(name));
  }

  std::string read_line() {
    const uint8_t* start = p_ + pos_;
    const void* nl = std::memchr(start, '\n', size_ - pos_);
    if (!nl) bad("truncated pickle (GLOBAL name without newline)");
    size_t n = static_cast<size_t>(static_cast<const uint8_t*>(nl) - start);
    pos_ += n + 1;
    return std::string(reinterpret_cast<const char*>(start), n);
  }

  // ('storage', <storage type>, key, location, numel): the persistent id torch.save gives
  // every storage; the bytes are the zip entry data/<key>.
  Value persistent_load(const Value& pid) {
    const std::vector<Value>& t = tuple(pid, "persistent id");
    if (t.size() != 5 || t[0].kind != Kind::Str ||
        strings_[static_cast<size_t>(t[0].i)] != "storage")
      bad("persistent id is not a ('storage', type, key, location, numel) tuple");
    if (t[1].kind != Kind::Global || t[1].i < kStorageTypeBase)
      bad("persistent id names no storage type");
    const StorageType& type = kStorageTypes[static_cast<size_t>(t[1].i - kStorageTypeBase)];
    const std::string& key = str(t[2], "storage key");
    str(t[3], "storage location");
    int64_t numel = integer(t[4], "storage size");
    if (numel < 0) bad("storage '{}' has negative size {}", printable(key), numel);
    auto it = storage_by_key_.find(key);
    if (it != storage_by_key_.end()) {
      const PickledStorage& s = out_.storages[it->second];
      if (s.type_name != type.name || s.numel != static_cast<uint64_t>(numel))
        bad("storage '{}' is used as {} of {} and as {} of {} elements", printable(key),
            s.type_name, s.numel, type.name, numel);
      return Value{Kind::Storage, static_cast<int64_t>(it->second)};
    }
    out_.storages.push_back(
        PickledStorage{key, type.name, type.dtype, static_cast<uint64_t>(numel)});
    storage_by_key_.emplace(key, out_.storages.size() - 1);
    return Value{Kind::Storage, static_cast<int64_t>(out_.storages.size() - 1)};
  }

  Value rebuild_tensor(const std::vector<Value>& a) {
    // (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata])
    if (a.size() != 6 && a.size() != 7)
      bad("_rebuild_tensor_v2 takes 6 or 7 arguments, got {}", a.size());
    if (a[0].kind != Kind::Storage) bad("_rebuild_tensor_v2: first argument is not a storage");
    TensorRec t{static_cast<size_t>(a[0].i), integer(a[1], "storage offset"), {}, {}};
    if (t.offset < 0) bad("negative storage offset {}", t.offset);
    for (const Value& v : tuple(a[2], "tensor size")) {
      int64_t d = integer(v, "tensor dimension");
      if (d < 0) bad("negative tensor dimension {}", d);
      t.shape.push_back(d);
    }
    for (const Value& v : tuple(a[3], "tensor stride")) t.stride.push_back(integer(v, "stride"));
    if (t.shape.size() != t.stride.size())
      bad("tensor has {} dimensions but {} strides", t.shape.size(), t.stride.size());
    if (a[4].kind != Kind::Bool) bad("requires_grad must be a bool");
    tensors_.push_back(std::move(t));
    return Value{Kind::Tensor, static_cast<int64_t>(tensors_.size() - 1)};
  }

  Value reduce(const Value& callable, const Value& args_value) {
    if (callable.kind != Kind::Global) bad("REDUCE on something that is not an allowed global");
    const std::vector<Value>& args = tuple(args_value, "REDUCE arguments");
    switch (callable.i) {
      case kOrderedDict:
        if (!args.empty()) bad("OrderedDict called with arguments");
        return make_dict();
      case kRebuildTensorV2:
        return rebuild_tensor(args);
      case kRebuildParameter:
      case kRebuildParamState:
        // (data, requires_grad, backward_hooks[, state]): a Parameter is its tensor here.
        if (args.size() < 3 || args.size() > 4 || args[0].kind != Kind::Tensor)
          bad("_rebuild_parameter: expected a tensor and flags");
        return args[0];
      default:
        bad("REDUCE on storage type {}",
            kStorageTypes[static_cast<size_t>(callable.i - kStorageTypeBase)].name);
    }
  }

  Value parse() {
    while (true) {
      op_pos_ = pos_;
      uint8_t op = *take(1);
      switch (op) {
        case 0x80: {  // PROTO
          uint64_t v = le(1);
          if (v < 2 || v > 5) bad("unsupported pickle protocol {}", v);
          break;
        }
        case 0x95:  // FRAME: a length hint for buffered readers; the whole pickle is in memory.
          if (le(8) > size_ - pos_) bad("FRAME longer than the rest of the pickle");
          break;
        case '.':  // STOP
          if (!marks_.empty()) bad("STOP inside an open MARK");
          return pop();
        case '}':
          stack_.push_back(make_dict());
          break;
        case ']':
          stack_.push_back(make_seq(Kind::List, {}));
          break;
        case ')':
          stack_.push_back(make_seq(Kind::Tuple, {}));
          break;
        case '(':
          marks_.push_back(stack_.size());
          break;
        case 'X': {
          uint64_t n = le(4);
          stack_.push_back(make_string(take(n), n));
          break;
        }
        case 0x8c: {
          uint64_t n = le(1);
          stack_.push_back(make_string(take(n), n));
          break;
        }
        case 0x8d: {
          uint64_t n = le(8);
          stack_.push_back(make_string(take(n), n));
          break;
        }
        case 'K':
          stack_.push_back(Value{Kind::Int, static_cast<int64_t>(le(1))});
          break;
        case 'M':
          stack_.push_back(Value{Kind::Int, static_cast<int64_t>(le(2))});
          break;
        case 'J':
          stack_.push_back(Value{Kind::Int, static_cast<int32_t>(static_cast<uint32_t>(le(4)))});
          break;
        case 0x8a: {  // LONG1: little-endian two's complement of n bytes
          uint64_t n = le(1);
          if (n > 8) bad("integer of {} bytes is too large", n);
          uint64_t v = n ? le(static_cast<int>(n)) : 0;
          if (n > 0 && n < 8 && (v >> (8 * n - 1)) & 1) v |= ~uint64_t{0} << (8 * n);
          stack_.push_back(Value{Kind::Int, static_cast<int64_t>(v)});
          break;
        }
        case 'G': {  // BINFLOAT: big-endian IEEE double
          const uint8_t* q = take(8);
          uint64_t u = 0;
          for (int k = 0; k < 8; ++k) u = u << 8 | q[k];
          Value v{Kind::Float};
          std::memcpy(&v.f, &u, 8);
          stack_.push_back(v);
          break;
        }
        case 'N':
          stack_.push_back(Value{Kind::None});
          break;
        case 0x88:
          stack_.push_back(Value{Kind::Bool, 1});
          break;
        case 0x89:
          stack_.push_back(Value{Kind::Bool, 0});
          break;
        case 't':
          stack_.push_back(make_seq(Kind::Tuple, pop_to_mark()));
          break;
        case 0x85:
        case 0x86:
        case 0x87: {
          size_t n = static_cast<size_t>(op - 0x84);
          std::vector<Value> items(n);
          for (size_t k = n; k-- > 0;) items[k] = pop();
          stack_.push_back(make_seq(Kind::Tuple, std::move(items)));
          break;
        }
        case 's': {
          Value v = pop(), k = pop();
          Value& d = top();
          if (d.kind != Kind::Dict) bad("SETITEM on something that is not a dict");
          dicts_[static_cast<size_t>(d.i)].emplace_back(k, v);
          break;
        }
        case 'u': {
          std::vector<Value> items = pop_to_mark();
          if (items.size() % 2) bad("SETITEMS with an odd number of items");
          Value& d = top();
          if (d.kind != Kind::Dict) bad("SETITEMS on something that is not a dict");
          auto& entries = dicts_[static_cast<size_t>(d.i)];
          for (size_t k = 0; k < items.size(); k += 2) entries.emplace_back(items[k], items[k + 1]);
          break;
        }
        case 'a': {
          Value v = pop();
          Value& l = top();
          if (l.kind != Kind::List) bad("APPEND on something that is not a list");
          seqs_[static_cast<size_t>(l.i)].push_back(v);
          break;
        }
        case 'e': {
          std::vector<Value> items = pop_to_mark();
          Value& l = top();
          if (l.kind != Kind::List) bad("APPENDS on something that is not a list");
          auto& seq = seqs_[static_cast<size_t>(l.i)];
          seq.insert(seq.end(), items.begin(), items.end());
          break;
        }
        case 'q':
          memo_put(le(1));
          break;
        case 'r':
          memo_put(le(4));
          break;
        case 0x94:
          memo_put(memo_.size());
          break;
        case 'h':
          memo_get(le(1));
          break;
        case 'j':
          memo_get(le(4));
          break;
        case 'c': {
          std::string module = read_line();
          std::string name = read_line();
          stack_.push_back(resolve_global(module, name));
          break;
        }
        case 0x93: {
          Value name = pop(), module = pop();
          stack_.push_back(
              resolve_global(str(module, "STACK_GLOBAL module"), str(name, "STACK_GLOBAL name")));
          break;
        }
        case 'Q': {
          Value pid = pop();
          stack_.push_back(persistent_load(pid));
          break;
        }
        case 'R': {
          Value args = pop();
          Value callable = pop();
          stack_.push_back(reduce(callable, args));
          break;
        }
        case 'b': {
          // OrderedDict.__reduce__ sets instance attributes (a state dict's `_metadata`) with
          // BUILD; they hold no tensors, so the state is checked to be a dict and dropped.
          Value state = pop();
          if (top().kind != Kind::Dict || (state.kind != Kind::Dict && state.kind != Kind::None))
            bad("BUILD is only allowed to set a dict's attributes");
          break;
        }
        default:
          bad("opcode 0x{:02x} ({}) is not allowed in a state dict", op, opcode_name(op));
      }
    }
  }

  // Walks the object graph with an explicit stack; each container may be reached once (a
  // shared or cyclic container would otherwise repeat names without bound). Tensors come out
  // in pickle order: children are queued in reverse and tensors on top of the queue are
  // emitted before the next container is opened.
  PickledStateDict flatten(const Value& root) {
    if (root.kind != Kind::Dict) bad("the pickle's top-level object is not a dict");
    std::set<std::pair<Kind, int64_t>> seen;
    std::vector<std::pair<Value, std::string>> work{{root, ""}};
    std::set<std::string, std::less<>> names;
    // Dotted names repeat their parents' prefixes; a hostile nesting depth would make that
    // quadratic, so the total is held to a generous multiple of the pickle's size.
    const uint64_t name_budget = 64 * static_cast<uint64_t>(size_) + 4096;
    uint64_t name_bytes = 0;
    auto child = [&](const std::string& prefix, const std::string& key) {
      std::string name = prefix.empty() ? key : prefix + "." + key;
      name_bytes += name.size();
      if (name_bytes > name_budget)
        bad("nested names grow beyond the pickle's size; not a state dict");
      return name;
    };
    while (!work.empty()) {
      auto [v, prefix] = std::move(work.back());
      work.pop_back();
      if (!seen.insert({v.kind, v.i}).second)
        bad("container '{}' is reached twice (shared or cyclic); not a state dict",
            printable(prefix));
      std::vector<std::pair<std::string, Value>> children;
      if (v.kind == Kind::Dict) {
        for (const auto& [k, val] : dicts_[static_cast<size_t>(v.i)]) {
          std::string key;
          if (k.kind == Kind::Str) {
            key = strings_[static_cast<size_t>(k.i)];
          } else if (k.kind == Kind::Int) {
            key = std::to_string(k.i);
          } else {
            bad("dict key under '{}' is neither a string nor an integer", printable(prefix));
          }
          children.emplace_back(child(prefix, key), val);
        }
      } else {
        const auto& seq = seqs_[static_cast<size_t>(v.i)];
        for (size_t k = 0; k < seq.size(); ++k)
          children.emplace_back(child(prefix, std::to_string(k)), seq[k]);
      }
      for (auto it = children.rbegin(); it != children.rend(); ++it) {
        Kind kind = it->second.kind;
        if (kind == Kind::Dict || kind == Kind::List || kind == Kind::Tuple || kind == Kind::Tensor)
          work.emplace_back(it->second, std::move(it->first));
      }
      while (!work.empty() && work.back().first.kind == Kind::Tensor) {
        auto [t, name] = std::move(work.back());
        work.pop_back();
        if (!names.insert(name).second) bad("tensor name '{}' appears twice", printable(name));
        const TensorRec& r = tensors_[static_cast<size_t>(t.i)];
        out_.tensors.push_back(PickledTensor{name, r.storage, r.offset, r.shape, r.stride});
      }
    }
    return std::move(out_);
  }
};

}  // namespace

PickledStateDict read_state_dict_pickle(const std::string& label, const uint8_t* bytes,
                                        size_t size) {
  return Unpickler(label, bytes, size).run();
}

}  // namespace freeswim::io

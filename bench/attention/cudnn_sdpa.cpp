// cuDNN SDPA forward through the backend API. The operation graph is the pattern that cuDNN's
// fused attention engines recognise (the one cudnn-frontend's composite SDPA node lowers to):
//
//   S = Q K^T (fp32) -> S * scale -> m = max_row(S) -> E = exp(S - m) -> l = sum_row(E)
//     -> P = E / l (bf16) -> O = P V
//
// Tensors are 4-D [batch = 1, heads, rows, cols]; the [tokens, heads, head_dim] memory layout is
// expressed by strides only (token stride heads * head_dim, head stride head_dim), and K enters
// the first matmul as K^T by swapping its last two dimensions and strides. Intermediates are
// virtual: the engine keeps them on chip.
//
// If no engine takes that graph, the same attention is tried as the single SDPA_FWD operation of
// cuDNN >= 9.13.1. Seen on the H100 machine (cuDNN 9.x of its image): the composite graph is
// rejected in the engine's graph tagging ("Dropout set of ops not configured correctly"), and the
// SDPA_FWD operation is what runs (measured 559-578 TFLOP/s, the same as PyTorch's cuDNN SDPA).
#include "cudnn_sdpa.h"

#include <map>
#include <memory>
#include <mutex>
#include <tuple>
#include <vector>

#include "core/error.h"

#if defined(FREESWIM_HAVE_CUDNN)
#include <cudnn.h>
#endif

namespace freeswim::bench {

#if !defined(FREESWIM_HAVE_CUDNN)

bool cudnn_sdpa_available() {
  return false;
}

bool cudnn_sdpa_forward(const void*, const void*, const void*, void*, int64_t, int64_t, int, int,
                        float, cudaStream_t, std::string* why) {
  if (why) *why = "this build has no cuDNN";
  return false;
}

#else

namespace {

// Thrown inside plan building; turned into "unsupported" (false) by the caller.
struct BuildError {
  std::string what;
};

std::string status_text(cudnnStatus_t s) {
  char last[512] = {0};
  cudnnGetLastErrorString(last, sizeof(last));
  std::string t = cudnnGetErrorString(s);
  if (last[0] != '\0') t += std::string(" (") + last + ")";
  return t;
}

void ok(cudnnStatus_t s, const char* what) {
  if (s != CUDNN_STATUS_SUCCESS) throw BuildError{std::string(what) + ": " + status_text(s)};
}

// Owning wrapper of one backend descriptor.
class Desc {
 public:
  explicit Desc(cudnnBackendDescriptorType_t type) {
    ok(cudnnBackendCreateDescriptor(type, &d_), "cudnnBackendCreateDescriptor");
  }
  ~Desc() {
    if (d_) cudnnBackendDestroyDescriptor(d_);
  }
  Desc(const Desc&) = delete;
  Desc& operator=(const Desc&) = delete;
  cudnnBackendDescriptor_t get() const { return d_; }

  template <typename T>
  Desc& set(cudnnBackendAttributeName_t name, cudnnBackendAttributeType_t type, const T* values,
            int64_t count = 1) {
    ok(cudnnBackendSetAttribute(d_, name, type, count, values), "cudnnBackendSetAttribute");
    return *this;
  }
  Desc& set_desc(cudnnBackendAttributeName_t name, const Desc& other) {
    cudnnBackendDescriptor_t o = other.get();
    return set(name, CUDNN_TYPE_BACKEND_DESCRIPTOR, &o);
  }
  Desc& finalize(const char* what) {
    ok(cudnnBackendFinalize(d_), what);
    return *this;
  }

 private:
  cudnnBackendDescriptor_t d_ = nullptr;
};

enum Uid : int64_t { kQ = 1, kK, kV, kO, kScale, kS = 100, kSs, kMax, kSub, kExp, kSum, kP };

std::unique_ptr<Desc> tensor(int64_t uid, cudnnDataType_t type, std::vector<int64_t> dims,
                             std::vector<int64_t> strides, bool is_virtual, bool by_value = false) {
  auto t = std::make_unique<Desc>(CUDNN_BACKEND_TENSOR_DESCRIPTOR);
  const int64_t align = 16;
  t->set(CUDNN_ATTR_TENSOR_UNIQUE_ID, CUDNN_TYPE_INT64, &uid)
      .set(CUDNN_ATTR_TENSOR_DATA_TYPE, CUDNN_TYPE_DATA_TYPE, &type)
      .set(CUDNN_ATTR_TENSOR_DIMENSIONS, CUDNN_TYPE_INT64, dims.data(),
           static_cast<int64_t>(dims.size()))
      .set(CUDNN_ATTR_TENSOR_STRIDES, CUDNN_TYPE_INT64, strides.data(),
           static_cast<int64_t>(strides.size()))
      .set(CUDNN_ATTR_TENSOR_BYTE_ALIGNMENT, CUDNN_TYPE_INT64, &align)
      .set(CUDNN_ATTR_TENSOR_IS_VIRTUAL, CUDNN_TYPE_BOOLEAN, &is_virtual);
  if (by_value) t->set(CUDNN_ATTR_TENSOR_IS_BY_VALUE, CUDNN_TYPE_BOOLEAN, &by_value);
  t->finalize("tensor descriptor");
  return t;
}

// One fused-SDPA execution plan with everything it references kept alive.
struct Plan {
  std::vector<std::unique_ptr<Desc> > keep;  // tensors, operations, graph, engine configs
  std::unique_ptr<Desc> plan;
  int64_t workspace = 0;
};

struct Key {
  int device;
  int64_t n_q, n_kv;
  int heads, head_dim;
  bool operator<(const Key& o) const {
    return std::tie(device, n_q, n_kv, heads, head_dim) <
           std::tie(o.device, o.n_q, o.n_kv, o.heads, o.head_dim);
  }
};

struct Entry {
  std::unique_ptr<Plan> plan;  // null: unsupported
  std::string why;
};

std::unique_ptr<Desc> pointwise(std::vector<std::unique_ptr<Desc> >& keep,
                                cudnnPointwiseMode_t mode, const Desc& x, const Desc* b,
                                const Desc& y) {
  auto pw = std::make_unique<Desc>(CUDNN_BACKEND_POINTWISE_DESCRIPTOR);
  const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
  pw->set(CUDNN_ATTR_POINTWISE_MODE, CUDNN_TYPE_POINTWISE_MODE, &mode)
      .set(CUDNN_ATTR_POINTWISE_MATH_PREC, CUDNN_TYPE_DATA_TYPE, &prec)
      .finalize("pointwise descriptor");
  auto op = std::make_unique<Desc>(CUDNN_BACKEND_OPERATION_POINTWISE_DESCRIPTOR);
  op->set_desc(CUDNN_ATTR_OPERATION_POINTWISE_PW_DESCRIPTOR, *pw)
      .set_desc(CUDNN_ATTR_OPERATION_POINTWISE_XDESC, x);
  if (b) op->set_desc(CUDNN_ATTR_OPERATION_POINTWISE_BDESC, *b);
  op->set_desc(CUDNN_ATTR_OPERATION_POINTWISE_YDESC, y).finalize("pointwise operation");
  keep.push_back(std::move(pw));
  return op;
}

std::unique_ptr<Desc> reduction(std::vector<std::unique_ptr<Desc> >& keep,
                                cudnnReduceTensorOp_t mode, const Desc& x, const Desc& y) {
  auto rd = std::make_unique<Desc>(CUDNN_BACKEND_REDUCTION_DESCRIPTOR);
  const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
  rd->set(CUDNN_ATTR_REDUCTION_OPERATOR, CUDNN_TYPE_REDUCTION_OPERATOR_TYPE, &mode)
      .set(CUDNN_ATTR_REDUCTION_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &prec)
      .finalize("reduction descriptor");
  auto op = std::make_unique<Desc>(CUDNN_BACKEND_OPERATION_REDUCTION_DESCRIPTOR);
  op->set_desc(CUDNN_ATTR_OPERATION_REDUCTION_DESC, *rd)
      .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_XDESC, x)
      .set_desc(CUDNN_ATTR_OPERATION_REDUCTION_YDESC, y)
      .finalize("reduction operation");
  keep.push_back(std::move(rd));
  return op;
}

std::unique_ptr<Desc> matmul(std::vector<std::unique_ptr<Desc> >& keep, const Desc& a,
                             const Desc& b, const Desc& c) {
  auto mm = std::make_unique<Desc>(CUDNN_BACKEND_MATMUL_DESCRIPTOR);
  const cudnnDataType_t prec = CUDNN_DATA_FLOAT;
  mm->set(CUDNN_ATTR_MATMUL_COMP_TYPE, CUDNN_TYPE_DATA_TYPE, &prec).finalize("matmul descriptor");
  auto op = std::make_unique<Desc>(CUDNN_BACKEND_OPERATION_MATMUL_DESCRIPTOR);
  op->set_desc(CUDNN_ATTR_OPERATION_MATMUL_ADESC, a)
      .set_desc(CUDNN_ATTR_OPERATION_MATMUL_BDESC, b)
      .set_desc(CUDNN_ATTR_OPERATION_MATMUL_CDESC, c)
      .set_desc(CUDNN_ATTR_OPERATION_MATMUL_DESC, *mm)
      .finalize("matmul operation");
  keep.push_back(std::move(mm));
  return op;
}

std::vector<std::unique_ptr<Desc> > composite_ops(std::vector<std::unique_ptr<Desc> >& keep,
                                                  const Key& key) {
  const int64_t h = key.heads, d = key.head_dim, sq = key.n_q, skv = key.n_kv;
  const auto bf16 = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
  auto q = tensor(kQ, bf16, {1, h, sq, d}, {sq * h * d, d, h * d, 1}, false);
  auto kt = tensor(kK, bf16, {1, h, d, skv}, {skv * h * d, d, 1, h * d}, false);
  auto v = tensor(kV, bf16, {1, h, skv, d}, {skv * h * d, d, h * d, 1}, false);
  auto o = tensor(kO, bf16, {1, h, sq, d}, {sq * h * d, d, h * d, 1}, false);
  auto scale = tensor(kScale, f32, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);
  const std::vector<int64_t> sd{1, h, sq, skv}, ss{h * sq * skv, sq * skv, skv, 1};
  const std::vector<int64_t> rd{1, h, sq, 1}, rs{h * sq, sq, 1, 1};
  auto s = tensor(kS, f32, sd, ss, true);
  auto s_scaled = tensor(kSs, f32, sd, ss, true);
  auto mx = tensor(kMax, f32, rd, rs, true);
  auto sub = tensor(kSub, f32, sd, ss, true);
  auto ex = tensor(kExp, f32, sd, ss, true);
  auto sum = tensor(kSum, f32, rd, rs, true);
  auto p = tensor(kP, bf16, sd, ss, true);  // the second matmul's A operand is the I/O type

  std::vector<std::unique_ptr<Desc> > ops;
  ops.push_back(matmul(keep, *q, *kt, *s));
  ops.push_back(pointwise(keep, CUDNN_POINTWISE_MUL, *s, scale.get(), *s_scaled));
  ops.push_back(reduction(keep, CUDNN_REDUCE_TENSOR_MAX, *s_scaled, *mx));
  ops.push_back(pointwise(keep, CUDNN_POINTWISE_SUB, *s_scaled, mx.get(), *sub));
  ops.push_back(pointwise(keep, CUDNN_POINTWISE_EXP, *sub, nullptr, *ex));
  ops.push_back(reduction(keep, CUDNN_REDUCE_TENSOR_ADD, *ex, *sum));
  ops.push_back(pointwise(keep, CUDNN_POINTWISE_DIV, *ex, sum.get(), *p));
  ops.push_back(matmul(keep, *p, *v, *o));
  for (auto* t : {&q, &kt, &v, &o, &scale, &s, &s_scaled, &mx, &sub, &ex, &sum, &p})
    keep.push_back(std::move(*t));
  return ops;
}

// The same attention as one SDPA_FWD operation (cuDNN >= 9.13.1), tried when the composite
// graph finds no engine. K is given untransposed here.
std::vector<std::unique_ptr<Desc> > unified_ops(std::vector<std::unique_ptr<Desc> >& keep,
                                                const Key& key) {
  const int64_t h = key.heads, d = key.head_dim, sq = key.n_q, skv = key.n_kv;
  const auto bf16 = CUDNN_DATA_BFLOAT16, f32 = CUDNN_DATA_FLOAT;
  auto q = tensor(kQ, bf16, {1, h, sq, d}, {sq * h * d, d, h * d, 1}, false);
  auto k = tensor(kK, bf16, {1, h, skv, d}, {skv * h * d, d, h * d, 1}, false);
  auto v = tensor(kV, bf16, {1, h, skv, d}, {skv * h * d, d, h * d, 1}, false);
  auto o = tensor(kO, bf16, {1, h, sq, d}, {sq * h * d, d, h * d, 1}, false);
  auto scale = tensor(kScale, f32, {1, 1, 1, 1}, {1, 1, 1, 1}, false, true);
  std::vector<std::unique_ptr<Desc> > ops;
  ops.push_back(std::make_unique<Desc>(CUDNN_BACKEND_OPERATION_SDPA_FWD_DESCRIPTOR));
  ops[0]
      ->set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_QDESC, *q)
      .set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_KDESC, *k)
      .set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_VDESC, *v)
      .set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_ODESC, *o)
      .set_desc(CUDNN_ATTR_OPERATION_SDPA_FWD_SCALEDESC, *scale)
      .finalize("SDPA forward operation");
  for (auto* t : {&q, &k, &v, &o, &scale}) keep.push_back(std::move(*t));
  return ops;
}

// Operation graph of `ops`, then the first heuristic engine configuration that finalises; what
// each step said is appended to `tried`.
void select_plan(cudnnHandle_t handle, Plan& plan, std::vector<std::unique_ptr<Desc> > ops,
                 std::string& tried) {
  auto& keep = plan.keep;
  auto graph = std::make_unique<Desc>(CUDNN_BACKEND_OPERATIONGRAPH_DESCRIPTOR);
  std::vector<cudnnBackendDescriptor_t> raw;
  for (const auto& op : ops) raw.push_back(op->get());
    // The handle attribute is marked deprecated in 9.19 (a device-property descriptor can stand in)
    // but is what every cuDNN 9 release accepts.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
  graph->set(CUDNN_ATTR_OPERATIONGRAPH_HANDLE, CUDNN_TYPE_HANDLE, &handle);
#pragma GCC diagnostic pop
  graph
      ->set(CUDNN_ATTR_OPERATIONGRAPH_OPS, CUDNN_TYPE_BACKEND_DESCRIPTOR, raw.data(),
            static_cast<int64_t>(raw.size()))
      .finalize("operation graph");

  // Engine configurations from the heuristics, best first; the first that finalises wins.
  for (cudnnBackendHeurMode_t mode : {CUDNN_HEUR_MODE_A, CUDNN_HEUR_MODE_FALLBACK}) {
    Desc heur(CUDNN_BACKEND_ENGINEHEUR_DESCRIPTOR);
    heur.set_desc(CUDNN_ATTR_ENGINEHEUR_OPERATION_GRAPH, *graph)
        .set(CUDNN_ATTR_ENGINEHEUR_MODE, CUDNN_TYPE_HEUR_MODE, &mode)
        .finalize("engine heuristics");
    int64_t count = 0;
    ok(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                CUDNN_TYPE_BACKEND_DESCRIPTOR, 0, &count, nullptr),
       "heuristic result count");
    std::vector<std::unique_ptr<Desc> > cfgs;
    std::vector<cudnnBackendDescriptor_t> raw_cfgs;
    for (int64_t i = 0; i < count; ++i) {
      cfgs.push_back(std::make_unique<Desc>(CUDNN_BACKEND_ENGINECFG_DESCRIPTOR));
      raw_cfgs.push_back(cfgs.back()->get());
    }
    int64_t got = 0;
    if (count > 0)
      ok(cudnnBackendGetAttribute(heur.get(), CUDNN_ATTR_ENGINEHEUR_RESULTS,
                                  CUDNN_TYPE_BACKEND_DESCRIPTOR, count, &got, raw_cfgs.data()),
         "heuristic results");
    for (int64_t i = 0; i < got; ++i) {
      auto ep = std::make_unique<Desc>(CUDNN_BACKEND_EXECUTION_PLAN_DESCRIPTOR);
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
      ep->set(CUDNN_ATTR_EXECUTION_PLAN_HANDLE, CUDNN_TYPE_HANDLE, &handle);
#pragma GCC diagnostic pop
      ep->set_desc(CUDNN_ATTR_EXECUTION_PLAN_ENGINE_CONFIG, *cfgs[i]);
      const cudnnStatus_t st = cudnnBackendFinalize(ep->get());
      if (st != CUDNN_STATUS_SUCCESS) {
        tried += " [" + status_text(st) + "]";
        continue;
      }
      ok(cudnnBackendGetAttribute(ep->get(), CUDNN_ATTR_EXECUTION_PLAN_WORKSPACE_SIZE,
                                  CUDNN_TYPE_INT64, 1, nullptr, &plan.workspace),
         "workspace size");
      plan.plan = std::move(ep);
      for (auto& c : cfgs) keep.push_back(std::move(c));
      break;
    }
    if (plan.plan) break;
    tried += " [heuristic mode " + std::to_string(static_cast<int>(mode)) + ": " +
             std::to_string(count) + " configs, " + std::to_string(got) + " returned]";
  }
  for (auto& op : ops) keep.push_back(std::move(op));
  keep.push_back(std::move(graph));
}

std::unique_ptr<Plan> build_plan(cudnnHandle_t handle, const Key& key) {
  auto plan = std::make_unique<Plan>();
  std::string tried = "composite graph:";
  try {
    select_plan(handle, *plan, composite_ops(plan->keep, key), tried);
  } catch (const BuildError& e) {
    tried += " " + e.what;
  }
  if (!plan->plan) {
    tried += "; SDPA_FWD operation:";
    try {
      select_plan(handle, *plan, unified_ops(plan->keep, key), tried);
    } catch (const BuildError& e) {
      tried += " " + e.what;
    }
  }
  if (!plan->plan)
    throw BuildError{"no engine (cuDNN " + std::to_string(cudnnGetVersion()) + "), " + tried};
  return plan;
}

struct State {
  std::mutex mu;
  std::map<int, cudnnHandle_t> handles;  // one per device, never destroyed (process lifetime)
  std::map<Key, Entry> plans;
};

State& state() {
  static State* s = new State;  // leaked on purpose: cuDNN teardown at exit races CUDA's
  return *s;
}

}  // namespace

bool cudnn_sdpa_available() {
  return true;
}

bool cudnn_sdpa_forward(const void* q, const void* k, const void* v, void* out, int64_t n_q,
                        int64_t n_kv, int heads, int head_dim, float scale, cudaStream_t stream,
                        std::string* why) {
  int device = 0;
  const cudaError_t ce = cudaGetDevice(&device);
  FS_CHECK(ce == cudaSuccess, "dense attention (cuDNN): cudaGetDevice: {}", cudaGetErrorString(ce));
  State& st = state();
  std::lock_guard<std::mutex> lock(st.mu);
  auto hit = st.handles.find(device);
  if (hit == st.handles.end()) {
    cudnnHandle_t h = nullptr;
    const cudnnStatus_t s = cudnnCreate(&h);
    if (s != CUDNN_STATUS_SUCCESS) {
      if (why) *why = "cudnnCreate: " + status_text(s);
      return false;
    }
    hit = st.handles.emplace(device, h).first;
  }
  cudnnHandle_t handle = hit->second;
  const Key key{device, n_q, n_kv, heads, head_dim};
  auto it = st.plans.find(key);
  if (it == st.plans.end()) {
    Entry e;
    try {
      e.plan = build_plan(handle, key);
    } catch (const BuildError& err) {
      e.why = err.what;
    }
    it = st.plans.emplace(key, std::move(e)).first;
  }
  if (!it->second.plan) {
    if (why) *why = it->second.why;
    return false;
  }
  const Plan& plan = *it->second.plan;

  void* workspace = nullptr;
  if (plan.workspace > 0) {
    const cudaError_t e = cudaMallocAsync(&workspace, static_cast<size_t>(plan.workspace), stream);
    FS_CHECK(e == cudaSuccess, "dense attention (cuDNN): workspace of {} bytes: {}", plan.workspace,
             cudaGetErrorString(e));
  }
  int64_t uids[] = {kQ, kK, kV, kO, kScale};
  // The by-value scale is read from host memory when the plan is enqueued.
  void* ptrs[] = {const_cast<void*>(q), const_cast<void*>(k), const_cast<void*>(v), out, &scale};
  std::string failure;
  try {
    Desc pack(CUDNN_BACKEND_VARIANT_PACK_DESCRIPTOR);
    pack.set(CUDNN_ATTR_VARIANT_PACK_UNIQUE_IDS, CUDNN_TYPE_INT64, uids, 5)
        .set(CUDNN_ATTR_VARIANT_PACK_DATA_POINTERS, CUDNN_TYPE_VOID_PTR, ptrs, 5)
        .set(CUDNN_ATTR_VARIANT_PACK_WORKSPACE, CUDNN_TYPE_VOID_PTR, &workspace)
        .finalize("variant pack");
    ok(cudnnSetStream(handle, stream), "cudnnSetStream");
    ok(cudnnBackendExecute(handle, plan.plan->get(), pack.get()), "cudnnBackendExecute");
  } catch (const BuildError& err) {
    failure = err.what;
  }
  if (workspace) cudaFreeAsync(workspace, stream);
  FS_CHECK(failure.empty(), "dense attention (cuDNN, n_q {}, n_kv {}, heads {}, head_dim {}): {}",
           n_q, n_kv, heads, head_dim, failure);
  return true;
}

#endif

}  // namespace freeswim::bench

// bench_load DIR [cpu|cuda] [1.3B|14B|tiny] [formats]: load time and memory of the Wan2.1 DiT
// from the files users keep, against bf16. Writes one random DiT (uniform +-1/sqrt(fan_in), a
// fixed seed; load speed does not depend on the values) into DIR as
//   bf16      original names with ComfyUI's prefix, BF16 (what the reference ships)
//   fp8       ComfyUI scaled fp8 (F8_E4M3 matrices, scaled_fp8 marker, one scale_weight each)
//   q8_0, q4_k  GGUF as ComfyUI-GGUF's converter lays it out (block matrices in the type,
//             vectors, modulation tables and embeddings F32)
// then loads each (default bf16,fp8,q8_0) in a child process of its own, so that peak host memory
// (getrusage) and peak GPU memory (the allocator's reserved bytes) are each load's alone, runs one
// small forward and reports its relative L2 against the bf16 model's. Files already in DIR are
// reused. On the GPU machine: `bench_load /tmp/dit13 cuda 1.3B`.
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "core/rng.h"
#include "gguf_writer.h"
#include "io/safetensors.h"
#include "io/wan_names.h"
#include "models/wan_dit.h"
#include "ops/ops.h"
#ifdef FREESWIM_WITH_CUDA
#include "ops/cuda/cuda_backend.h"
#endif

using namespace freeswim;
namespace fs = std::filesystem;

namespace {

using Clock = std::chrono::steady_clock;

models::WanDitConfig config_for(const std::string& size) {
  if (size != "tiny") return models::WanDitConfig::preset(size);
  models::WanDitConfig c;
  c.heads = 2;
  c.head_dim = 128;
  c.num_layers = 2;
  c.ffn_dim = 512;
  c.text_dim = 256;
  return c;
}

// The positive finite E4M3 values, ascending, for nearest-code search.
struct E4M3 {
  std::vector<float> value;
  std::vector<uint8_t> code;
  E4M3() {
    for (int c = 0; c < 0x7f; ++c) {
      value.push_back(f8e4m3_to_float(static_cast<uint8_t>(c)));
      code.push_back(static_cast<uint8_t>(c));
    }
  }
  uint8_t encode(float x) const {
    const float a = std::fmin(std::fabs(x), 448.f);
    auto it = std::lower_bound(value.begin(), value.end(), a);
    size_t i = static_cast<size_t>(it - value.begin());
    if (i == value.size()) i = value.size() - 1;
    if (i > 0 && a - value[i - 1] <= value[i] - a) --i;  // ties down (toward the even code)
    return static_cast<uint8_t>(code[i] | (x < 0 ? 0x80 : 0));
  }
};

void write_files(const std::string& dir, const models::WanDitConfig& c, bool need_fp8, bool need_q8,
                 bool need_q4k) {
  const std::string bf16 = dir + "/dit_bf16.safetensors", fp8 = dir + "/dit_fp8_scaled.safetensors";
  const std::string q8 = dir + "/dit_q8_0.gguf", q4k = dir + "/dit_q4_k.gguf";
  need_fp8 = need_fp8 && !fs::exists(fp8);
  need_q8 = need_q8 && !fs::exists(q8);
  need_q4k = need_q4k && !fs::exists(q4k);
  if (fs::exists(bf16) && !need_fp8 && !need_q8 && !need_q4k) return;
  std::printf("writing random %s weights into %s\n", c.describe().c_str(), dir.c_str());
  std::fflush(stdout);
  std::mt19937_64 gen(1234);
  const std::string prefix = "model.diffusion_model.";
  std::vector<std::pair<std::string, Tensor>> b, f;
  formats::GgufWriter g8, g4;
  for (auto* g : {&g8, &g4}) g->string("general.architecture", "wan");
  const E4M3 e4m3;
  for (const auto& [name, shape] : models::wan_dit_weight_shapes(c)) {
    const std::string original = io::wan_dit_original_name(name);
    const int64_t fan_in = shape.size() >= 2 ? shape_numel(shape) / shape[0] : 1;
    const float bound = static_cast<float>(1.0 / std::sqrt(static_cast<double>(fan_in)));
    Tensor t = Tensor::empty(shape);
    for (int64_t i = 0; i < t.numel(); ++i)
      t.data<float>()[i] =
          bound *
          static_cast<float>(2.0 * static_cast<double>(gen() >> 11) / 9007199254740992.0 - 1.0);
    const bool matrix = shape.size() == 2 && name.rfind("blocks.", 0) == 0;
    b.emplace_back(prefix + original, t.to(DType::BF16));
    if (need_fp8) {
      if (shape.size() == 2) {
        const float scale = bound / 448.f;
        Tensor q = Tensor::empty(shape, DType::F8_E4M3);
        for (int64_t i = 0; i < t.numel(); ++i)
          q.data<uint8_t>()[i] = e4m3.encode(t.data<float>()[i] / scale);
        f.emplace_back(prefix + original, q);
        f.emplace_back(prefix + original.substr(0, original.size() - 7) + ".scale_weight",
                       Tensor::from_vector({}, {scale}));
      } else {
        f.emplace_back(prefix + original, t.to(DType::BF16));
      }
    }
    if (need_q8) g8.tensor(original, matrix ? io::GgmlType::Q8_0 : io::GgmlType::F32, t);
    if (need_q4k) g4.tensor(original, matrix ? io::GgmlType::Q4_K : io::GgmlType::F32, t);
  }
  if (!fs::exists(bf16)) io::write_safetensors(bf16, b);
  if (need_fp8) {
    f.emplace_back(prefix + "scaled_fp8", Tensor::empty({0}, DType::F8_E4M3));
    io::write_safetensors(fp8, f);
  }
  if (need_q8) g8.write(q8);
  if (need_q4k) g4.write(q4k);
}

std::string file_of(const std::string& dir, const std::string& format) {
  if (format == "bf16") return dir + "/dit_bf16.safetensors";
  if (format == "fp8") return dir + "/dit_fp8_scaled.safetensors";
  if (format == "q8_0") return dir + "/dit_q8_0.gguf";
  if (format == "q4_k") return dir + "/dit_q4_k.gguf";
  fail("unknown format '{}' (bf16, fp8, q8_0, q4_k)", format);
}

// In a child: load, time, forward; writes the output to `out` and prints one line.
int measure(const std::string& path, const std::string& format, Device device,
            const models::WanDitConfig& c, const std::string& out) {
#ifdef FREESWIM_WITH_CUDA
  ops::cuda::register_cuda_backend();
#endif
  const auto t0 = Clock::now();
  const auto model = models::WanDit::load(path, device, c);
  Tensor probe = ops::to_compute(Tensor::zeros({1}), device).to(Device::CPU);  // waits for the GPU
  (void)probe;
  const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
  rusage ru{};
  ::getrusage(RUSAGE_SELF, &ru);
  double gpu_gib = 0;
#ifdef FREESWIM_WITH_CUDA
  if (device == Device::CUDA)
    gpu_gib = static_cast<double>(ops::cuda::memory_stats().peak_reserved) / (1 << 30);
#endif
  models::DitInput in;
  in.latents = rng::normal_tensor({16, 1, 8, 8}, 1);
  in.context = rng::normal_tensor({8, c.text_dim}, 2);
  in.timestep = 500;
  const Tensor y = model->forward(in, StepKind::Stock).to(Device::CPU).to(DType::F32);
  std::ofstream(out, std::ios::binary)
      .write(static_cast<const char*>(y.raw()), static_cast<std::streamsize>(y.nbytes()));
  std::printf(
      "%-5s load %7.2f s  file %6.2f GiB  peak host RSS %6.2f GiB  peak GPU reserved %6.2f GiB\n",
      format.c_str(), secs, static_cast<double>(fs::file_size(path)) / (1 << 30),
      static_cast<double>(ru.ru_maxrss) / (1 << 20), gpu_gib);
  std::fflush(stdout);
  return 0;
}

std::vector<float> read_floats(const std::string& path) {
  std::vector<float> f(static_cast<size_t>(fs::file_size(path)) / 4);
  std::ifstream(path, std::ios::binary)
      .read(reinterpret_cast<char*>(f.data()), static_cast<std::streamsize>(f.size() * 4));
  return f;
}

}  // namespace

int main(int argc, char** argv) {
  try {
    FS_CHECK(argc >= 2, "usage: bench_load DIR [cpu|cuda] [1.3B|14B|tiny] [bf16,fp8,q8_0,q4_k]");
    const std::string dir = argv[1];
    const Device device = argc > 2 && std::string(argv[2]) == "cuda" ? Device::CUDA : Device::CPU;
    const models::WanDitConfig c = config_for(argc > 3 ? argv[3] : "1.3B");
    std::vector<std::string> formats;
    std::stringstream list(argc > 4 ? argv[4] : "bf16,fp8,q8_0");
    for (std::string f; std::getline(list, f, ',');) formats.push_back(f);
    fs::create_directories(dir);
    auto wants = [&](const char* f) {
      return std::find(formats.begin(), formats.end(), f) != formats.end();
    };
    write_files(dir, c, wants("fp8"), wants("q8_0"), wants("q4_k"));
    std::vector<float> ref;
    for (const std::string& format : formats) {
      const std::string out = dir + "/out_" + format + ".f32";
      std::fflush(stdout);
      const pid_t pid = ::fork();
      if (pid == 0) {
        try {
          ::_exit(measure(file_of(dir, format), format, device, c, out));
        } catch (const std::exception& e) {
          std::fprintf(stderr, "%s: %s\n", format.c_str(), e.what());
          ::_exit(1);
        }
      }
      int status = 0;
      ::waitpid(pid, &status, 0);
      if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) continue;
      const std::vector<float> y = read_floats(out);
      if (format == "bf16") ref = y;
      if (!ref.empty() && ref.size() == y.size() && format != "bf16") {
        double num = 0, den = 0;
        for (size_t i = 0; i < y.size(); ++i) {
          num += (static_cast<double>(y[i]) - ref[i]) * (static_cast<double>(y[i]) - ref[i]);
          den += static_cast<double>(ref[i]) * ref[i];
        }
        std::printf("      forward against bf16: relative L2 %.3e\n", std::sqrt(num / den));
      }
    }
  } catch (const Error& e) {
    std::fprintf(stderr, "bench_load: %s\n", e.what());
    return 1;
  }
  return 0;
}

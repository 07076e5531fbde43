#include "pipeline/generate.h"

#include <sys/resource.h>
#include <unistd.h>

#include <charconv>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <memory>

#include "core/bytes.h"
#include "core/device_memory.h"
#include "core/error.h"
#include "core/rng.h"
#include "pipeline/denoise.h"
#include "pipeline/frames.h"
#include "pipeline/resume.h"
#include "pipeline/upsample.h"
#include "sched/unipc.h"
#include "sched/video2video.h"
#include "video/video.h"

namespace freeswim::pipeline {

namespace fs = std::filesystem;

namespace {

constexpr int kLatentChannels = 16;
constexpr int kSpatial = 8, kTemporal = 4;

Shape latent_shape(int frames, int64_t h, int64_t w) {
  return {kLatentChannels, (frames - 1) / kTemporal + 1, h / kSpatial, w / kSpatial};
}

void check_common(const JobOptions& o) {
  FS_CHECK(!o.output.empty(), "-o/--output: an output file is required");
  // H.264 in yuv420p keeps chroma at half resolution, so an odd side cannot be encoded (not
  // even through the stream's crop, whose unit is 2 pixels in 4:2:0): refuse before any work.
  FS_CHECK(o.size.width % 2 == 0 && o.size.height % 2 == 0,
           "--size {}x{}: an mp4 (H.264, yuv420p) needs an even width and height; use {}x{}",
           o.size.width, o.size.height, o.size.width + o.size.width % 2,
           o.size.height + o.size.height % 2);
  FS_CHECK(o.steps >= 1, "--steps must be >= 1, got {}", o.steps);
  FS_CHECK(o.base_steps >= 1, "--base-steps must be >= 1, got {}", o.base_steps);
  FS_CHECK(std::isfinite(o.guidance) && o.guidance >= 0, "--guidance must be >= 0, got {}",
           o.guidance);
  FS_CHECK(std::isfinite(o.shift) && o.shift > 0, "--shift must be > 0, got {}", o.shift);
  FS_CHECK(o.base_shift >= 0 && std::isfinite(o.base_shift), "--base-shift must be > 0, got {}",
           o.base_shift);
  FS_CHECK(std::isfinite(o.fps) && o.fps > 0 && o.fps <= 240, "--fps must be in (0, 240], got {}",
           o.fps);
  FS_CHECK(o.cache_every >= 0, "--cache-every must be >= 0 (0 disables the cache), got {}",
           o.cache_every);
  FS_CHECK(o.window_h >= 0 && o.window_w >= 0, "--window half sizes must be >= 0, got {}x{}",
           o.window_h, o.window_w);
  FS_CHECK(o.attn_scale >= 0 && std::isfinite(o.attn_scale), "--attn-scale must be > 0, got {}",
           o.attn_scale);
  const fs::path out(o.output);
  const fs::path dir = out.parent_path().empty() ? fs::path(".") : out.parent_path();
  FS_CHECK(fs::is_directory(dir), "-o: the directory of '{}' does not exist", o.output);
  FS_CHECK(out.extension() == ".mp4", "-o: '{}' must end in .mp4", o.output);
  sched::video2video_start(o.steps, o.strength);  // validates --strength
}

// The device settings must be those of the device the models are on (device_settings).
void check_device(const LoadedModels& m, const JobOptions& o) {
  FS_CHECK(o.device.device == m.dit->device() && o.device.device == m.vae->device(),
           "the job's device settings are for {}, its models are on {}",
           device_name(o.device.device), device_name(m.dit->device()));
}

// Every setting that changes the result, for the resume fingerprint.
std::string fingerprint(const LoadedModels& m, const JobOptions& o, const std::string& job) {
  return fmt::format("{}|{}|{}|{}|{}x{}|{}|{}|{}|{}|{}|{}|{}|{}|{}|{}x{}|{}|{}|{}|{}", job,
                     m.native.variant, m.layout.dit, m.dit->config().describe(), o.size.gen_width,
                     o.size.gen_height, o.frames, o.base_steps, o.steps, o.strength, o.guidance,
                     o.base_shift, o.shift, o.seed, o.cache_every, o.window_h, o.window_w,
                     o.attn_scale, o.prompt, o.negative_prompt, device_name(m.dit->device()));
}

// Base size for a target: the native size, turned to portrait for portrait targets.
std::pair<int, int> base_size(const LoadedModels& m, const JobOptions& o) {
  if (o.size.gen_height > o.size.gen_width) return {m.native.height, m.native.width};
  return {m.native.width, m.native.height};
}

// JobOptions::exit_after_step ("stage:k"): k for `stage`, else 0.
int exit_after_step(const std::string& v, const std::string& stage) {
  if (v.empty()) return 0;
  const size_t colon = v.find(':');
  int k = 0;
  const char* b = v.data() + (colon == std::string::npos ? 0 : colon + 1);
  const auto r = std::from_chars(b, v.data() + v.size(), k);
  FS_CHECK(
      colon != std::string::npos && r.ec == std::errc() && r.ptr == v.data() + v.size() && k >= 1,
      "--exit-after-step must be stage:k with k >= 1, got '{}'", v);
  return v.compare(0, colon, stage) == 0 ? k : 0;
}

// Wall time of each part of a job, in the order they ran, for the summary that closes its log.
// Every stage ends with its result on the CPU (latents, frames), so the GPU's work is inside the
// stage that queued it.
class StageClock {
 public:
  StageClock() : start_(Clock::now()), last_(start_) {}
  // Ends the stage running since the last lap (or the start) and names it.
  void lap(const std::string& stage) {
    const Clock::time_point now = Clock::now();
    stages_.emplace_back(stage, std::chrono::duration<double>(now - last_).count());
    last_ = now;
  }
  double seconds() const { return std::chrono::duration<double>(Clock::now() - start_).count(); }
  const std::vector<std::pair<std::string, double>>& stages() const { return stages_; }

 private:
  using Clock = std::chrono::steady_clock;
  Clock::time_point start_, last_;
  std::vector<std::pair<std::string, double>> stages_;
};

// The closing summary: one line per stage, the total, the peak memory; every line starts with
// "summary:" so that `grep 'freeswim: summary:'` lifts the table out of a log.
void report_summary(const LoadedModels& m, const StageClock& clock, const JobReporter& r) {
  if (!r.info) return;
  auto line = [&](const std::string& what, double secs, double total) {
    r.info(fmt::format("summary: {:<18} {:9.2f} s  {:5.1f}%", what, secs,
                       total > 0 ? 100.0 * secs / total : 0.0));
  };
  const double total = m.load_seconds + clock.seconds();
  line("model loading", m.load_seconds - m.text_seconds, total);
  line("text encoding", m.text_seconds, total);
  double vae = 0;
  for (const auto& [stage, secs] : clock.stages()) {
    line(stage, secs, total);
    if (stage.rfind("VAE", 0) == 0) vae += secs;
  }
  line("VAE (all passes)", vae, total);
  line("total", total, total);
  if (m.dit && m.dit->device() != Device::CPU) {
    const DeviceMemory& mem = device_memory(m.dit->device());
    if (mem.peak) {
      const DeviceMemoryPeak p = mem.peak();
      r.info(fmt::format(
          "summary: {:<18} {:9.2f} GiB reserved from the driver, {:.2f} GiB in tensors ({})",
          fmt::format("peak {} memory", device_name(m.dit->device())), gib(p.reserved),
          gib(p.in_use),
          p.limit ? fmt::format("cap {:.2f} GiB", gib(p.limit)) : std::string("no cap")));
    }
  }
  struct rusage usage {};
  if (::getrusage(RUSAGE_SELF, &usage) == 0)  // ru_maxrss is in KiB on Linux
    r.info(fmt::format("summary: {:<18} {:9.2f} GiB resident (max RSS)", "peak host memory",
                       gib(static_cast<size_t>(usage.ru_maxrss) * 1024)));
}

// A CPU f32 tensor of rank 0 copied to every rank of `world` (through the device the
// communicator works on).
void broadcast_from_root(Tensor& t, parallel::Communicator* world, Device device) {
  if (!world || world->size() == 1) return;
  Tensor d = t.to(device).clone();
  world->broadcast(d, 0);
  t = d.to(Device::CPU);
}

class Job {
 public:
  Job(const LoadedModels& m, const JobOptions& o, const JobReporter& r, const std::string& kind,
      const JobRanks& ranks)
      : m_(m),
        o_(o),
        r_(ranks.world && ranks.world->rank() != 0 ? quiet_ : r),
        ranks_(ranks),
        resume_file_(resume_path(o.output)),
        fingerprint_(fingerprint(m, o, kind)) {
    if (o.resume) {
      FS_CHECK(fs::exists(resume_file_), "--resume: no saved state '{}' beside the output",
               resume_file_);
      record_ = load_resume(resume_file_, fingerprint_);
      info(fmt::format("resuming the {} stage at step {}", record_->stage,
                       record_->state.next_step));
    }
  }

  // The tiling of a VAE pass over height x width frames: on cuda without --vae-tile the largest
  // tile the free memory allows now (device_settings.h), said in the log.
  // With several ranks, rank 0's choice for all (their free memory may differ, and the tile plan
  // must be the same on every rank).
  models::VaeTiling vae_tiling(int height, int width) const {
    if (!o_.device.vae_tile_by_memory) return o_.device.tiling;
    std::string why;
    models::VaeTiling t = vae_tiling_for(o_.device, height, width,
                                         device_memory(o_.device.device).free_bytes(), &why);
    info(why);
    if (ranks_.world && ranks_.world->size() > 1) {
      Tensor v = Tensor::from_vector(
          {3}, {t.enabled ? 1.f : 0.f, static_cast<float>(t.tile), static_cast<float>(t.overlap)});
      broadcast_from_root(v, ranks_.world, m_.dit->device());
      t.enabled = v.data<float>()[0] != 0.f;
      t.tile = static_cast<int>(v.data<float>()[1]);
      t.overlap = static_cast<int>(v.data<float>()[2]);
    }
    return t;
  }

  bool root() const { return !ranks_.world || ranks_.world->rank() == 0; }

  void info(const std::string& line) const {
    if (r_.info) r_.info(line);
  }

  StageHooks hooks(const std::string& stage) const {
    StageHooks h;
    h.progress = r_.progress;
    h.info = r_.info;
    const int exit_after = exit_after_step(o_.exit_after_step, stage);
    auto saved = std::make_shared<int>(0);
    h.checkpoint = [this, stage, exit_after, saved](const StageState& s) {
      save_resume(resume_file_, {fingerprint_, stage, s});
      // Test hook (tests/cli): die like a killed process right after this stage's k-th saved state.
      if (exit_after > 0 && ++*saved == exit_after) {
        std::fflush(nullptr);
        ::_exit(137);
      }
    };
    return h;
  }

  const StageState* resume_for(const std::string& stage) const {
    return record_ && record_->stage == stage ? &record_->state : nullptr;
  }
  bool past(const std::string& stage) const {
    return record_ && stage == "base" && record_->stage == "freeswim";
  }

  // The prompts' contexts, encoded by load_models (job_prompts) before the DiT was loaded.
  GuidedText text() const {
    GuidedText t;
    t.context = m_.encode_text(o_.prompt);
    if (skips_unconditional(o_.guidance))
      info("guidance 1: the unconditional pass (and the negative prompt) is skipped");
    else
      t.negative = m_.encode_text(o_.negative_prompt.empty() ? wan_default_negative_prompt()
                                                             : o_.negative_prompt);
    t.guidance = o_.guidance;
    return t;
  }

  // Runs the FreeSwim stage on clean frames [F, H, W, 3] at the generation size, writes output.
  Tensor finish(const Tensor* clean_frames, const GuidedText& text, int base_w, int base_h) {
    FreeSwimStageOptions fo;
    fo.steps = o_.steps;
    fo.strength = o_.strength;
    fo.cache_every = o_.cache_every;
    fo.cache_memory = o_.device.cache_memory;
    fo.attention = freeswim_params(m_.dit->config(), base_w, base_h, o_);
    info(fmt::format(
        "FreeSwim stage at {}x{}: window half {}x{} tokens, attention scale {:.5f}, {}",
        o_.size.gen_width, o_.size.gen_height, fo.attention.dh, fo.attention.dw,
        fo.attention.attn_scale,
        o_.cache_every ? fmt::format("cross-attention cache every {} steps (--cache-memory {})",
                                     o_.cache_every, cache_placement_name(o_.device.cache_memory))
                       : std::string("no cache")));
    const Shape shape = latent_shape(o_.frames, o_.size.gen_height, o_.size.gen_width);
    Tensor clean, noise;
    const StageState* resume = resume_for("freeswim");
    if (!resume) {
      info("encoding the upsampled video");
      const models::VaeTiling tiling = vae_tiling(o_.size.gen_height, o_.size.gen_width);
      // Every rank holds the same frames; the encode's tiles are split over the ranks, and each
      // rank gets all of the latents.
      clean = encode_frames(*m_.vae, *clean_frames, tiling, ranks_.world);
      // The VAE's tiles and chunks leave cached blocks of many sizes (48 GiB reserved for 9 GiB
      // of live tensors at 1080p on an H200); give them back before the DiT needs the memory.
      trim_device_memory();
      FS_CHECK(clean.shape() == shape, "encoded latents {} differ from the expected {}",
               clean.describe(), shape_str(shape));
      // The FreeSwim stage's noise follows the base stage's in the seed's stream.
      noise = rng::normal_tensor(shape, o_.seed, 1ull << 40);
      clock.lap("VAE encode");
    }
    sched::UniPCScheduler sched(sched::UniPCConfig::wan(o_.shift));
    const Tensor lat = run_freeswim_stage(*m_.dit, sched, clean, noise, text, fo, hooks("freeswim"),
                                          resume, ranks_.groups);
    clock.lap("FreeSwim stage");
    info("decoding");
    const Tensor frames = decode_latents(
        *m_.vae, lat, vae_tiling(o_.size.gen_height, o_.size.gen_width), ranks_.world);
    clock.lap("VAE decode");
    const Tensor out =
        o_.size.cropped() ? crop_frames(frames, o_.size.crop, FrameLayout::FHWC) : frames;
    // Rank 0 writes only once every rank has its frames: a rank that failed before this point
    // aborts the group, this barrier throws on rank 0 too, and no output file appears.
    if (ranks_.world && ranks_.world->size() > 1) ranks_.world->barrier();
    if (!root()) return out;
    video::write_mp4(o_.output, out, o_.fps);
    clock.lap("mp4 writing");
    if (!o_.png_dir.empty()) {
      video::write_png_frames(o_.png_dir, out);
      clock.lap("png writing");
    }
    std::error_code ec;
    fs::remove(resume_file_, ec);
    info(fmt::format("wrote {} ({} frames, {}x{}, {} fps)", o_.output, out.dim(0), out.dim(2),
                     out.dim(1), o_.fps));
    report_summary(m_, clock, r_);
    return out;
  }

  const LoadedModels& m_;
  const JobOptions& o_;
  const JobReporter quiet_;  // what ranks other than 0 report: nothing
  const JobReporter& r_;
  JobRanks ranks_;
  std::string resume_file_;
  std::string fingerprint_;
  std::optional<ResumeRecord> record_;
  StageClock clock;  // started with the job; run_generate / run_upscale / finish end its stages
};

}  // namespace

std::string resume_path(const std::string& output) {
  return output + ".resume.safetensors";
}

void check_job_options(const JobOptions& opt) {
  check_common(opt);
  validate_frame_count(opt.frames);
}

void validate_frame_count(int frames, const std::string& flag) {
  FS_CHECK(frames >= 1, "{} must be at least 1, got {}", flag, frames);
  if ((frames - 1) % 4 != 0) {
    const int lower = (frames - 1) / 4 * 4 + 1;
    fail(
        "{} must be 4n+1 (the VAE packs 4 frames per latent after the first); {} is not: use {} or "
        "{}",
        flag, frames, lower, lower + 4);
  }
}

std::vector<std::string> job_prompts(const JobOptions& opt) {
  std::vector<std::string> prompts{opt.prompt};
  if (!skips_unconditional(opt.guidance))
    prompts.push_back(opt.negative_prompt.empty() ? wan_default_negative_prompt()
                                                  : opt.negative_prompt);
  return prompts;
}

Tensor run_generate(LoadedModels& m, const JobOptions& opt, const JobReporter& r,
                    const JobRanks& ranks) {
  check_common(opt);
  validate_frame_count(opt.frames);
  check_device(m, opt);
  m.vae->set_precision(opt.device.vae_precision);
  Job job(m, opt, r, "generate", ranks);
  if (!opt.size.note().empty()) job.info(opt.size.note());
  const auto [base_w, base_h] = base_size(m, opt);
  const GuidedText text = job.text();
  Tensor upsampled;
  if (!job.past("base")) {
    job.info(fmt::format("base stage: {} at {}x{}, {} frames, {} steps", m.native.variant, base_w,
                         base_h, opt.frames, opt.base_steps));
    const Tensor noise = rng::normal_tensor(latent_shape(opt.frames, base_h, base_w), opt.seed, 0);
    sched::UniPCScheduler sched(
        sched::UniPCConfig::wan(opt.base_shift > 0 ? opt.base_shift : m.native.flow_shift));
    const Tensor lat = run_base_stage(*m.dit, sched, opt.base_steps, noise, text, job.hooks("base"),
                                      job.resume_for("base"), ranks.groups);
    job.clock.lap("base stage");
    job.info("decoding the base video and upsampling it");
    const Tensor base_frames =
        decode_latents(*m.vae, lat, job.vae_tiling(base_h, base_w), ranks.world);
    trim_device_memory();
    job.clock.lap("VAE decode (base)");
    upsampled =
        resize_bilinear(base_frames, opt.size.gen_height, opt.size.gen_width, FrameLayout::FHWC);
    job.clock.lap("upsampling");
  }
  return job.finish(upsampled.defined() ? &upsampled : nullptr, text, base_w, base_h);
}

Tensor run_upscale(LoadedModels& m, const std::string& input, const JobOptions& opt,
                   const JobReporter& r, const JobRanks& ranks) {
  check_common(opt);
  validate_frame_count(opt.frames);
  check_device(m, opt);
  m.vae->set_precision(opt.device.vae_precision);
  Job job(m, opt, r, "upscale:" + input, ranks);
  if (!opt.size.note().empty()) job.info(opt.size.note());
  const auto [base_w, base_h] = base_size(m, opt);
  const GuidedText text = job.text();
  Tensor upsampled;
  if (!job.past("base")) {
    const video::DecodedVideo in = video::read_video(input, opt.frames);
    FS_CHECK(in.frames.dim(0) == opt.frames, "--input: '{}' has {} frames, fewer than --frames {}",
             input, in.frames.dim(0), opt.frames);
    job.clock.lap("video reading");
    upsampled =
        resize_bilinear(in.frames, opt.size.gen_height, opt.size.gen_width, FrameLayout::FHWC);
    job.clock.lap("upsampling");
  }
  return job.finish(upsampled.defined() ? &upsampled : nullptr, text, base_w, base_h);
}

}  // namespace freeswim::pipeline

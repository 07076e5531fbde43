// The check suites of every component (one function each, defined in src/check/*_cases.cpp).
#pragma once

#include "check/check.h"

namespace freeswim::check {

void check_window_mask_cases(const Context& ctx);
void check_dit_cases(const Context& ctx);

}  // namespace freeswim::check

// Suites of other components are declared below.
namespace freeswim::check {}  // namespace freeswim::check

namespace freeswim::check {
void check_upsample_cases(const Context& ctx);  // pipeline_cases*: bilinear upsampling
}  // namespace freeswim::check

namespace freeswim::check {
void check_tokenizer_cases(const Context& ctx);  // *.cases.json + *.model: sentencepiece ids
}  // namespace freeswim::check

namespace freeswim::check {
void check_scheduler_cases(const Context& ctx);  // scheduler_cases*: UniPC, flow Euler, v2v start
}  // namespace freeswim::check

namespace freeswim::check {
void check_umt5_cases(const Context& ctx);  // umt5*_cases: UMT5 encoder, both namings
}  // namespace freeswim::check

namespace freeswim::check {
void check_vae_cases(const Context& ctx);  // vae*_cases.json: Wan VAE encode / decode
}  // namespace freeswim::check

namespace freeswim::check {
void check_pipeline_cases(
    const Context& ctx);  // pipeline_cases*: base stage, FreeSwim stage (both modes)
}  // namespace freeswim::check

// The scalar part of one UniPC B(h) update (predictor UniP or corrector UniC) in the
// data-prediction form used with flow matching: log-SNR steps, the phi-function weights and the
// rho coefficients. Every quantity is computed in float32 in the same order as the reference
// (diffusers UniPCMultistepScheduler) so that the elementwise update reproduces its bits.
//
// With x the sample at noise level s0, m0 the newest data prediction and m_k older ones, the
// update is
//   x_t = ratio * x - alpha_h_phi_1 * m0 - alpha_b_h * sum_k rhos[k] * (m_k - m0) / rks[k]
// and the corrector adds rhos.back() * (m_t - m0) inside the sum, m_t the prediction at x_t.
#pragma once

#include <vector>

namespace freeswim::sched {

enum class UniPCSolverType { BH1, BH2 };

struct UniPCCoefficients {
  float ratio = 0;          // sigma_t / sigma_s0
  float alpha_h_phi_1 = 0;  // alpha_t * (e^-h - 1)
  float alpha_b_h = 0;      // alpha_t * B(h)
  std::vector<float> rks;   // one per older prediction (order - 1)
  std::vector<float> rhos;  // predictor: order - 1 values; corrector: order values
};

// Coefficients for stepping from sigmas[s0] to sigmas[t] with `order` predictions, the older
// ones at sigmas[s0 - 1], sigmas[s0 - 2], ... `corrector` selects UniC (rhos has `order` values)
// over UniP. Requires order >= 1 and s0 - (order - 1) >= 0.
UniPCCoefficients unipc_coefficients(const std::vector<float>& sigmas, int t, int s0, int order,
                                     bool corrector, UniPCSolverType type);

// Solves the small dense system a * x = b (row-major, n x n) in float32 by Gaussian elimination
// with partial pivoting, as LAPACK's getrf/getrs do. Throws Error when a is singular.
std::vector<float> solve_small(std::vector<float> a, std::vector<float> b);

}  // namespace freeswim::sched

#include "sched/unipc_coefficients.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <utility>

#include "core/error.h"

namespace freeswim::sched {

namespace {

// Flow matching: alpha = 1 - sigma; log-SNR lambda = log(alpha) - log(sigma). At sigma = 0 this
// is +inf, which the reference's arithmetic (and ours) carries through to finite weights.
float lambda_of(float sigma) {
  const float alpha = 1.0f - sigma;
  return std::log(alpha) - std::log(sigma);
}

// x^p by repeated multiplication, as torch.pow does for small integer exponents.
float int_pow(float x, int p) {
  float r = 1.0f;
  for (int i = 0; i < p; ++i) r = (i == 0) ? x : r * x;
  return r;
}

}  // namespace

std::vector<float> solve_small(std::vector<float> a, std::vector<float> b) {
  const size_t n = b.size();
  FS_CHECK(a.size() == n * n, "solve_small: matrix of {} values for {} unknowns", a.size(), n);
  std::vector<size_t> perm(n);
  for (size_t i = 0; i < n; ++i) perm[i] = i;
  // LU factorisation with partial pivoting; the multipliers are formed with the reciprocal of
  // the pivot, as LAPACK does.
  for (size_t k = 0; k < n; ++k) {
    size_t p = k;
    for (size_t i = k + 1; i < n; ++i) {
      if (std::fabs(a[i * n + k]) > std::fabs(a[p * n + k])) p = i;
    }
    FS_CHECK(a[p * n + k] != 0.0f, "solve_small: singular matrix");
    if (p != k) {
      for (size_t j = 0; j < n; ++j) std::swap(a[k * n + j], a[p * n + j]);
      std::swap(perm[k], perm[p]);
      std::swap(b[k], b[p]);
    }
    const float inv = 1.0f / a[k * n + k];
    for (size_t i = k + 1; i < n; ++i) {
      const float l = a[i * n + k] * inv;
      a[i * n + k] = l;
      for (size_t j = k + 1; j < n; ++j) a[i * n + j] -= l * a[k * n + j];
    }
  }
  // Forward substitution with the unit lower factor, then back substitution.
  for (size_t i = 0; i < n; ++i) {
    for (size_t j = 0; j < i; ++j) b[i] -= a[i * n + j] * b[j];
  }
  for (size_t i = n; i-- > 0;) {
    for (size_t j = i + 1; j < n; ++j) b[i] -= a[i * n + j] * b[j];
    b[i] /= a[i * n + i];
  }
  return b;
}

UniPCCoefficients unipc_coefficients(const std::vector<float>& sigmas, int t, int s0, int order,
                                     bool corrector, UniPCSolverType type) {
  FS_CHECK(order >= 1, "unipc: order {} < 1", order);
  FS_CHECK(t >= 0 && s0 >= order - 1 && static_cast<size_t>(std::max(t, s0)) < sigmas.size(),
           "unipc: step from sigma index {} to {} with order {} outside a table of {}", s0, t,
           order, sigmas.size());
  const float sigma_t = sigmas[static_cast<size_t>(t)];
  const float sigma_s0 = sigmas[static_cast<size_t>(s0)];
  const float alpha_t = 1.0f - sigma_t;
  const float lambda_t = lambda_of(sigma_t);
  const float lambda_s0 = lambda_of(sigma_s0);
  const float h = lambda_t - lambda_s0;

  UniPCCoefficients c;
  for (int i = 1; i < order; ++i) {
    const float lambda_si = lambda_of(sigmas[static_cast<size_t>(s0 - i)]);
    c.rks.push_back((lambda_si - lambda_s0) / h);
  }
  std::vector<float> rks = c.rks;
  rks.push_back(1.0f);

  // Data prediction: the exponential integrator runs in -h.
  const float hh = -h;
  const float h_phi_1 = std::expm1(hh);
  float h_phi_k = h_phi_1 / hh - 1.0f;
  long factorial = 1;
  const float b_h = (type == UniPCSolverType::BH1) ? hh : std::expm1(hh);

  // R[i][k] = rks[k]^i, b[i] = i! * phi_{i+2}(h) / B(h)
  const size_t n = static_cast<size_t>(order);
  std::vector<float> r(n * n);
  std::vector<float> b(n);
  for (int i = 1; i <= order; ++i) {
    for (size_t k = 0; k < n; ++k) r[static_cast<size_t>(i - 1) * n + k] = int_pow(rks[k], i - 1);
    b[static_cast<size_t>(i - 1)] = h_phi_k * static_cast<float>(factorial) / b_h;
    factorial *= i + 1;
    h_phi_k = h_phi_k / hh - static_cast<float>(1.0 / static_cast<double>(factorial));
  }

  if (corrector) {
    if (order == 1) {
      c.rhos = {0.5f};
    } else {
      c.rhos = solve_small(r, b);
    }
  } else if (order == 2) {
    c.rhos = {0.5f};  // the reference's simplified second-order predictor
  } else if (order > 2) {
    // The leading (order-1) x (order-1) block of R and the first order-1 entries of b.
    const size_t m = n - 1;
    std::vector<float> rm(m * m);
    for (size_t i = 0; i < m; ++i) {
      for (size_t k = 0; k < m; ++k) rm[i * m + k] = r[i * n + k];
    }
    c.rhos = solve_small(rm, std::vector<float>(b.begin(), b.begin() + static_cast<long>(m)));
  }

  c.ratio = sigma_t / sigma_s0;
  c.alpha_h_phi_1 = alpha_t * h_phi_1;
  c.alpha_b_h = alpha_t * b_h;
  return c;
}

}  // namespace freeswim::sched

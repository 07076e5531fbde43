// numpy.linspace(start, stop, num) in float64, reproduced operation by operation: the
// reference builds its sigma tables with it, and matching its rounding keeps our tables equal
// to the reference's to the last bit (numpy computes i * step + start and then sets the last
// element to `stop` exactly).
#pragma once

#include <vector>

namespace freeswim::sched {

inline std::vector<double> numpy_linspace(double start, double stop, int num) {
  std::vector<double> y(static_cast<size_t>(num > 0 ? num : 0));
  if (num <= 0) return y;
  if (num == 1) {
    y[0] = start;
    return y;
  }
  const double step = (stop - start) / static_cast<double>(num - 1);
  for (int i = 0; i < num; ++i) {
    y[static_cast<size_t>(i)] = static_cast<double>(i) * step + start;
  }
  y.back() = stop;
  return y;
}

}  // namespace freeswim::sched

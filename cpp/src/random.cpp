// Philox4x32-10 and the uniform / normal streams of gradwatch/random.hpp.
// Deliberately one variant (baseline ISA, no FMA contraction possible): the same seed gives the
// same bits on every CPU, SIMD level and thread count.
#include "gradwatch/random.hpp"

#include <cmath>

#include "gradwatch/threads.hpp"

namespace gradwatch {

namespace {

constexpr uint32_t kPhiloxM0 = 0xD2511F53u;
constexpr uint32_t kPhiloxM1 = 0xCD9E8D57u;
constexpr uint32_t kPhiloxW0 = 0x9E3779B9u;  // golden ratio
constexpr uint32_t kPhiloxW1 = 0xBB67AE85u;  // sqrt(3) - 1
constexpr int kPhiloxRounds = 10;
constexpr double kTwoPi = 6.283185307179586476925286766559;
constexpr double kTwoPow52 = 4503599627370496.0;  // 2^52
constexpr double kTwoPowMinus52 = 1.0 / kTwoPow52;
constexpr double kTwoPowMinus53 = 0.5 / kTwoPow52;

// The 52-bit integer k behind u = (2k + 1) / 2^53, from two 32-bit words.
inline uint64_t top52(uint32_t low, uint32_t high) {
  return ((static_cast<uint64_t>(high) << 32) | low) >> 12;
}

// u in (0, 1); exact.
inline double open_unit(uint64_t k) { return static_cast<double>(2 * k + 1) * kTwoPowMinus53; }

// 2u - 1 in (-1, 1); exact: (2k + 1 - 2^52) / 2^52 has a numerator below 2^52 in magnitude.
inline double open_symmetric(uint64_t k) {
  return static_cast<double>(2 * k + 1) * kTwoPowMinus52 - 1.0;
}

inline std::array<uint32_t, 4> stream_block(uint64_t seed, RandomStream stream, int64_t block) {
  const uint64_t b = static_cast<uint64_t>(block);
  return philox4x32_10({static_cast<uint32_t>(b), static_cast<uint32_t>(b >> 32),
                        static_cast<uint32_t>(stream), 0u},
                       {static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32)});
}

}  // namespace

std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter,
                                      std::array<uint32_t, 2> key) {
  std::array<uint32_t, 4> c = counter;
  uint32_t k0 = key[0], k1 = key[1];
  for (int round = 0; round < kPhiloxRounds; ++round) {
    if (round > 0) {
      k0 += kPhiloxW0;
      k1 += kPhiloxW1;
    }
    const uint64_t p0 = static_cast<uint64_t>(kPhiloxM0) * c[0];
    const uint64_t p1 = static_cast<uint64_t>(kPhiloxM1) * c[2];
    const uint32_t hi0 = static_cast<uint32_t>(p0 >> 32), lo0 = static_cast<uint32_t>(p0);
    const uint32_t hi1 = static_cast<uint32_t>(p1 >> 32), lo1 = static_cast<uint32_t>(p1);
    c = {hi1 ^ c[1] ^ k0, lo1, hi0 ^ c[3] ^ k1, lo0};
  }
  return c;
}

template <typename T>
void fill_normal(T* out, int64_t n, double std, uint64_t seed, RandomStream stream) {
  const int64_t blocks = (n + 1) / 2;
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const std::array<uint32_t, 4> x = stream_block(seed, stream, b);
    const double u0 = open_unit(top52(x[0], x[1]));
    const double u1 = open_unit(top52(x[2], x[3]));
    const double r = std::sqrt(-2.0 * std::log(u0));  // u0 > 0: log is finite
    const double theta = kTwoPi * u1;
    out[2 * b] = static_cast<T>(std * (r * std::cos(theta)));
    if (2 * b + 1 < n) out[2 * b + 1] = static_cast<T>(std * (r * std::sin(theta)));
  }
}

template <typename T>
void fill_uniform(T* out, int64_t n, double limit, uint64_t seed, RandomStream stream) {
  const int64_t blocks = (n + 1) / 2;
#pragma omp parallel for num_threads(threads_for(n)) schedule(static)
  for (int64_t b = 0; b < blocks; ++b) {
    const std::array<uint32_t, 4> x = stream_block(seed, stream, b);
    out[2 * b] = static_cast<T>(limit * open_symmetric(top52(x[0], x[1])));
    if (2 * b + 1 < n) out[2 * b + 1] = static_cast<T>(limit * open_symmetric(top52(x[2], x[3])));
  }
}

template void fill_normal<float>(float*, int64_t, double, uint64_t, RandomStream);
template void fill_normal<double>(double*, int64_t, double, uint64_t, RandomStream);
template void fill_uniform<float>(float*, int64_t, double, uint64_t, RandomStream);
template void fill_uniform<double>(double*, int64_t, double, uint64_t, RandomStream);

}  // namespace gradwatch

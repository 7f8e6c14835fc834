// Counter-based random numbers: Philox4x32-10 (Salmon, Moraes, Dror, Shaw, "Parallel random
// numbers: as easy as 1, 2, 3", SC 2011), and uniform / normal streams built on it.
//
// A stream is addressed, not iterated: value e of the stream (seed, stream) depends only on
// (seed, stream, e), so any thread can produce any slice and the result never depends on the
// thread count. Block b of a stream is philox4x32_10(counter, key) with
//   counter = (b mod 2^32, b div 2^32, stream, 0),  key = (seed mod 2^32, seed div 2^32),
// and its four 32-bit words x0..x3 give two doubles in the open interval (0, 1):
//   u0 from (x1 << 32 | x0), u1 from (x3 << 32 | x2), each u = (2k + 1) / 2^53 with k the top
//   52 bits of the 64-bit word, so u is never 0 or 1 and the set of values is symmetric about 1/2.
// Value e of the stream comes from block e / 2 (u0 for even e, u1 for odd e).
//
// This file is compiled once, for the portable baseline ISA only (no SIMD variants): the same
// seed must give the same bits on every CPU and SIMD level.
#pragma once

#include <array>
#include <cstdint>

namespace gradwatch {

// The stream ids in use, one per purpose, so that two purposes never share random numbers.
enum class RandomStream : uint32_t {
  normal_weights = 1,
  uniform_weights = 2,
  orthogonal_weights = 3,
};

// One Philox4x32-10 block: 10 rounds with the standard multipliers 0xD2511F53, 0xCD9E8D57 and
// Weyl key increments 0x9E3779B9, 0xBB67AE85.
std::array<uint32_t, 4> philox4x32_10(std::array<uint32_t, 4> counter, std::array<uint32_t, 2> key);

// out[e] = mean + std * z_e, z_e ~ N(0, 1) by Box-Muller on block e / 2 of (seed, stream):
//   r = sqrt(-2 log u0), theta = 2 pi u1, z_{2b} = r cos(theta), z_{2b+1} = r sin(theta),
// computed in double and rounded once to T.
// out: (n)
template <typename T>
void fill_normal(T* out, int64_t n, double std, uint64_t seed, RandomStream stream);

// out[e] = limit * (2 u_e - 1), uniform on the open interval (-limit, limit) in double (2 u - 1 is
// exact), rounded once to T (in float32 the rounding may reach +-limit).
// out: (n)
template <typename T>
void fill_uniform(T* out, int64_t n, double limit, uint64_t seed, RandomStream stream);

}  // namespace gradwatch

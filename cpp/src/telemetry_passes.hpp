// Telemetry's part of the network's activation pass: where each tile puts its sums (bodies in
// telemetry_kernels.hpp, run from network_kernels.hpp's forward tile).
// Dims: N = batch, O = features of the layer; tiles as in network_passes.hpp (index, chunk).
#pragma once

#include <cstdint>

namespace gradwatch {

// The sums one tile of a hidden layer's activation pass writes to row tile.index of tile_sums.
enum TileSum : int {
  kPreactSum,      // of h, the activation's input (after batch norm)
  kPreactSquares,  // of h^2
  kActSum,         // of a, the activation's output
  kActSquares,     // of a^2
  kSaturated,      // entries of a outside the kind's band (sigmoid, tanh)
  kNonfinite,      // NaN or infinite entries of z and of a
  kTileSums,
};

// Null pointers switch parts off. alive and unit_sums rows belong to the tile's chunk:
// alive[chunk, f] = 1 when some row of the chunk has h > 0 (or NaN) at feature f (relu family);
// unit_sums[chunk, f] = sum over the chunk's rows with nonzero norm of a[n, f] / ||a[n]||, and
// nonzero_rows[chunk] their count, written by a tile that spans whole rows (else by
// telemetry_unit_sums_chunk after the pass).
// tile_sums: (tiles, kTileSums)  alive: (chunks, O)  unit_sums: (chunks, O)  nonzero_rows: (chunks)
struct ForwardStatsArgs {
  double* tile_sums;
  uint8_t* alive;
  double* unit_sums;
  int64_t* nonzero_rows;
};

}  // namespace gradwatch

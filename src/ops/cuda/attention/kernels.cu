// The attention kernels that ship, and their launches. Each is a producer warpgroup
// (producers.cuh) and the two consumer warpgroups (consumer.cuh) around one ring (tile_ring.cuh):
//
//   box_tiles_kernel<D, kBoxW>  window over box tiles, fed by TMA (the default window kernel)
//   dense_tma_kernel<D>         dense, fed by TMA (the default dense kernel)
//   row_runs_kernel<D, kWindow> window over row runs (where box tiles would compute too many
//                               masked pairs), or dense where tensor maps cannot be made; fed by
//                               cp.async
//
// for head_dim D = 128 (Wan2.1 1.3B and 14B) and D = 64. Which one runs is decided in
// attention.cpp. Kept free of host-side error formatting (fmt's compile-time format strings do
// not pass nvcc).
//
// The kernels' preambles (ring alignment, block queries, barriers) are written out in each kernel
// rather than behind one helper: behind helper functions the compiled kernels came out different
// (compared section by section in the cubin), and the code measured on the GPU is this code.
#include "ops/cuda/attention/consumer.cuh"
#include "ops/cuda/attention/producers.cuh"

namespace freeswim::attention::detail {
namespace {

template <int D, int kBoxW>
__global__ void __launch_bounds__(kBlockThreads, 1)
    box_tiles_kernel(const __grid_constant__ Params p, const __grid_constant__ TensorMaps maps) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  using C = Consumer<D, true, true, kBoxW>;
  Ring<D>& s = FS_ALIGNED_RING(D, smem_raw);
  const int head = blockIdx.y;
  const int tid = threadIdx.x;
  const BlockQueries<true> bq = window_block(p);
  const BoxGrid bg = box_grid(p.g, p.plan.ph, p.plan.pw, bq.h0, bq.w0, kBoxW);
  const int n_tiles = bg.tiles(p.g.T);
  if (tid == 0) init_tma_ring(s, maps);
  if (tid < 128) {  // Q's padding rows (no copy lands there) must be finite: zero them once
    const uint4 zero{0u, 0u, 0u, 0u};
    for (int i = tid; i < kBlockQ * D / 8; i += 128) reinterpret_cast<uint4*>(s.q)[i] = zero;
    fence_proxy_async();  // the TMA writes (async proxy) come after these generic stores
  }
  __syncthreads();

  if (tid < 128) {
    setmaxnreg_dec<kTmaProducerRegs>();
    if (tid < 32) box_tile_producer<D, kBoxW>(p, maps, s, bq, bg, head, n_tiles, tid);
  } else {
    setmaxnreg_inc<kTmaConsumerRegs>();
    run_consumer<C, false>(p, s, bq, tid, n_tiles, head);
  }
}

template <int D>
__global__ void __launch_bounds__(kBlockThreads, 1)
    dense_tma_kernel(const __grid_constant__ Params p, const __grid_constant__ TensorMaps maps) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  using C = Consumer<D, false, true>;
  Ring<D>& s = FS_ALIGNED_RING(D, smem_raw);
  const int head = blockIdx.y;
  const int tid = threadIdx.x;
  const int n_tiles = (p.n_kv + kTileKeys - 1) / kTileKeys;
  if (tid == 0) {
    // Nothing reads the tile table here; the stores stay because without them ptxas schedules
    // the kernel differently from the build whose speed docs/ reports (compare_kernels.sh).
    s.kt.first[0] = 0;
    s.kt.first[5] = n_tiles;
    init_tma_ring(s, maps);
  }
  __syncthreads();

  if (tid < 128) {
    setmaxnreg_dec<kTmaProducerRegs>();
    if (tid == 0) dense_tma_producer<D>(maps, s, head, n_tiles);
  } else {
    setmaxnreg_inc<kTmaConsumerRegs>();
    run_consumer<C, false>(p, s, BlockQueries<false>{}, tid, n_tiles, head);
  }
}

template <int D, bool kWindow>
__global__ void __launch_bounds__(kBlockThreads, 1)
    row_runs_kernel(const __grid_constant__ Params p) {
  extern __shared__ __align__(128) unsigned char smem_raw[];
  using C = Consumer<D, kWindow, false>;
  constexpr int BK = kTileKeys;
  Ring<D>& s = FS_ALIGNED_RING(D, smem_raw);
  const int head = blockIdx.y;
  const int tid = threadIdx.x;

  BlockQueries<kWindow> bq;
  KeyTiles& kt = s.kt;
  if constexpr (kWindow) bq = window_block(p);
  if (tid == 0) {
    if constexpr (kWindow) {
      kt.keys = patch_keys(p.g, p.plan.ph, p.plan.pw, bq.h0, bq.w0);
      kt.first[0] = 0;
      for (int i = 0; i < 5; ++i)
        kt.first[i + 1] =
            kt.first[i] + static_cast<int>((kt.keys.rect[i].keys(p.g.T) + BK - 1) / BK);
    } else {
      kt.first[0] = 0;
      kt.first[5] = (p.n_kv + BK - 1) / BK;
    }
    for (int i = 0; i < kStages; ++i) {
      mbar_init(&s.full[i], kRowFullArrivals<D>);
      mbar_init(&s.empty[i], C::kEmptyArrivals);
    }
  }
  __syncthreads();  // the last block-wide barrier: from here on the roles only meet in mbarriers
  const int n_tiles = kt.first[5];

  if (tid < 128) {
    setmaxnreg_dec<kRowProducerRegs>();
    row_run_producer<D, kWindow>(p, s, bq, head, n_tiles);
  } else {
    setmaxnreg_inc<kRowConsumerRegs>();
    run_consumer<C, true>(p, s, bq, tid, n_tiles, head);
  }
}

template <class Kernel, class... Args>
cudaError_t launch(Kernel kernel, int smem_bytes, dim3 grid, cudaStream_t stream,
                   const Args&... args) {
  // The opt-in above 48 KB is per kernel and per device; setting it again is cheap.
  const cudaError_t e =
      cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, smem_bytes);
  if (e != cudaSuccess) return e;
  kernel<<<grid, kBlockThreads, smem_bytes, stream>>>(args...);
  return cudaGetLastError();
}

template <int D>
cudaError_t box_tiles(const Params& p, const TensorMaps& maps, dim3 grid, cudaStream_t stream) {
  switch (p.plan.box_w) {
    case 4:
      return launch(box_tiles_kernel<D, 4>, kRingBytes<D>, grid, stream, p, maps);
    case 8:
      return launch(box_tiles_kernel<D, 8>, kRingBytes<D>, grid, stream, p, maps);
    case 16:
      return launch(box_tiles_kernel<D, 16>, kRingBytes<D>, grid, stream, p, maps);
    default:
      return cudaErrorInvalidValue;
  }
}

}  // namespace

cudaError_t launch_box_tiles(const Params& p, const TensorMaps& maps, int head_dim, dim3 grid,
                             cudaStream_t stream) {
  if (head_dim == 64) return box_tiles<64>(p, maps, grid, stream);
  if (head_dim == 128) return box_tiles<128>(p, maps, grid, stream);
  return cudaErrorInvalidValue;
}

cudaError_t launch_dense_tma(const Params& p, const TensorMaps& maps, int head_dim, dim3 grid,
                             cudaStream_t stream) {
  if (head_dim == 64) return launch(dense_tma_kernel<64>, kRingBytes<64>, grid, stream, p, maps);
  if (head_dim == 128) return launch(dense_tma_kernel<128>, kRingBytes<128>, grid, stream, p, maps);
  return cudaErrorInvalidValue;
}

cudaError_t launch_row_runs(const Params& p, bool window, int head_dim, dim3 grid,
                            cudaStream_t stream) {
  if (head_dim == 64)
    return window ? launch(row_runs_kernel<64, true>, kRingBytes<64>, grid, stream, p)
                  : launch(row_runs_kernel<64, false>, kRingBytes<64>, grid, stream, p);
  if (head_dim == 128)
    return window ? launch(row_runs_kernel<128, true>, kRingBytes<128>, grid, stream, p)
                  : launch(row_runs_kernel<128, false>, kRingBytes<128>, grid, stream, p);
  return cudaErrorInvalidValue;
}

}  // namespace freeswim::attention::detail

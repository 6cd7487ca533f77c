/* The int4 copy of one weight matrix, expanded to a dense transposed matrix for a prefill GEMM.
 *
 * Input: the codes in the packed order of PyTorch's CPU int4 kernel (row blocks of `block` rows, each
 * block stored as K columns of block / 2 bytes, byte j holding row j in its low nibble and row
 * block / 2 + j in its high one) and the (K / group, N, 2) bf16 (scale, zero) pairs; a weight is
 * (code - 8) * scale + zero, computed in fp32 (as (code * scale) + (zero - 8 * scale)).
 * The bf16 output is then rounded once, to nearest even.
 * Output: W^T, K rows of N values (bf16, rounded to nearest even, or fp32), so that each packed byte
 * column lands in one contiguous run of the output row and the caller multiplies x (M, K) @ W^T.
 * Row blocks are split across the OpenMP threads of the process (the library links the libgomp that
 * PyTorch has loaded, so they are PyTorch's own threads).
 *
 * Built at first use by vla_accel_ros/quant/unpack_kernel.py with the host's compiler for the host CPU.
 */
#include <stdint.h>
#include <string.h>
#if defined(__AVX2__)
#include <immintrin.h>
#endif

#define MAX_BLOCK 64

static inline float bf16_to_f32(uint16_t h) {
  uint32_t u = (uint32_t)h << 16;
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}

static inline uint16_t f32_to_bf16(float f) { /* round to nearest even; weights are finite */
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  u += 0x7FFFu + ((u >> 16) & 1u);
  return (uint16_t)(u >> 16);
}

/* One group of `group` columns of one row block: scales and zeros de-interleaved once. */
#define UNPACK_BODY(STORE)                                                                          \
  const int half = block / 2;                                                                       \
  const int blocks = n / block;                                                                     \
  _Pragma("omp parallel for schedule(static)")                                                      \
  for (int nb = 0; nb < blocks; nb++) {                                                             \
    float s[MAX_BLOCK], z[MAX_BLOCK];                                                               \
    for (int g = 0; g < k / group; g++) {                                                           \
      const uint16_t *sz = scales_zeros + ((size_t)g * n + (size_t)nb * block) * 2;                 \
      for (int j = 0; j < block; j++) {                                                             \
        s[j] = bf16_to_f32(sz[2 * j]);                                                              \
        z[j] = bf16_to_f32(sz[2 * j + 1]) - 8.0f * s[j];                                            \
      }                                                                                             \
      for (int c = g * group; c < (g + 1) * group; c++) {                                           \
        const uint8_t *p = packed + ((size_t)nb * k + c) * half;                                    \
        size_t o = (size_t)c * ldo + (size_t)nb * block;                                            \
        for (int j = 0; j < half; j++) {                                                            \
          out[o + j] = STORE((float)(p[j] & 15) * s[j] + z[j]);                                     \
          out[o + half + j] = STORE((float)(p[j] >> 4) * s[half + j] + z[half + j]);               \
        }                                                                                           \
      }                                                                                             \
    }                                                                                               \
  }

#define AS_F32(v) (v)

#if defined(__AVX512F__)
/* The same for the AVX-512 builds' 64-row blocks, by hand: gcc's vectorization of the loop above leaves
 * it 3-5x slower than this. One packed column (32 bytes) is 64 weights: bytes 0-15 hold rows 0-15 (low
 * nibbles) and 32-47 (high ones), bytes 16-31 rows 16-31 and 48-63. */
static inline void unpack64_column(const uint8_t *p, const __m512 s[4], const __m512 z[4], __m512 v[4]) {
  const __m512i mask = _mm512_set1_epi32(15);
  const __m512i b0 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)p));
  const __m512i b1 = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)(p + 16)));
  v[0] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(b0, mask)), s[0], z[0]);
  v[1] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_and_si512(b1, mask)), s[1], z[1]);
  v[2] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(b0, 4)), s[2], z[2]);
  v[3] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_srli_epi32(b1, 4)), s[3], z[3]);
}

static inline void store64_f32(float *o, const __m512 v[4]) {
  for (int i = 0; i < 4; i++) _mm512_storeu_ps(o + 16 * i, v[i]);
}

static inline void store64_bf16(uint16_t *o, const __m512 v[4]) {
#if defined(__AVX512BF16__)
  _mm512_storeu_si512((void *)o, (__m512i)_mm512_cvtne2ps_pbh(v[1], v[0]));
  _mm512_storeu_si512((void *)(o + 32), (__m512i)_mm512_cvtne2ps_pbh(v[3], v[2]));
#else
  float tmp[64];
  store64_f32(tmp, v);
  for (int j = 0; j < 64; j++) o[j] = f32_to_bf16(tmp[j]);
#endif
}

#define UNPACK64_BODY(STORE)                                                                        \
  _Pragma("omp parallel for schedule(static)")                                                      \
  for (int nb = 0; nb < n / 64; nb++) {                                                             \
    float sf[64], zf[64];                                                                           \
    __m512 s[4], z[4], v[4];                                                                        \
    for (int g = 0; g < k / group; g++) {                                                           \
      const uint16_t *sz = scales_zeros + ((size_t)g * n + (size_t)nb * 64) * 2;                    \
      for (int j = 0; j < 64; j++) {                                                                \
        sf[j] = bf16_to_f32(sz[2 * j]);                                                             \
        zf[j] = bf16_to_f32(sz[2 * j + 1]) - 8.0f * sf[j];                                          \
      }                                                                                             \
      for (int i = 0; i < 4; i++) {                                                                 \
        s[i] = _mm512_loadu_ps(sf + 16 * i);                                                        \
        z[i] = _mm512_loadu_ps(zf + 16 * i);                                                        \
      }                                                                                             \
      for (int c = g * group; c < (g + 1) * group; c++) {                                           \
        unpack64_column(packed + ((size_t)nb * k + c) * 32, s, z, v);                               \
        STORE(out + (size_t)c * ldo + (size_t)nb * 64, v);                                          \
      }                                                                                             \
    }                                                                                               \
  }
#endif

#if defined(__AVX2__) && defined(__FMA__)
/* The AVX2 builds' 32-row blocks into fp32 (the dense GEMM of machines without native bf16): one packed
 * column (16 bytes) is 32 weights, rows 0-15 in the low nibbles and 16-31 in the high ones. */
static void unpack32_f32(const uint8_t *packed, const uint16_t *scales_zeros, int n, int k, int group,
                         float *out, int ldo) {
  _Pragma("omp parallel for schedule(static)")
  for (int nb = 0; nb < n / 32; nb++) {
    float sf[32], zf[32];
    __m256 s[4], z[4];
    const __m256i mask = _mm256_set1_epi32(15);
    for (int g = 0; g < k / group; g++) {
      const uint16_t *sz = scales_zeros + ((size_t)g * n + (size_t)nb * 32) * 2;
      for (int j = 0; j < 32; j++) {
        sf[j] = bf16_to_f32(sz[2 * j]);
        zf[j] = bf16_to_f32(sz[2 * j + 1]) - 8.0f * sf[j];
      }
      for (int i = 0; i < 4; i++) {
        s[i] = _mm256_loadu_ps(sf + 8 * i);
        z[i] = _mm256_loadu_ps(zf + 8 * i);
      }
      for (int c = g * group; c < (g + 1) * group; c++) {
        const uint8_t *p = packed + ((size_t)nb * k + c) * 16;
        float *o = out + (size_t)c * ldo + (size_t)nb * 32;
        const __m256i b0 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)p));
        const __m256i b1 = _mm256_cvtepu8_epi32(_mm_loadl_epi64((const __m128i *)(p + 8)));
        _mm256_storeu_ps(o, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b0, mask)), s[0], z[0]));
        _mm256_storeu_ps(o + 8, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_and_si256(b1, mask)), s[1], z[1]));
        _mm256_storeu_ps(o + 16, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b0, 4)), s[2], z[2]));
        _mm256_storeu_ps(o + 24, _mm256_fmadd_ps(_mm256_cvtepi32_ps(_mm256_srli_epi32(b1, 4)), s[3], z[3]));
      }
    }
  }
}
#endif

int vla_int4_unpack_t_bf16(const uint8_t *packed, const uint16_t *scales_zeros, int n, int k, int group,
                           int block, uint16_t *out, int ldo) {
  if (block > MAX_BLOCK || block % 2 || n % block || k % group) return 1;
#if defined(__AVX512F__)
  if (block == 64) {
    UNPACK64_BODY(store64_bf16)
    return 0;
  }
#endif
  UNPACK_BODY(f32_to_bf16)
  return 0;
}

int vla_int4_unpack_t_f32(const uint8_t *packed, const uint16_t *scales_zeros, int n, int k, int group,
                          int block, float *out, int ldo) {
  if (block > MAX_BLOCK || block % 2 || n % block || k % group) return 1;
#if defined(__AVX512F__)
  if (block == 64) {
    UNPACK64_BODY(store64_f32)
    return 0;
  }
#endif
#if defined(__AVX2__) && defined(__FMA__)
  if (block == 32) {
    unpack32_f32(packed, scales_zeros, n, k, group, out, ldo);
    return 0;
  }
#endif
  UNPACK_BODY(AS_F32)
  return 0;
}

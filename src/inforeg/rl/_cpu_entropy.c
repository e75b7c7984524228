/* Fused one-pass CPU kernels for inforeg.rl.entropy: token entropy, row log-sum-exp and their
 * backward passes, for float32 and bfloat16 logits laid out as rows of `vocab` contiguous values.
 *
 * Compiled at first use by inforeg/rl/_cpu_entropy.py (C99 with GCC/Clang vector extensions, no
 * Python or torch headers) and called through ctypes; rows are split over POSIX threads.
 *
 * Forward (row_stats): each row is read once from memory, in blocks of BLOCK values, with an
 * online softmax in base 2 (see row_stats); the block's sums run in float32 vector lanes and are
 * added to double accumulators. lse = (m + log2 s) ln 2 and H = (log2 s - u / s) ln 2, two
 * non-negative terms (no cancellation for peaked rows).
 * Backward (row_backward): one read of the logits and one write of the gradient per row.
 *
 * 2^x is a polynomial after range reduction (about 1.6 ulp), written so that the compiler
 * vectorises it. -inf logits (masked vocabulary) never produce 0 * inf: the forward clamps the
 * exponent (their share is below V * 2e-38 of the sum) and the backward gives them exactly 0.
 * NaN and +inf logits make the row's result NaN, as on the PyTorch path.
 */
#include <math.h>
#include <pthread.h>
#if defined(__AVX512F__)
#include <immintrin.h>
#endif
#include <stdint.h>
#include <string.h>

#define BLOCK 2048
#define LANES 16 /* one AVX-512 register of float32 */
#define LOG2E 1.44269504088896341f
#define LN2 0.693147180559945309
#define EXP2_LO (-125.0f) /* 2^-125 ~ 2.4e-38: the floor of vexp2 (a normal float) */
#define SLACK 40.0f       /* block maxima up to 2^40 above the reference need no redo */

enum { F32 = 0, BF16 = 1 };

static inline float bf16_to_f32(uint16_t h)
{
    uint32_t bits = (uint32_t)h << 16;
    float f;
    memcpy(&f, &bits, sizeof f);
    return f;
}

static inline uint16_t f32_to_bf16(float f) /* round to nearest even, as torch */
{
    uint32_t bits;
    memcpy(&bits, &f, sizeof bits);
    uint32_t rounded = (bits + 0x7FFFu + ((bits >> 16) & 1u)) >> 16;
    return (uint16_t)(f != f ? (bits >> 16) | 0x40u : rounded); /* NaN stays a quiet NaN */
}

static inline float load(const void *z, int dtype, int64_t i) /* one value as float32 */
{
    return dtype == F32 ? ((const float *)z)[i] : bf16_to_f32(((const uint16_t *)z)[i]);
}

/* One vector of LANES float32 (GCC/Clang vector extensions; on targets without 512-bit
 * registers the compiler splits it) and its integer views. */
typedef float vf __attribute__((vector_size(4 * LANES)));
typedef int32_t vi __attribute__((vector_size(4 * LANES)));
typedef uint32_t vu __attribute__((vector_size(4 * LANES)));
typedef uint16_t vh __attribute__((vector_size(2 * LANES)));

static inline vf vsplat(float a)
{
    return (vf){0} + a;
}

static inline vf vselect(vi mask, vf a, vf b) /* mask ? a : b, lane by lane */
{
    return (vf)(((vi)a & mask) | ((vi)b & ~mask));
}

/* b > a ? b : a lane by lane (a where b is NaN, b where a is NaN): one instruction on AVX-512 */
static inline vf vmax(vf a, vf b)
{
#if defined(__AVX512F__) && LANES == 16
    return (vf)_mm512_max_ps((__m512)b, (__m512)a);
#else
    return vselect(b > a, b, a);
#endif
}

static inline vf vload(const void *x, int dtype, int64_t k) /* LANES values from index k */
{
    if (dtype == F32) {
        vf v;
        memcpy(&v, (const float *)x + k, sizeof v);
        return v;
    }
    vh h;
    memcpy(&h, (const uint16_t *)x + k, sizeof h);
    return (vf)(__builtin_convertvector(h, vu) << 16);
}

/* 2^x lane by lane for x in [-125, 127] (callers clamp below; NaN propagates). n = round(x) by
 * the 1.5 * 2^23 trick (the low mantissa bits of t hold n + 127, the biased exponent); 2^(x - n)
 * on [-1/2, 1/2] by a degree-6 polynomial fitted for minimax relative error (about 1.6 ulp with
 * float32 Horner steps); then 2^n * that, with 2^n built from t's bits:
 * (0x4B400000 + 127 + n) << 23 == (127 + n) << 23 mod 2^32. */
static inline vf vexp2(vf x)
{
    const vf magic = vsplat(12582912.0f + 127.0f);
    vf t = x + magic;
    vf r = x - (t - magic);
    vf p = vsplat(1.5345810970757157e-4f);
    p = p * r + 1.3399930903688073e-3f;
    p = p * r + 9.618489071726799e-3f;
    p = p * r + 5.550328642129898e-2f;
    p = p * r + 2.4022646248340607e-1f;
    p = p * r + 6.931471824645996e-1f;
    p = p * r + 1.0f;
    return p * (vf)((vu)t << 23);
}

/* Sums over the values x[0, len) of one block, in base-2 units w = x * c - m2 with
 * c = log2(e) / T and m2 the reference (the running maximum of x * c):
 *   *bs = sum 2^w,  *bu = sum 2^w w (if want_u),  *bmax = max x.
 * Two vectors of LANES float32 lanes per step, kept in registers. w is clamped at EXP2_LO, so
 * -inf logits (masked vocabulary) add 2^-125 ~ 2e-38 each instead of 0 * inf = NaN, a relative
 * change of at most V * 2e-38 since the maximum adds 2^0 = 1; NaN propagates. The next block's
 * bytes (`next`) are prefetched into L2 (prefetcht1: into L1 it measured 1.7x slower, the fill
 * buffers saturate) line by line, so that its read from memory overlaps this block's
 * arithmetic. */
static inline __attribute__((always_inline)) void sum_step(vf v, vf vc, vf vm, const int want_u,
                                                           vf *as, vf *au, vf *am)
{
    vf w = vmax(v * vc - vm, vsplat(EXP2_LO)); /* NaN stays NaN */
    vf e = vexp2(w);
    *am = vmax(*am, v);
    *as += e;
    if (want_u)
        *au += e * w;
}

static inline __attribute__((always_inline)) void
block_sums(const void *x, const int dtype, int64_t len, float c, float m2, const int want_u,
           const char *next, float *bs, float *bu, float *bmax)
{
    const int64_t esize = dtype == F32 ? 4 : 2;
    const vf vc = vsplat(c), vm = vsplat(m2);
    vf as0 = {0}, au0 = {0}, as1 = {0}, au1 = {0};
    vf am0 = vsplat(-INFINITY), am1 = am0;
    int64_t full = len - len % (2 * LANES);
    for (int64_t k = 0; k < full; k += 2 * LANES) { /* two vectors: 128 B float32, 64 B bf16 */
        __builtin_prefetch(next + k * esize, 0, 2);
        if (dtype == F32)
            __builtin_prefetch(next + k * esize + 64, 0, 2);
        sum_step(vload(x, dtype, k), vc, vm, want_u, &as0, &au0, &am0);
        sum_step(vload(x, dtype, k + LANES), vc, vm, want_u, &as1, &au1, &am1);
    }
    if (full < len) { /* the last values, padded with -inf (each pad adds 2^-125, as a masked logit) */
        float pad[2 * LANES];
        for (int64_t j = 0; j < 2 * LANES; j++)
            pad[j] = full + j < len ? load(x, dtype, full + j) : -INFINITY;
        sum_step(vload(pad, F32, 0), vc, vm, want_u, &as0, &au0, &am0);
        sum_step(vload(pad, F32, LANES), vc, vm, want_u, &as1, &au1, &am1);
    }
    float ts = 0.0f, tu = 0.0f, tm = -INFINITY;
    for (int j = 0; j < LANES; j++) {
        ts += as0[j] + as1[j];
        tu += au0[j] + au1[j];
        tm = am0[j] > tm ? am0[j] : tm;
        tm = am1[j] > tm ? am1[j] : tm;
    }
    *bs = ts;
    *bu = want_u ? tu : 0.0f;
    *bmax = tm;
}

/* block_sums with the dtype and want_u fixed at compile time (no branches in the loop) */
static void block_sums_any(const void *x, int dtype, int64_t len, float c, float m2, int want_u,
                           const char *next, float *bs, float *bu, float *bmax)
{
    if (dtype == F32 && want_u)
        block_sums(x, F32, len, c, m2, 1, next, bs, bu, bmax);
    else if (dtype == F32)
        block_sums(x, F32, len, c, m2, 0, next, bs, bu, bmax);
    else if (want_u)
        block_sums(x, BF16, len, c, m2, 1, next, bs, bu, bmax);
    else
        block_sums(x, BF16, len, c, m2, 0, next, bs, bu, bmax);
}

static inline float block_max(const void *x, int dtype, int64_t len) /* NaN if any is NaN */
{
    vf am = vsplat(-INFINITY);
    vi nan = {0};
    int64_t full = len - len % LANES;
    for (int64_t k = 0; k < full; k += LANES) {
        vf v = vload(x, dtype, k);
        am = vmax(am, v);
        nan |= v != v;
    }
    float b = -INFINITY;
    for (int j = 0; j < LANES; j++) {
        if (nan[j])
            return NAN;
        b = am[j] > b ? am[j] : b;
    }
    for (int64_t i = full; i < len; i++) {
        float v = load(x, dtype, i);
        if (v != v)
            return v;
        b = v > b ? v : b;
    }
    return b;
}

/* Row statistics lse[row] and, when ent != NULL, the entropy ent[row], in one read of the row.
 * Online softmax over blocks in base 2 (w = y log2 e, y = z / T), relative to a reference m2
 * (the maximum of w seen so far): s = sum 2^(w - m2), u = sum 2^(w - m2) (w - m2) <= 0.
 * A block is summed against the current reference while its own maximum is found in the same
 * pass; if that maximum exceeds the reference by more than SLACK (the first block with a finite
 * value, or a rare jump) the block is summed again against it. Moving the reference from m2 to
 * m2' > m2 rescales exactly: u <- a (u + s (m2 - m2')), s <- a s with a = 2^(m2 - m2').
 * Then lse = (m2 + log2 s) ln 2 and H = (log2 s - u / s) ln 2: two non-negative terms. */
static void row_stats(const void *z, int dtype, int64_t row_stride, int64_t row, int64_t vocab,
                      float inv_t, float *lse, float *ent)
{
    const int want_u = ent != NULL;
    const int64_t esize = dtype == F32 ? 4 : 2;
    const char *raw = (const char *)z + row * row_stride * esize;
    const float c = inv_t * LOG2E;
    float m2 = -INFINITY;    /* reference: the running maximum of w */
    double s = 0.0, u = 0.0; /* sums relative to m2 */
    int bad = 0;             /* NaN or +inf seen */
    for (int64_t off = 0; off < vocab; off += BLOCK) {
        int64_t len = vocab - off < BLOCK ? vocab - off : BLOCK;
        const char *x = raw + off * esize;
        const char *next = raw + (off + BLOCK < vocab ? off + BLOCK : row_stride) * esize;
        if (m2 == -INFINITY) { /* no finite reference yet: find this block's maximum first */
            m2 = block_max(x, dtype, len) * c;
            if (m2 == -INFINITY)
                continue; /* all -inf so far (masked): nothing to add */
        }
        float bs, bu, bmax;
        block_sums_any(x, dtype, len, c, m2, want_u, next, &bs, &bu, &bmax);
        float b2 = bmax * c; /* max(z) c == max(z c): rounding is monotone */
        if (b2 > m2 + SLACK) { /* a large jump: sums against the old reference may overflow */
            double a = exp2((double)m2 - (double)b2);
            u = a * (u + s * ((double)m2 - (double)b2));
            s *= a;
            m2 = b2;
            block_sums_any(x, dtype, len, c, m2, want_u, next, &bs, &bu, &bmax);
        }
        if (bs != bs || bu != bu || bmax == INFINITY)
            bad = 1;
        s += bs;
        u += bu;
        if (b2 > m2 && !bad) { /* keep the reference at the maximum */
            double a = exp2((double)m2 - (double)b2);
            u = a * (u + s * ((double)m2 - (double)b2));
            s *= a;
            m2 = b2;
        }
    }
    /* NaN or +inf logits, or a row with every logit -inf (no distribution): NaN */
    if (bad || m2 == -INFINITY || m2 != m2) {
        lse[row] = NAN;
        if (want_u)
            ent[row] = NAN;
        return;
    }
    double log2_s = log2(s); /* s >= 1: the maximum contributes 2^0 */
    lse[row] = (float)(((double)m2 + log2_s) * LN2);
    if (want_u)
        ent[row] = (float)((log2_s - u / s) * LN2);
}

/* Gradient of one block, x[0, len) -> o[0, len), all float32 (w = x c - l2, c = log2(e) / T,
 * l2 = lse log2(e), so log p = w ln 2):
 *   entropy (is_ent):  dH/dz = -(1/T) p (log p + H) = p (k w + kh), k = -(g / T) ln 2, kh = -(g / T) H
 *   selective:         d log p_tok / dz = (g / T) (onehot(tok) - p), here o = k p with k = -g / T
 *                      (the one-hot term is added by the caller).
 * p = 2^w is exactly 0 where w < EXP2_LO (-inf logits: gradient 0). */
static inline vf grad_step(vf v, vf vc, vf vl, int is_ent, vf vk, vf vkh)
{
    const vf lo = vsplat(EXP2_LO);
    vf w = v * vc - vl;
    vf wc = vmax(w, lo);
    vf p = vselect(w < lo, vsplat(0.0f), vexp2(wc)); /* NaN stays NaN */
    return is_ent ? p * (vk * wc + vkh) : vk * p;
}

static inline void grad_block(const float *x, float *o, int64_t len, float c, float l2, int is_ent,
                              float k, float kh)
{
    const vf vc = vsplat(c), vl = vsplat(l2), vk = vsplat(k), vkh = vsplat(kh);
    int64_t full = len - len % LANES;
    for (int64_t i = 0; i < full; i += LANES) {
        vf g = grad_step(vload(x, F32, i), vc, vl, is_ent, vk, vkh);
        memcpy(o + i, &g, sizeof g);
    }
    if (full < len) { /* the last values, padded with -inf (gradient 0, not written) */
        float pad[LANES];
        for (int64_t j = 0; j < LANES; j++)
            pad[j] = full + j < len ? x[full + j] : -INFINITY;
        vf g = grad_step(vload(pad, F32, 0), vc, vl, is_ent, vk, vkh);
        for (int64_t j = 0; full + j < len; j++)
            o[full + j] = g[j];
    }
}

/* Gradient row: gz = d(grad * H)/dz (ent != NULL) or d(grad * log p[tok])/dz, computed in float32
 * and rounded once to the logits' dtype. */
static void row_backward(const void *z, void *gz, int dtype, int64_t row_stride, int64_t row,
                         int64_t vocab, float inv_t, const float *lse, const float *ent,
                         const float *grad, const int64_t *tok)
{
    float xb[BLOCK], ob[BLOCK]; /* bfloat16: the widened block and its float32 gradient */
    const int is_ent = ent != NULL;
    const float g = grad[row], c = inv_t * LOG2E, l2 = lse[row] * LOG2E;
    const float k = is_ent ? -g * inv_t * (float)LN2 : -g * inv_t;
    const float kh = is_ent ? -g * inv_t * ent[row] : 0.0f;
    const int64_t base = row * row_stride;
    for (int64_t off = 0; off < vocab; off += BLOCK) {
        int64_t len = vocab - off < BLOCK ? vocab - off : BLOCK;
        const float *x = xb;
        float *o = ob;
        if (dtype == F32) {
            x = (const float *)z + base + off;
            o = (float *)gz + base + off;
        } else {
            const uint16_t *h = (const uint16_t *)z + base + off;
#pragma omp simd
            for (int64_t i = 0; i < len; i++)
                xb[i] = bf16_to_f32(h[i]);
        }
        grad_block(x, o, len, c, l2, is_ent, k, kh);
        if (!is_ent) {
            int64_t t = tok[row] - off;
            if (t >= 0 && t < len)
                o[t] += g * inv_t;
        }
        if (dtype == BF16) {
            uint16_t *h = (uint16_t *)gz + base + off;
#pragma omp simd
            for (int64_t i = 0; i < len; i++)
                h[i] = f32_to_bf16(ob[i]);
        }
    }
}

typedef struct {
    const void *z;
    void *gz;
    int dtype;
    int64_t row_stride, lo, hi, vocab;
    float inv_t;
    float *lse, *ent;
    const float *grad;
    const int64_t *tok;
    int backward;
} job_t;

static void *run_job(void *arg)
{
    job_t *j = (job_t *)arg;
    for (int64_t r = j->lo; r < j->hi; r++) {
        if (j->backward)
            row_backward(j->z, j->gz, j->dtype, j->row_stride, r, j->vocab, j->inv_t, j->lse,
                         j->ent, j->grad, j->tok);
        else
            row_stats(j->z, j->dtype, j->row_stride, r, j->vocab, j->inv_t, j->lse, j->ent);
    }
    return NULL;
}

#define MAX_THREADS 256

/* Split rows [0, rows) into `threads` contiguous parts; part 0 runs on the calling thread. */
static int run_rows(job_t base, int64_t rows, int threads)
{
    if (threads < 1)
        threads = 1;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (threads > rows)
        threads = (int)rows;
    job_t jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    int64_t step = (rows + threads - 1) / threads;
    for (int t = 0; t < threads; t++) {
        jobs[t] = base;
        jobs[t].lo = t * step < rows ? t * step : rows;
        jobs[t].hi = (t + 1) * step < rows ? (t + 1) * step : rows;
    }
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, run_job, &jobs[t]) == 0;
    run_job(&jobs[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            run_job(&jobs[t]); /* could not start a thread: do its part here */
    }
    return 0;
}

/* lse (rows,) and, when ent != NULL, entropy (rows,), both float32. */
int inforeg_row_stats(const void *z, int dtype, int64_t rows, int64_t vocab, int64_t row_stride,
                      float inv_t, float *lse, float *ent, int threads)
{
    job_t base = {z, NULL, dtype, row_stride, 0, 0, vocab, inv_t, lse, ent, NULL, NULL, 0};
    return run_rows(base, rows, threads);
}

/* Gradient gz (same dtype and layout as z) of sum grad * H (ent != NULL) or of
 * sum grad * log p[tok] (tok != NULL). */
int inforeg_row_backward(const void *z, void *gz, int dtype, int64_t rows, int64_t vocab,
                         int64_t row_stride, float inv_t, const float *lse, const float *ent,
                         const float *grad, const int64_t *tok, int threads)
{
    job_t base = {z, gz, dtype, row_stride, 0, 0, vocab, inv_t, (float *)lse, (float *)ent,
                  grad, tok, 1};
    return run_rows(base, rows, threads);
}

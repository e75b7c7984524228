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
 * SIREN's top-p entropy (row_top_p, row_top_p_backward, at the end of the file): the nucleus
 * without a sort, by bisection on the logits' ordered bit pattern.
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
#include <stdlib.h>
#include <string.h>

#define BLOCK 2048
#define LANES 16 /* one AVX-512 register of float32 */
#define LOG2E_D 1.44269504088896341
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

/* Sums of one row in one read: an online softmax over blocks in base 2 (w = y log2 e,
 * y = z / T), relative to a reference m2 (the maximum of w seen so far):
 * s = sum 2^(w - m2), u = sum 2^(w - m2) (w - m2) <= 0 (when want_u), and the row maximum.
 * A block is summed against the current reference while its own maximum is found in the same
 * pass; if that maximum exceeds the reference by more than SLACK (the first block with a finite
 * value, or a rare jump) the block is summed again against it. Moving the reference from m2 to
 * m2' > m2 rescales exactly: u <- a (u + s (m2 - m2')), s <- a s with a = 2^(m2 - m2').
 * Returns 0 for a row with a distribution; 1 for NaN or +inf logits, or every logit -inf. */
typedef struct {
    float xmax, m2; /* the row maximum and the final reference m2 = xmax * c */
    double s, u;
} row_sums_t;

static int row_sums(const void *z, int dtype, int64_t row_stride, int64_t row, int64_t vocab,
                    double inv_t, int want_u, row_sums_t *out)
{
    const int64_t esize = dtype == F32 ? 4 : 2;
    const char *raw = (const char *)z + row * row_stride * esize;
    const float c = (float)(inv_t * LOG2E_D);
    float m2 = -INFINITY, xmax = -INFINITY; /* reference: the running maximum of w */
    double s = 0.0, u = 0.0;                /* sums relative to m2 */
    int bad = 0;                            /* NaN or +inf seen */
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
        xmax = bmax > xmax ? bmax : xmax;
        if (b2 > m2 && !bad) { /* keep the reference at the maximum */
            double a = exp2((double)m2 - (double)b2);
            u = a * (u + s * ((double)m2 - (double)b2));
            s *= a;
            m2 = b2;
        }
    }
    *out = (row_sums_t){xmax, m2, s, u};
    return bad || m2 == -INFINITY || m2 != m2;
}

/* lse = (m2 + log2 s) ln 2 of a row whose sums are relative to m2 (row_sums), in double. The
 * sums use c = log2(e) / T rounded to float32, which shifts every exponent by about
 * x (c - log2(e) / T): the row's common share xmax (c - log2(e) / T) is added back (at logits of
 * 1e3 it is 6e-5, which a log-probability near 0 would keep as error); what remains,
 * (x - xmax)(c - log2(e) / T), is small wherever p is not. */
static double lse_of(const row_sums_t *r, double log2_s, double inv_t)
{
    const double c = inv_t * LOG2E_D;
    return ((double)r->m2 + log2_s + (double)r->xmax * (c - (double)(float)c)) * LN2;
}

/* Row statistics lse[row] and, when ent != NULL, the entropy ent[row], in one read of the row
 * (row_sums): lse = (m2 + log2 s) ln 2 and H = (log2 s - u / s) ln 2, two non-negative terms. */
static void row_stats(const void *z, int dtype, int64_t row_stride, int64_t row, int64_t vocab,
                      double inv_t, double *lse, float *ent)
{
    row_sums_t r;
    if (row_sums(z, dtype, row_stride, row, vocab, inv_t, ent != NULL, &r)) {
        lse[row] = NAN; /* NaN or +inf logits, or no distribution */
        if (ent != NULL)
            ent[row] = NAN;
        return;
    }
    double log2_s = log2(r.s); /* s >= 1: the maximum contributes 2^0 */
    lse[row] = lse_of(&r, log2_s, inv_t);
    if (ent != NULL)
        ent[row] = (float)((log2_s - r.u / r.s) * LN2);
}

/* The reference of a row's backward from its lse L (double) at c = log2(e) / T (float):
 * log2 p = x c' - L log2(e) = (x - xr) c - l2 + (x - xr)(c' - c), c' = log2(e) / T exactly and
 * c = c' in float32, with xr = L / T (the logit where p would be 1) and l2 = L log2(e) - xr c',
 * both float32; the last term is small wherever p is not. Near the maximum x - xr is small, so w has the
 * rounding of a small number: computing x c - L log2(e) directly in float32 loses |x c| * 2^-24
 * (1e-4 at logits of 1e3, a relative error of p as large). */
static inline void lse_ref(double lse, double inv_t, float *xr, float *l2)
{
    double zr = lse / inv_t;
    if (!(fabs(zr) <= 3.0e38)) /* a huge T (lse T beyond float32; |x c| is tiny) or NaN lse */
        zr = 0.0;
    *xr = (float)zr;
    *l2 = (float)(lse * LOG2E_D - (double)*xr * (inv_t * LOG2E_D)); /* xr as the loop sees it */
}

/* Gradient of one block, x[0, len) -> o[0, len), all float32 (w = (x - xr) c - l2, c = log2(e) / T,
 * with xr, l2 from lse_ref: log p = w ln 2):
 *   entropy (is_ent):  dH/dz = -(1/T) p (log p + H) = p (k w + kh), k = -(g / T) ln 2, kh = -(g / T) H
 *   selective:         d log p_tok / dz = (g / T) (onehot(tok) - p), here o = k p with k = -g / T
 *                      (the one-hot term is added by the caller).
 * p = 2^w is exactly 0 where w < EXP2_LO (-inf logits: gradient 0). */
static inline vf grad_step(vf v, vf vx, vf vc, vf vl, int is_ent, vf vk, vf vkh)
{
    const vf lo = vsplat(EXP2_LO);
    vf w = (v - vx) * vc - vl;
    vf wc = vmax(w, lo);
    vf p = vselect(w < lo, vsplat(0.0f), vexp2(wc)); /* NaN stays NaN */
    return is_ent ? p * (vk * wc + vkh) : vk * p;
}

static inline void grad_block(const float *x, float *o, int64_t len, float xr, float c, float l2,
                              int is_ent, float k, float kh)
{
    const vf vx = vsplat(xr), vc = vsplat(c), vl = vsplat(l2), vk = vsplat(k), vkh = vsplat(kh);
    int64_t full = len - len % LANES;
    for (int64_t i = 0; i < full; i += LANES) {
        vf g = grad_step(vload(x, F32, i), vx, vc, vl, is_ent, vk, vkh);
        memcpy(o + i, &g, sizeof g);
    }
    if (full < len) { /* the last values, padded with -inf (gradient 0, not written) */
        float pad[LANES];
        for (int64_t j = 0; j < LANES; j++)
            pad[j] = full + j < len ? x[full + j] : -INFINITY;
        vf g = grad_step(vload(pad, F32, 0), vx, vc, vl, is_ent, vk, vkh);
        for (int64_t j = 0; full + j < len; j++)
            o[full + j] = g[j];
    }
}

/* Gradient row: gz = d(grad * H)/dz (ent != NULL) or d(grad * log p[tok])/dz, computed in float32
 * and rounded once to the logits' dtype. */
static void row_backward(const void *z, void *gz, int dtype, int64_t row_stride, int64_t row,
                         int64_t vocab, double inv_t, const double *lse, const float *ent,
                         const float *grad, const int64_t *tok)
{
    float xb[BLOCK], ob[BLOCK]; /* bfloat16: the widened block and its float32 gradient */
    const int is_ent = ent != NULL;
    const float g = grad[row], c = (float)(inv_t * LOG2E_D);
    float xr, l2;
    lse_ref(lse[row], inv_t, &xr, &l2);
    const float it = (float)inv_t;
    const float k = is_ent ? -g * it * (float)LN2 : -g * it;
    const float kh = is_ent ? -g * it * ent[row] : 0.0f;
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
        grad_block(x, o, len, xr, c, l2, is_ent, k, kh);
        if (!is_ent) {
            int64_t t = tok[row] - off;
            if (t >= 0 && t < len)
                o[t] += g * it;
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
    int64_t row_stride, vocab;
    double inv_t;
    double *lse; /* row_stats: lse; top-p: lse of the kept set */
    float *ent;
    const float *grad;
    const int64_t *tok;
    int backward; /* 0 row_stats, 1 row_backward, 2 top_p_forward, 3 top_p_backward */
    double top_p;
    int64_t top_k;
    float *gt;    /* top-p: kept = {z > gt} plus the first req[row] (index order) with z == gt */
    int64_t *req;
    float *ent_full; /* top-p forward: the full-row entropy (or NULL) */
} job_t;

typedef struct {
    float x, p;
    int32_t idx;
} cand_t;

static void row_top_p(const void *z, int dtype, int64_t row_stride, int64_t row, int64_t vocab,
                      double inv_t, double top_p, int64_t top_k, float *buf, cand_t *cand,
                      double *lse_kept, float *ent, float *ent_full, float *gt, int64_t *req);
static void row_top_p_backward(const void *z, void *gz, int dtype, int64_t row_stride,
                               int64_t row, int64_t vocab, double inv_t, const double *lse_kept,
                               const float *ent, const float *grad, const float *gt,
                               const int64_t *req, float *xbuf);

static void run_job(const void *job, int64_t lo, int64_t hi)
{
    const job_t *j = (const job_t *)job;
    if (j->backward >= 2) { /* top-p: per-thread work rows */
        const int fwd = j->backward == 2;
        /* forward: the candidates and two compacted search sets (values, e); backward: the
         * widened row */
        float *buf = malloc((size_t)j->vocab * (fwd ? 4 : 1) * sizeof(float));
        cand_t *cand = fwd ? malloc((size_t)j->vocab * sizeof(cand_t)) : NULL;
        int ok = buf && (!fwd || cand);
        for (int64_t r = lo; r < hi; r++) {
            if (!ok) { /* out of memory: NaN results (never a silent wrong value) */
                if (fwd) {
                    j->ent[r] = j->gt[r] = NAN;
                    j->lse[r] = NAN;
                    j->req[r] = 0;
                    if (j->ent_full != NULL)
                        j->ent_full[r] = NAN;
                }
                continue;
            }
            if (fwd)
                row_top_p(j->z, j->dtype, j->row_stride, r, j->vocab, j->inv_t, j->top_p,
                          j->top_k, buf, cand, j->lse, j->ent, j->ent_full, j->gt, j->req);
            else
                row_top_p_backward(j->z, j->gz, j->dtype, j->row_stride, r, j->vocab, j->inv_t,
                                   j->lse, j->ent, j->grad, j->gt, j->req, buf);
        }
        free(buf);
        free(cand);
        return;
    }
    for (int64_t r = lo; r < hi; r++) {
        if (j->backward)
            row_backward(j->z, j->gz, j->dtype, j->row_stride, r, j->vocab, j->inv_t, j->lse,
                         j->ent, j->grad, j->tok);
        else
            row_stats(j->z, j->dtype, j->row_stride, r, j->vocab, j->inv_t, j->lse, j->ent);
    }
}

#define MAX_THREADS 256

typedef void (*rows_fn)(const void *job, int64_t lo, int64_t hi);
typedef struct {
    rows_fn fn;
    const void *job;
    int64_t lo, hi;
} part_t;

static void *run_part(void *arg)
{
    const part_t *p = (const part_t *)arg;
    p->fn(p->job, p->lo, p->hi);
    return NULL;
}

/* fn(job, lo, hi) on `threads` contiguous parts of rows [0, rows); part 0 runs on the calling
 * thread, and so does a part whose thread could not start. Every kernel's row loop uses this. */
static int run_rows(rows_fn fn, const void *job, int64_t rows, int threads)
{
    if (threads < 1)
        threads = 1;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (threads > rows)
        threads = (int)rows;
    part_t parts[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    int64_t step = (rows + threads - 1) / threads;
    for (int t = 0; t < threads; t++) {
        parts[t].fn = fn;
        parts[t].job = job;
        parts[t].lo = t * step < rows ? t * step : rows;
        parts[t].hi = (t + 1) * step < rows ? (t + 1) * step : rows;
    }
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&tid[t], NULL, run_part, &parts[t]) == 0;
    run_part(&parts[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(tid[t], NULL);
        else
            run_part(&parts[t]);
    }
    return 0;
}

/* lse (rows,) float64 and, when ent != NULL, entropy (rows,) float32. */
int inforeg_row_stats(const void *z, int dtype, int64_t rows, int64_t vocab, int64_t row_stride,
                      double inv_t, double *lse, float *ent, int threads)
{
    job_t base = {z, NULL, dtype, row_stride, vocab, inv_t, lse, ent, NULL, NULL, 0,
                  0.0, 0, NULL, NULL};
    return run_rows(run_job, &base, rows, threads);
}

/* Gradient gz (same dtype and layout as z) of sum grad * H (ent != NULL) or of
 * sum grad * log p[tok] (tok != NULL). */
int inforeg_row_backward(const void *z, void *gz, int dtype, int64_t rows, int64_t vocab,
                         int64_t row_stride, double inv_t, const double *lse, const float *ent,
                         const float *grad, const int64_t *tok, int threads)
{
    job_t base = {z, gz, dtype, row_stride, vocab, inv_t, (double *)lse, (float *)ent,
                  grad, tok, 1, 0.0, 0, NULL, NULL};
    return run_rows(run_job, &base, rows, threads);
}

/* ---- SIREN's top-p entropy without a sort (inforeg.rl.siren.top_p_entropy) ----
 *
 * Kept set of a row (the top-p semantics of the topk path): over the logits sorted in decreasing
 * order (ties by index), the longest prefix with cumulative probability < top_p and at most
 * top_k tokens, and at least the top-1 token. Here the prefix is {z >= t} for a threshold t
 * found by bisection: the set {z >= t} is "valid" (mass < top_p, count <= top_k) for t above
 * the answer and not below it, so each pass over the search set (compare, masked sums:
 * vectorised) halves the interval of the floats' ordered keys [lo, hi) with {z >= hi} valid
 * and {z >= lo} not (pivot: the midpoint of the values). The row is read twice: row_sums (the
 * maximum, and the full entropy when asked), then the exponentials, keeping only the values
 * above a bound lo_f that the answer cannot lie below (see row_top_p); the search runs over
 * those, compacted again whenever at most half of them lie in [lo, hi). It stops when at most
 * GATHER values lie in [lo, hi) (or the interval is one value wide: ties); those are gathered,
 * sorted (value descending, index ascending) and scanned exactly as the sorted path does. */
#define GATHER 32

static inline uint32_t order_key(float f) /* monotone: a < b <=> key(a) < key(b) (no NaN) */
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    return b & 0x80000000u ? ~b : b | 0x80000000u;
}

static inline float key_value(uint32_t k)
{
    uint32_t b = k & 0x80000000u ? k & 0x7FFFFFFFu : ~k;
    float f;
    memcpy(&f, &b, sizeof f);
    return f;
}

#define FLUSH 512 /* float32 lane sums are added to double every FLUSH values */

/* Over the values x[i] >= t (ge) or x[i] > t (!ge): count, sum e and (want_u) sum e (x c - m2).
 * Float32 vector lanes over FLUSH values (16 terms per lane), then double. */
static inline __attribute__((always_inline)) void
masked_sums(const float *x, const float *e, int64_t len, float t, const int ge, const int want_u,
            float c, float m2, int64_t *cnt, double *sum_e, double *sum_u)
{
    const vf vt = vsplat(t), zero = vsplat(0.0f), vc = vsplat(c), vm2 = vsplat(m2);
    double s = 0.0, u = 0.0;
    vi ci = {0};
    int64_t full = len - len % (2 * LANES);
    for (int64_t off = 0; off < full; off += FLUSH) {
        vf s0 = {0}, s1 = {0}, u0 = {0}, u1 = {0};
        int64_t end = off + FLUSH < full ? off + FLUSH : full;
        for (int64_t k = off; k < end; k += 2 * LANES) {
            vf a = vload(x, F32, k), b = vload(x, F32, k + LANES);
            vi ma = ge ? a >= vt : a > vt, mb = ge ? b >= vt : b > vt;
            vf ea = vselect(ma, vload(e, F32, k), zero);
            vf eb = vselect(mb, vload(e, F32, k + LANES), zero);
            s0 += ea;
            s1 += eb;
            if (want_u) { /* ea is 0 where a is -inf: select, not multiply */
                u0 += vselect(ma, ea * (a * vc - vm2), zero);
                u1 += vselect(mb, eb * (b * vc - vm2), zero);
            }
            ci -= ma + mb; /* a true lane is -1 */
        }
        vf sv = s0 + s1, uv = u0 + u1;
        for (int j = 0; j < LANES; j++) {
            s += sv[j];
            u += uv[j];
        }
    }
    int64_t n = 0;
    for (int j = 0; j < LANES; j++)
        n += ci[j];
    for (int64_t i = full; i < len; i++)
        if (ge ? x[i] >= t : x[i] > t) {
            s += e[i];
            u += want_u ? (double)e[i] * ((double)x[i] * c - m2) : 0.0;
            n++;
        }
    *cnt = n;
    *sum_e = s;
    *sum_u = u;
}

/* count and mass (sum of e) of the values x >= t */
static void mass_at_least(const float *x, const float *e, int64_t len, float t, int64_t *cnt,
                          double *mass)
{
    double unused;
    masked_sums(x, e, len, t, 1, 0, 0.0f, 0.0f, cnt, mass, &unused);
}

/* Appends the lanes of v and (ce != NULL) e where m is true, in order, at cx and ce; returns
 * their number. Writes LANES values at each (callers compact in place or into buffers of the
 * row's length, so the extra lanes land on values already read). No branch on the mask: whether
 * a block holds a candidate is unpredictable (a mispredicted branch per block cost 2x). */
static inline int64_t compress_store(vi m, vf v, vf e, float *cx, float *ce)
{
#if defined(__AVX512F__) && LANES == 16
    __mmask16 k = _mm512_cmplt_epi32_mask((__m512i)m, _mm512_setzero_si512()); /* true: -1 */
    _mm512_storeu_ps(cx, _mm512_maskz_compress_ps(k, (__m512)v));
    if (ce != NULL)
        _mm512_storeu_ps(ce, _mm512_maskz_compress_ps(k, (__m512)e));
    return __builtin_popcount((unsigned)k);
#else
    int64_t n = 0;
    for (int j = 0; j < LANES; j++) {
        cx[n] = v[j];
        if (ce != NULL)
            ce[n] = e[j];
        n -= m[j];
    }
    return n;
#endif
}

/* The values lo <= x < hi and their e, in order, into cx, ce (which may be x, e); returns their
 * number. With want_above, also adds the sums of e and e (x c - m2) over the values x >= hi
 * (those it drops above the interval) to *above_s, *above_u (float32 lanes over FLUSH values,
 * then double). */
static inline __attribute__((always_inline)) int64_t
compact_sums(const float *x, const float *e, int64_t len, float lo, float hi, float *cx,
             float *ce, const int want_above, float c, float m2, double *above_s,
             double *above_u)
{
    const vf vlo = vsplat(lo), vhi = vsplat(hi), vc = vsplat(c), vm2 = vsplat(m2);
    const vf zero = vsplat(0.0f);
    int64_t n = 0, full = len - len % LANES;
    double s = 0.0, u = 0.0;
    vf as = zero, au = zero;
    for (int64_t i = 0; i < full; i += LANES) {
        vf v = vload(x, F32, i), ev = vload(e, F32, i);
        vi above = v >= vhi;
        if (want_above) { /* (values >= hi > -inf: finite w) */
            as += vselect(above, ev, zero);
            au += vselect(above, ev * (v * vc - vm2), zero);
            if ((i + LANES) % FLUSH == 0 || i + LANES == full) {
                for (int j = 0; j < LANES; j++) {
                    s += as[j];
                    u += au[j];
                }
                as = au = zero;
            }
        }
        n += compress_store((v >= vlo) & ~above, v, ev, cx + n, ce + n);
    }
    for (int64_t i = full; i < len; i++) {
        float v = x[i], ev = e[i];
        if (want_above && v >= hi) {
            s += ev;
            u += (double)ev * ((double)v * c - m2);
        }
        cx[n] = v;
        ce[n] = ev;
        n += (v >= lo) & (v < hi);
    }
    if (want_above) {
        *above_s += s;
        *above_u += u;
    }
    return n;
}

static int64_t compact(const float *x, const float *e, int64_t len, float lo, float hi, float *cx,
                       float *ce)
{
    return compact_sums(x, e, len, lo, hi, cx, ce, 0, 0.0f, 0.0f, NULL, NULL);
}

/* The candidates of a row of `vocab` values (the second read, from cache after row_sums): the
 * values x >= lo into cx, in index order, and their e = 2^(x c - m2) (0 below the floor: -inf
 * logits) into ce; returns their number. */
static int64_t candidates(const void *z, int dtype, int64_t vocab, float c, float m2, float lo,
                          float *cx, float *ce)
{
    const vf vt = vsplat(lo), vc = vsplat(c), vm2 = vsplat(m2), vlo = vsplat(EXP2_LO);
    int64_t n = 0, full = vocab - vocab % LANES;
    for (int64_t i = 0; i < full; i += LANES) {
        vf v = vload(z, dtype, i);
        n += compress_store(v >= vt, v, v, cx + n, NULL);
    }
    for (int64_t i = full; i < vocab; i++) {
        float v = load(z, dtype, i);
        cx[n] = v;
        n += v >= lo;
    }
    int64_t nfull = n - n % LANES;
    for (int64_t k = 0; k < nfull; k += LANES) {
        vf w = vload(cx, F32, k) * vc - vm2;
        vf e = vselect(w < vlo, vsplat(0.0f), vexp2(vmax(w, vlo)));
        memcpy(ce + k, &e, sizeof e);
    }
    if (nfull < n) { /* the last values, padded with -inf (e = 0, not written) */
        float pad[LANES];
        for (int64_t j = 0; j < LANES; j++)
            pad[j] = nfull + j < n ? cx[nfull + j] : -INFINITY;
        vf w = vload(pad, F32, 0) * vc - vm2;
        vf e = vselect(w < vlo, vsplat(0.0f), vexp2(vmax(w, vlo)));
        for (int64_t j = 0; nfull + j < n; j++)
            ce[nfull + j] = e[j];
    }
    return n;
}

/* A key strictly between lo and hi (hi - lo > 1): the midpoint of their values, which halves the
 * interval where the logits are (bisecting the keys spends steps on the binades near 0 when the
 * interval spans 0), else (infinite or not strictly inside, or after 40 steps: each value step
 * halves a width that may start at 2^128) the midpoint of the keys. */
static inline uint32_t pivot(uint32_t lo, uint32_t hi, int step)
{
    if (step < 40) {
        float m = 0.5f * key_value(lo) + 0.5f * key_value(hi);
        uint32_t k = order_key(m);
        if (m == m && k > lo && k < hi)
            return k;
    }
    return lo + (hi - lo) / 2u;
}

static int cand_cmp(const void *a, const void *b) /* value descending, then index ascending */
{
    const cand_t *u = (const cand_t *)a, *v = (const cand_t *)b;
    if (u->x != v->x)
        return u->x > v->x ? -1 : 1;
    return (u->idx > v->idx) - (u->idx < v->idx);
}

static void row_top_p(const void *z, int dtype, int64_t row_stride, int64_t row, int64_t vocab,
                      double inv_t, double top_p, int64_t top_k, float *buf, cand_t *cand,
                      double *lse_kept, float *ent, float *ent_full, float *gt, int64_t *req)
{
    req[row] = 0;
    /* pass 1 (from memory): the row maximum, the sum s of 2^(w - m2) and, when asked, the
     * full-row entropy (token_entropy's value: the same code) */
    row_sums_t rs;
    if (row_sums(z, dtype, row_stride, row, vocab, inv_t, ent_full != NULL, &rs)) {
        lse_kept[row] = ent[row] = gt[row] = NAN; /* no distribution */
        if (ent_full != NULL)
            ent_full[row] = NAN;
        return;
    }
    if (ent_full != NULL)
        ent_full[row] = (float)((log2(rs.s) - rs.u / rs.s) * LN2);
    /* the candidates (the second read, from cache): e = 2^(w), w = x c - m2 (base 2, relative
     * to the maximum, so e <= 1), exactly 0 below the floor (-inf logits); p = e / s with s from
     * row_sums (the same sum up to rounding). Only the values x >= lo_f: lo_f is the logit with
     * p = 0.9 (1 - top_p) / V, rounded down: the values below it hold less than 0.9 (1 - top_p)
     * of the mass, so {x >= lo_f} holds more than top_p (by 0.1 (1 - top_p) >= 1e-5 of the
     * mass: far above the rounding of the sums) and the kept set lies above it. */
    const float c = (float)(inv_t * LOG2E_D), m2 = rs.m2, xmax = rs.xmax;
    float lo_f = -INFINITY;
    if (top_p < 1.0 - 1e-4) {
        lo_f = (float)(((double)m2 + log2(0.9 * (1.0 - top_p) * rs.s / (double)vocab)) / c);
        lo_f = nextafterf(lo_f < xmax ? lo_f : xmax, -INFINITY);
    }
    float *cx = buf, *ce = cx + vocab, *dx = ce + vocab, *de = dx + vocab;
    const int64_t esize = dtype == F32 ? 4 : 2;
    const int64_t n0 = candidates((const char *)z + row * row_stride * esize, dtype, vocab, c,
                                  m2, lo_f, cx, ce);
    const double target = top_p * rs.s;
    /* the search interval of keys [lo, hi): {x >= hi} valid (hi above the maximum: empty) */
    uint32_t lo = order_key(lo_f), hi = order_key(xmax) + 1u;
    int64_t cnt_lo = n0, cnt_hi = 0, cnt; /* the counts of {x >= lo} and {x >= hi} */
    double mass_hi = 0.0, mass;
    /* the search set: cx (every value >= lo_f), then (each time at most half of it lies in
     * [lo, hi)) only the values in [lo, hi), compacted in index order into dx (in place after
     * the first time); base_* count what lies above it, and above_* sum e and e w over it for
     * the entropy */
    const float *sx = cx, *se = ce;
    int64_t slen = n0, base_cnt = 0;
    double base_mass = 0.0, above_s = 0.0, above_u = 0.0;
    for (int step = 0; cnt_lo - cnt_hi > GATHER && hi - lo > 1u; step++) {
        if (cnt_lo - cnt_hi <= slen / 2) {
            slen = compact_sums(sx, se, slen, key_value(lo), key_value(hi), dx, de, 1, c, m2,
                                &above_s, &above_u);
            sx = dx;
            se = de;
            base_cnt = cnt_hi;
            base_mass = mass_hi;
        }
        uint32_t mid = pivot(lo, hi, step);
        mass_at_least(sx, se, slen, key_value(mid), &cnt, &mass);
        cnt += base_cnt;
        mass += base_mass;
        if (mass < target && cnt <= top_k) {
            hi = mid;
            cnt_hi = cnt;
            mass_hi = mass;
        } else {
            lo = mid;
            cnt_lo = cnt;
        }
    }
    /* gather the values in [lo, hi) (compacted into whichever of cx, dx the search set is not
     * in); their positions follow the index order */
    const float lo_v = key_value(lo), hi_v = key_value(hi);
    float *gx = sx == cx ? dx : cx, *ge = sx == cx ? de : ce;
    const int64_t n = compact(sx, se, slen, lo_v, hi_v, gx, ge);
    for (int64_t i = 0; i < n; i++)
        cand[i] = (cand_t){gx[i], ge[i], (int32_t)i};
    if (n <= 64) { /* insertion sort (stable: index order among ties) */
        for (int64_t i = 1; i < n; i++) {
            cand_t v = cand[i];
            int64_t j = i - 1;
            for (; j >= 0 && cand_cmp(&cand[j], &v) > 0; j--)
                cand[j + 1] = cand[j];
            cand[j + 1] = v;
        }
    } else {
        qsort(cand, (size_t)n, sizeof(cand_t), cand_cmp);
    }
    /* the sorted path's scan over the gathered values */
    double cum = mass_hi;
    int64_t kept = cnt_hi, r = 0;
    while (r < n && kept + 1 <= top_k && cum + cand[r].p < target) {
        cum += cand[r].p;
        kept++;
        r++;
    }
    if (kept == 0 && n > 0) { /* the top-1 token is always kept */
        r = 1;
        kept = 1;
    }
    float theta = hi_v, p_theta = 0.0f;
    int64_t n_eq = 0, r_eq = 0;
    if (r > 0) {
        theta = cand[r - 1].x;
        p_theta = cand[r - 1].p;
        for (int64_t i = 0; i < n; i++)
            if (cand[i].x == theta) {
                n_eq++;
                r_eq += i < r;
            }
    }
    if (r == 0 || r_eq == n_eq) { /* kept = {x >= theta} */
        gt[row] = nextafterf(theta, -INFINITY);
        r_eq = 0;
    } else { /* a tie at theta split by index order */
        gt[row] = theta;
    }
    req[row] = kept <= 1 ? -1 : r_eq; /* -1: the top-1 token alone (H = 0, gradient 0) */
    /* entropy of q = e / S on the kept set, S = sum e, u = sum e w (base 2, w <= 0):
     * H = (log2 S - u / S) ln 2, two non-negative terms */
    const float g = gt[row];
    double s, u;
    int64_t n_gt;
    masked_sums(sx, se, slen, g, 0, 1, c, m2, &n_gt, &s, &u); /* the kept set: there and above */
    s += above_s;
    u += above_u;
    s += (double)r_eq * p_theta;
    u += (double)r_eq * p_theta * ((double)theta * c - m2);
    double log2_s = log2(s);
    double h = (log2_s - u / s) * LN2;
    ent[row] = kept <= 1 ? 0.0f : (float)(h > 0.0 ? h : 0.0);
    lse_kept[row] = lse_of(&rs, log2_s, inv_t);
}

/* gradient of grad * H over the kept set: -(g/T) q (ln q + H) with q = exp(z/T - lse_kept) */
static void row_top_p_backward(const void *z, void *gz, int dtype, int64_t row_stride,
                               int64_t row, int64_t vocab, double inv_t, const double *lse_kept,
                               const float *ent, const float *grad, const float *gt,
                               const int64_t *req, float *xbuf)
{
    const float g = grad[row], c = (float)(inv_t * LOG2E_D), th = gt[row], it = (float)inv_t;
    float xr, l2;
    lse_ref(lse_kept[row], inv_t, &xr, &l2);
    const float k = -g * it * (float)LN2, kh = -g * it * ent[row];
    const vf vx = vsplat(xr), vc = vsplat(c), vl = vsplat(l2), vk = vsplat(k), vkh = vsplat(kh);
    const vf vth = vsplat(th);
    const int64_t base = row * row_stride;
    if (req[row] < 0) { /* one kept token: H = 0 whatever the logits */
        memset((char *)gz + base * (dtype == F32 ? 4 : 2), 0,
               (size_t)vocab * (dtype == F32 ? 4 : 2));
        return;
    }
    const float *x = xbuf;
    float *o = xbuf; /* bfloat16: the float32 gradient overwrites the widened row */
    if (dtype == F32) {
        x = (const float *)z + base;
        o = (float *)gz + base;
    } else {
        const uint16_t *h = (const uint16_t *)z + base;
#pragma omp simd
        for (int64_t i = 0; i < vocab; i++)
            xbuf[i] = bf16_to_f32(h[i]);
    }
    int64_t full = vocab - vocab % LANES;
    for (int64_t i = 0; i < full; i += LANES) {
        vf v = vload(x, F32, i);
        vf d = grad_step(v, vx, vc, vl, 1, vk, vkh);
        d = vselect(v > vth, d, vsplat(0.0f));
        memcpy(o + i, &d, sizeof d);
    }
    float tie = grad_step(vsplat(th), vx, vc, vl, 1, vk, vkh)[0];
    for (int64_t i = full; i < vocab; i++)
        o[i] = x[i] > th ? grad_step(vsplat(x[i]), vx, vc, vl, 1, vk, vkh)[0] : 0.0f;
    if (req[row] > 0) { /* a split tie: the first req values equal to th (index order) */
        int64_t seen = 0;
        for (int64_t i = 0; i < vocab; i++) /* (bfloat16: x now holds the gradient) */
            if (load(z, dtype, base + i) == th)
                o[i] = seen++ < req[row] ? tie : 0.0f;
    }
    if (dtype == BF16) {
        uint16_t *h = (uint16_t *)gz + base;
#pragma omp simd
        for (int64_t i = 0; i < vocab; i++)
            h[i] = f32_to_bf16(xbuf[i]);
    }
}

/* SIREN top-p entropy ent (rows,), lse_kept (rows,) = log of the kept mass + lse, the kept
 * set's description gt (rows,), req (rows,), for the backward pass, and (ent_full != NULL) the
 * full-row entropy (rows,), token_entropy's value, from the pass that finds the maximum. */
int inforeg_top_p_forward(const void *z, int dtype, int64_t rows, int64_t vocab,
                          int64_t row_stride, double inv_t, double top_p, int64_t top_k,
                          double *lse_kept, float *ent, float *gt, int64_t *req, float *ent_full,
                          int threads)
{
    job_t base = {z, NULL, dtype, row_stride, vocab, inv_t, lse_kept, ent, NULL, NULL, 2,
                  top_p, top_k, gt, req, ent_full};
    return run_rows(run_job, &base, rows, threads);
}

/* Gradient gz of sum grad * H_top_p, from the forward's lse_kept, ent, gt and req. */
int inforeg_top_p_backward(const void *z, void *gz, int dtype, int64_t rows, int64_t vocab,
                           int64_t row_stride, double inv_t, const double *lse_kept,
                           const float *ent, const float *grad, const float *gt,
                           const int64_t *req, int threads)
{
    job_t base = {z, gz, dtype, row_stride, vocab, inv_t, (double *)lse_kept,
                  (float *)ent, grad, NULL, 3, 0.0, 0, (float *)gt, (int64_t *)req};
    return run_rows(run_job, &base, rows, threads);
}

/* ---- Fused LM head (inforeg.rl.fused_linear): a tile of logits at a time ----
 * The LM head computes the logits in tiles of rows x a block of columns [col0, col0 + vocab) of
 * the vocabulary; tok[row] - col0 is the chosen token's column in the tile (outside it: none).
 * Forward (lm_row_stats): the tile's row statistics (row_stats above), merged into the running
 * (lse, H) of the rows over the vocabulary blocks, plus the chosen logit. A block whose logits
 * are all -inf (masked vocabulary) has no share; a row with no finite logit keeps lse = -inf.
 * Backward (lm_row_backward): with lse and H of the whole row, both terms of
 *   g_ent dH/dz + g_logp dlog p_tok/dz = p (k w + kh) + (g_logp / T) onehot(tok),
 *   k = -(g_ent / T) ln 2, kh = -(g_ent / T) H - g_logp / T   (w = log2 p, see grad_block)
 * in one read of z and one write of gz; gz may be z itself (each block is read before it is
 * written), so the LM head's backward holds one tile. */
typedef struct {
    void *z; /* read; gz may alias it */
    void *gz;
    int dtype, backward;
    int64_t vocab, row_stride, col0;
    double inv_t;
    double *run_lse, *run_ent; /* forward: the running lse and H of the rows, merged into */
    float *picked;             /* forward: the chosen logit, written where it is in the tile */
    const double *lse;                       /* backward: lse of the rows */
    const float *ent, *g_logp, *g_ent;       /* backward: H of the rows; upstream grads */
    const int64_t *tok;
} lm_job_t;

static void lm_row_stats(const lm_job_t *j, int64_t row)
{
    const int64_t esize = j->dtype == F32 ? 4 : 2, t = j->tok[row] - j->col0;
    const char *x = (const char *)j->z + row * j->row_stride * esize;
    double bl; /* the block's lse and H (row_stats of the one row at x) */
    float be;
    row_stats(x, j->dtype, j->row_stride, 0, j->vocab, j->inv_t, &bl, &be);
    if (bl != bl && block_max(x, j->dtype, j->vocab) == -INFINITY)
        bl = -INFINITY; /* masked block, not NaN input: no share */
    if (t >= 0 && t < j->vocab)
        j->picked[row] = load(x, j->dtype, t);
    /* merge into the running (L, E) of the row: shares a = e^(L - n), b = e^(bl - n) of the
     * merged n = log(e^L + e^bl); H = a E + b be - a log a - b log b. NaN propagates. */
    double L = j->run_lse[row], E = j->run_ent[row], b = bl;
    if (b == -INFINITY)
        return;
    if (L == -INFINITY) {
        j->run_lse[row] = b;
        j->run_ent[row] = be;
        return;
    }
    double n = L > b ? L + log1p(exp(b - L)) : b + log1p(exp(L - b));
    double sa = exp(L - n), sb = exp(b - n);
    j->run_ent[row] = sa * E + sb * be - sa * (L - n) - sb * (b - n);
    j->run_lse[row] = n;
}

static void lm_row_backward(const lm_job_t *j, int64_t row)
{
    float xb[BLOCK]; /* bfloat16: the widened block, then its float32 gradient (in place) */
    const float gl = j->g_logp[row], ge = j->g_ent[row], it = (float)j->inv_t;
    const float c = (float)(j->inv_t * LOG2E_D);
    float xr, l2;
    lse_ref(j->lse[row], j->inv_t, &xr, &l2);
    const float k = -ge * it * (float)LN2, kh = -ge * it * j->ent[row] - gl * it;
    const int64_t base = row * j->row_stride, t = j->tok[row] - j->col0;
    for (int64_t off = 0; off < j->vocab; off += BLOCK) {
        int64_t len = j->vocab - off < BLOCK ? j->vocab - off : BLOCK;
        if (j->dtype == F32) {
            float *o = (float *)j->gz + base + off;
            grad_block((const float *)j->z + base + off, o, len, xr, c, l2, 1, k, kh);
            if (t >= off && t < off + len)
                o[t - off] += gl * it;
        } else {
            const uint16_t *h = (const uint16_t *)j->z + base + off;
            uint16_t *oh = (uint16_t *)j->gz + base + off;
#pragma omp simd
            for (int64_t i = 0; i < len; i++)
                xb[i] = bf16_to_f32(h[i]);
            grad_block(xb, xb, len, xr, c, l2, 1, k, kh);
            if (t >= off && t < off + len)
                xb[t - off] += gl * it;
#pragma omp simd
            for (int64_t i = 0; i < len; i++)
                oh[i] = f32_to_bf16(xb[i]);
        }
    }
}

static void lm_run(const void *job, int64_t lo, int64_t hi)
{
    const lm_job_t *j = (const lm_job_t *)job;
    for (int64_t r = lo; r < hi; r++) {
        if (j->backward)
            lm_row_backward(j, r);
        else
            lm_row_stats(j, r);
    }
}

/* Merge the tile's row statistics into run_lse, run_ent (rows,) (float64; start at -inf, 0),
 * and set picked[row] = z[row, tok[row] - col0] where that column is in the tile (float32). */
int inforeg_lm_head_stats(const void *z, int dtype, int64_t rows, int64_t vocab,
                          int64_t row_stride, int64_t col0, double inv_t, const int64_t *tok,
                          double *run_lse, double *run_ent, float *picked, int threads)
{
    lm_job_t base = {(void *)z, NULL, dtype, 0, vocab, row_stride, col0, inv_t,
                     run_lse, run_ent, picked, NULL, NULL, NULL, NULL, tok};
    return run_rows(lm_run, &base, rows, threads);
}

/* gz (same dtype and layout as z; may be z) = d(sum g_logp log p[tok] + g_ent H)/dz for the
 * tile, from lse and ent of the whole rows. */
int inforeg_lm_head_backward(void *z, void *gz, int dtype, int64_t rows, int64_t vocab,
                             int64_t row_stride, int64_t col0, double inv_t, const int64_t *tok,
                             const double *lse, const float *ent, const float *g_logp,
                             const float *g_ent, int threads)
{
    lm_job_t base = {z, gz, dtype, 1, vocab, row_stride, col0, inv_t,
                     NULL, NULL, NULL, lse, ent, g_logp, g_ent, tok};
    return run_rows(lm_run, &base, rows, threads);
}

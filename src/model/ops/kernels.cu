// CUDA kernels for the custom ops in src/model/ops (compiled to PTX by build.rs with the `cuda`
// feature). f32, NCHW, contiguous. Index math mirrors the CPU kernels in depthwise.rs and
// bilinear.rs, which the tests check against candle and finite differences.

#include <stdint.h>

// ---- depthwise convolution (groups = channels, square K×K kernel) ----

extern "C" __global__ void depthwise_fwd_f32(
    const float* x, const float* w, float* y,
    int n, int c, int h, int wd, int k, int oh, int ow, int stride, int pad, int dil) {
    int64_t total = (int64_t)n * c * oh * ow;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int ox = i % ow;
        int oy = (i / ow) % oh;
        int64_t plane = i / ((int64_t)oh * ow);
        int ch = plane % c;
        const float* xp = x + plane * h * wd;
        const float* wk = w + (int64_t)ch * k * k;
        float acc = 0.f;
        for (int ky = 0; ky < k; ++ky) {
            int iy = oy * stride - pad + ky * dil;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < k; ++kx) {
                int ix = ox * stride - pad + kx * dil;
                if (ix < 0 || ix >= wd) continue;
                acc += xp[iy * wd + ix] * wk[ky * k + kx];
            }
        }
        y[i] = acc;
    }
}

// One thread per input element gathers from the outputs it fed: no atomics.
extern "C" __global__ void depthwise_grad_input_f32(
    const float* g, const float* w, float* gx,
    int n, int c, int h, int wd, int k, int oh, int ow, int stride, int pad, int dil) {
    int64_t total = (int64_t)n * c * h * wd;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int ix = i % wd;
        int iy = (i / wd) % h;
        int64_t plane = i / ((int64_t)h * wd);
        int ch = plane % c;
        const float* gp = g + plane * oh * ow;
        const float* wk = w + (int64_t)ch * k * k;
        float acc = 0.f;
        for (int ky = 0; ky < k; ++ky) {
            int ty = iy + pad - ky * dil;
            if (ty < 0 || ty % stride != 0) continue;
            int oy = ty / stride;
            if (oy >= oh) continue;
            for (int kx = 0; kx < k; ++kx) {
                int tx = ix + pad - kx * dil;
                if (tx < 0 || tx % stride != 0) continue;
                int ox = tx / stride;
                if (ox >= ow) continue;
                acc += gp[oy * ow + ox] * wk[ky * k + kx];
            }
        }
        gx[i] = acc;
    }
}

// One block per (channel, tap): a block-wide reduction over batch and output positions.
extern "C" __global__ void depthwise_grad_weight_f32(
    const float* x, const float* g, float* gw,
    int n, int c, int h, int wd, int k, int oh, int ow, int stride, int pad, int dil) {
    int ch = blockIdx.x / (k * k);
    int tap = blockIdx.x % (k * k);
    int ky = tap / k, kx = tap % k;
    int64_t per_plane = (int64_t)oh * ow;
    float acc = 0.f;
    for (int64_t j = threadIdx.x; j < (int64_t)n * per_plane; j += blockDim.x) {
        int b = j / per_plane;
        int64_t r = j % per_plane;
        int oy = r / ow, ox = r % ow;
        int iy = oy * stride - pad + ky * dil;
        int ix = ox * stride - pad + kx * dil;
        if (iy < 0 || iy >= h || ix < 0 || ix >= wd) continue;
        int64_t plane = (int64_t)b * c + ch;
        acc += g[plane * per_plane + r] * x[plane * h * wd + (int64_t)iy * wd + ix];
    }
    __shared__ float partial[256];
    partial[threadIdx.x] = acc;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) gw[blockIdx.x] = partial[0];
}

// ---- bilinear resize, align_corners = false (PyTorch's source-index rule) ----

__device__ __forceinline__ void bilinear_tap(int o, int in_len, float scale, int* i0, int* i1, float* w1) {
    float src = fmaxf(((float)o + 0.5f) * scale - 0.5f, 0.f);
    int a = min((int)src, in_len - 1);
    *i0 = a;
    *i1 = min(a + 1, in_len - 1);
    *w1 = src - (float)a;
}

extern "C" __global__ void bilinear_fwd_f32(
    const float* x, float* y, int planes, int h, int w, int oh, int ow, float scale_h, float scale_w) {
    int64_t total = (int64_t)planes * oh * ow;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int ox = i % ow;
        int oy = (i / ow) % oh;
        int64_t plane = i / ((int64_t)oh * ow);
        int y0, y1, x0, x1;
        float wy, wx;
        bilinear_tap(oy, h, scale_h, &y0, &y1, &wy);
        bilinear_tap(ox, w, scale_w, &x0, &x1, &wx);
        const float* p = x + plane * h * w;
        float top = (1.f - wx) * p[y0 * w + x0] + wx * p[y0 * w + x1];
        float bottom = (1.f - wx) * p[y1 * w + x0] + wx * p[y1 * w + x1];
        y[i] = (1.f - wy) * top + wy * bottom;
    }
}

// Scatter of the output gradient onto the (zeroed) input gradient.
extern "C" __global__ void bilinear_bwd_f32(
    const float* g, float* gx, int planes, int h, int w, int oh, int ow, float scale_h, float scale_w) {
    int64_t total = (int64_t)planes * oh * ow;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int ox = i % ow;
        int oy = (i / ow) % oh;
        int64_t plane = i / ((int64_t)oh * ow);
        int y0, y1, x0, x1;
        float wy, wx;
        bilinear_tap(oy, h, scale_h, &y0, &y1, &wy);
        bilinear_tap(ox, w, scale_w, &x0, &x1, &wx);
        float v = g[i];
        float* p = gx + plane * h * w;
        atomicAdd(p + y0 * w + x0, (1.f - wy) * (1.f - wx) * v);
        atomicAdd(p + y0 * w + x1, (1.f - wy) * wx * v);
        atomicAdd(p + y1 * w + x0, wy * (1.f - wx) * v);
        atomicAdd(p + y1 * w + x1, wy * wx * v);
    }
}

// ---- batch normalisation with a fused activation (batch_norm.rs, GPU path) ----
// act: 0 identity, 1 ReLU, 2 hard-swish; derivatives as PyTorch takes them at the kinks.
// stats: [mean (c), var (c)], biased variance. One block per channel for the reductions.

__device__ __forceinline__ float bn_act(float u, int act) {
    if (act == 1) return u > 0.f ? u : 0.f;
    if (act == 2) return u * fminf(fmaxf(u + 3.f, 0.f), 6.f) / 6.f;
    return u;
}

__device__ __forceinline__ float bn_slope(float u, int act) {
    if (act == 1) return u > 0.f ? 1.f : 0.f;
    if (act == 2) return u < -3.f ? 0.f : (u > 3.f ? 1.f : (2.f * u + 3.f) / 6.f);
    return 1.f;
}

// Sum of a double over the block (blockDim.x = 256).
__device__ double bn_block_sum(double v) {
    __shared__ double part[256];
    part[threadIdx.x] = v;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) part[threadIdx.x] += part[threadIdx.x + s];
        __syncthreads();
    }
    double total = part[0];
    __syncthreads();
    return total;
}

// Mean, then the variance around it (two passes: accurate when |mean| >> std).
extern "C" __global__ void bn_stats_f32(const float* x, float* stats, int n, int c, int hw) {
    int ch = blockIdx.x;
    int64_t count = (int64_t)n * hw;
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
        int64_t b = i / hw, p = i % hw;
        s += x[(b * c + ch) * hw + p];
    }
    double mean = bn_block_sum(s) / (double)count;
    double s2 = 0.0;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
        int64_t b = i / hw, p = i % hw;
        double d = x[(b * c + ch) * hw + p] - mean;
        s2 += d * d;
    }
    double var = bn_block_sum(s2) / (double)count;
    if (threadIdx.x == 0) {
        stats[ch] = (float)mean;
        stats[c + ch] = (float)var;
    }
}

extern "C" __global__ void bn_apply_f32(
    const float* x, const float* gamma, const float* beta, const float* stats, float* y,
    int n, int c, int hw, float eps, int act) {
    int64_t total = (int64_t)n * c * hw;
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int ch = (i / hw) % c;
        float scale = gamma[ch] * rsqrtf(stats[c + ch] + eps);
        float shift = beta[ch] - stats[ch] * scale;
        y[i] = bn_act(x[i] * scale + shift, act);
    }
}

// out = [∂x (n·c·hw), ∂γ (c), ∂β (c)]. This kernel writes the tail, per channel: Σ∂u·x̂ (∂γ) and
// Σ∂u (∂β), with ∂u = ∂y·act'(u).
extern "C" __global__ void bn_grad_sums_f32(
    const float* x, const float* dy, const float* gamma, const float* beta, const float* stats,
    float* out, int n, int c, int hw, float eps, int act) {
    float* out_tail = out + (int64_t)n * c * hw;
    int ch = blockIdx.x;
    int64_t count = (int64_t)n * hw;
    float inv_std = rsqrtf(stats[c + ch] + eps);
    float scale = gamma[ch] * inv_std;
    float shift = beta[ch] - stats[ch] * scale;
    float mean = stats[ch];
    double sdu = 0.0, sdux = 0.0;
    for (int64_t i = threadIdx.x; i < count; i += blockDim.x) {
        int64_t b = i / hw, p = i % hw;
        int64_t j = (b * c + ch) * hw + p;
        float v = x[j];
        float du = dy[j] * bn_slope(v * scale + shift, act);
        sdu += du;
        sdux += (double)du * (v - mean) * inv_std;
    }
    double a = bn_block_sum(sdu);
    double b2 = bn_block_sum(sdux);
    if (threadIdx.x == 0) {
        out_tail[ch] = (float)b2;
        out_tail[c + ch] = (float)a;
    }
}

// Then ∂x (the head of `out`) = γσ⁻¹/M·(M·∂u − Σ∂u − x̂·Σ∂u·x̂) with batch statistics, γσ⁻¹·∂u
// with fixed ones; the sums are read from the tail written above.
extern "C" __global__ void bn_grad_input_f32(
    const float* x, const float* dy, const float* gamma, const float* beta, const float* stats,
    float* out, int n, int c, int hw, float eps, int act, int fixed) {
    int64_t total = (int64_t)n * c * hw;
    float* dx = out;
    const float* sums = out + total;
    float count = (float)((int64_t)n * hw);
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < total; i += (int64_t)gridDim.x * blockDim.x) {
        int ch = (i / hw) % c;
        float inv_std = rsqrtf(stats[c + ch] + eps);
        float scale = gamma[ch] * inv_std;
        float shift = beta[ch] - stats[ch] * scale;
        float v = x[i];
        float du = dy[i] * bn_slope(v * scale + shift, act);
        if (fixed) {
            dx[i] = scale * du;
        } else {
            float xhat = (v - stats[ch]) * inv_std;
            dx[i] = scale / count * (count * du - sums[c + ch] - xhat * sums[ch]);
        }
    }
}

// ---- AdamW (train/optim.rs, GPU path): one pass per parameter tensor ----
// out = [w' (n), m' (n), v' (n)]; PyTorch's update: decoupled weight decay, bias corrections
// bc1 = 1 − β1^t, bc2 = 1 − β2^t, ε added to √v̂.
extern "C" __global__ void adamw_f32(
    const float* w, const float* g, const float* m, const float* v, float* out, int64_t n,
    float lr, float beta1, float beta2, float eps, float wd, float bc1, float bc2, float grad_scale) {
    for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
        float gi = g[i] * grad_scale;
        float mi = m[i] * beta1 + gi * (1.f - beta1);
        float vi = v[i] * beta2 + gi * gi * (1.f - beta2);
        float update = (mi / bc1) / (sqrtf(vi / bc2) + eps);
        out[i] = w[i] * (1.f - lr * wd) - lr * update;
        out[n + i] = mi;
        out[2 * n + i] = vi;
    }
}

// ---- per-pixel losses over NCHW logits (distill/ce.rs, kd.rs, feature.rs; GPU path) ----
// One thread per pixel (b, s) walks the c class planes (stride hw): reads are coalesced across
// the threads of a warp for each class.

// log Σ_k e^(z_k·inv_tau) of one pixel, its planes starting at z[base], stride hw.
__device__ float pixel_lse(const float* z, int64_t base, int c, int64_t hw, float inv_tau) {
    float m = -INFINITY;
    for (int k = 0; k < c; ++k) m = fmaxf(m, z[base + k * hw] * inv_tau);
    float s = 0.f;
    for (int k = 0; k < c; ++k) s += expf(z[base + k * hw] * inv_tau - m);
    return m + logf(s);
}

// w·(lse(z) − z_y) per pixel; 0 where w = 0 (void). y: class index per pixel (u32).
extern "C" __global__ void ce_fwd_f32(
    const float* z, const unsigned int* y, const float* wt, float* out, int n, int c, int hw) {
    int64_t total = (int64_t)n * hw;
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < total; p += (int64_t)gridDim.x * blockDim.x) {
        float w = wt[p];
        if (w == 0.f) { out[p] = 0.f; continue; }
        int64_t b = p / hw, s = p % hw, base = b * c * hw + s;
        out[p] = w * (pixel_lse(z, base, c, hw, 1.f) - z[base + (int64_t)y[p] * hw]);
    }
}

// ∂/∂z_k = g·w·(softmax(z)_k − [k = y]).
extern "C" __global__ void ce_bwd_f32(
    const float* z, const unsigned int* y, const float* wt, const float* g, float* dz, int n, int c, int hw) {
    int64_t total = (int64_t)n * hw;
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < total; p += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = p / hw, s = p % hw, base = b * c * hw + s;
        float scale = g[p] * wt[p];
        if (scale == 0.f) {
            for (int k = 0; k < c; ++k) dz[base + k * hw] = 0.f;
            continue;
        }
        float lse = pixel_lse(z, base, c, hw, 1.f);
        unsigned int label = y[p];
        for (int k = 0; k < c; ++k) {
            float prob = expf(z[base + k * hw] - lse);
            dz[base + k * hw] = scale * (prob - (k == (int)label ? 1.f : 0.f));
        }
    }
}

// Response KD per pixel with p_t = softmax(z_t/τ), log p_s = log_softmax(z_s/τ):
// kl = 0: −Σ p_t log p_s; kl = 1: τ²·Σ p_t (log p_t − log p_s).
extern "C" __global__ void kd_fwd_f32(
    const float* zs, const float* zt, float* out, int n, int c, int hw, float tau, int kl) {
    int64_t total = (int64_t)n * hw;
    float inv_tau = 1.f / tau;
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < total; p += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = p / hw, s = p % hw, base = b * c * hw + s;
        float ls = pixel_lse(zs, base, c, hw, inv_tau), lt = pixel_lse(zt, base, c, hw, inv_tau);
        float acc = 0.f;
        for (int k = 0; k < c; ++k) {
            float log_pt = zt[base + k * hw] * inv_tau - lt;
            float log_ps = zs[base + k * hw] * inv_tau - ls;
            float pt = expf(log_pt);
            acc += kl ? pt * (log_pt - log_ps) : -pt * log_ps;
        }
        out[p] = kl ? tau * tau * acc : acc;
    }
}

// ∂/∂z_s = g·(p_s − p_t)/τ (soft CE) or g·τ·(p_s − p_t) (τ²·KL).
extern "C" __global__ void kd_bwd_f32(
    const float* zs, const float* zt, const float* g, float* dz, int n, int c, int hw, float tau, int kl) {
    int64_t total = (int64_t)n * hw;
    float inv_tau = 1.f / tau;
    float scale = kl ? tau : inv_tau;
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < total; p += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = p / hw, s = p % hw, base = b * c * hw + s;
        float ls = pixel_lse(zs, base, c, hw, inv_tau), lt = pixel_lse(zt, base, c, hw, inv_tau);
        float gp = g[p] * scale;
        for (int k = 0; k < c; ++k) {
            float ps = expf(zs[base + k * hw] * inv_tau - ls);
            float pt = expf(zt[base + k * hw] * inv_tau - lt);
            dz[base + k * hw] = gp * (ps - pt);
        }
    }
}

// Σ s², Σ t², Σ s·t over the c channels of one pixel.
__device__ void cos_sums(const float* s, const float* t, int64_t base, int c, int64_t hw, float* ss, float* tt, float* st) {
    float a2 = 0.f, b2 = 0.f, ab = 0.f;
    for (int k = 0; k < c; ++k) {
        float a = s[base + k * hw], b = t[base + k * hw];
        a2 += a * a; b2 += b * b; ab += a * b;
    }
    *ss = a2; *tt = b2; *st = ab;
}

// cos(s, t) per pixel over the c channels, each vector divided by max(‖v‖, eps) (F.cosine_similarity).
extern "C" __global__ void cos_fwd_f32(const float* s, const float* t, float* out, int n, int c, int hw, float eps) {
    int64_t total = (int64_t)n * hw;
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < total; p += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = p / hw, q = p % hw, base = b * c * hw + q;
        float ss, tt, st;
        cos_sums(s, t, base, c, hw, &ss, &tt, &st);
        out[p] = st / (fmaxf(sqrtf(ss), eps) * fmaxf(sqrtf(tt), eps));
    }
}

// ∂cos/∂s_k · g = a·t_k − b·s_k, a = g/(‖s‖‖t‖), b = g·cos/‖s‖² (0 where ‖s‖ is clamped).
extern "C" __global__ void cos_bwd_f32(
    const float* s, const float* t, const float* g, float* ds, int n, int c, int hw, float eps) {
    int64_t total = (int64_t)n * hw;
    for (int64_t p = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; p < total; p += (int64_t)gridDim.x * blockDim.x) {
        int64_t b = p / hw, q = p % hw, base = b * c * hw + q;
        float ss, tt, st;
        cos_sums(s, t, base, c, hw, &ss, &tt, &st);
        float ns = fmaxf(sqrtf(ss), eps), nt = fmaxf(sqrtf(tt), eps);
        float cs = st / (ns * nt);
        float a = g[p] / (ns * nt);
        float bcoef = sqrtf(ss) > eps ? g[p] * cs / (ns * ns) : 0.f;
        for (int k = 0; k < c; ++k) ds[base + k * hw] = a * t[base + k * hw] - bcoef * s[base + k * hw];
    }
}

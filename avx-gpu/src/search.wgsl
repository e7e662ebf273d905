// Batched distances and top-k for avx-gpu.
//
// `distances`: a tile of 16 queries x 16 base vectors per workgroup, both staged through
// workgroup memory 16 dimensions at a time; writes the batch x chunk distance matrix.
// `top_k`: one workgroup of 64 threads per query; each thread keeps its k best of a
// strided share of the row, then a tree of merges through workgroup memory leaves the
// k best in thread 0, which writes them as (distance bits, index in the chunk) pairs.
// Candidates are ordered by an integer key made from the distance's bits (so +inf and
// NaN, which a float comparison would drop, sort last, NaN after +inf, as on the CPU),
// then by index.

// 0 = squared L2, 1 = inner product (1 - a.b), 2 = cosine (1 - cos).
override METRIC: u32 = 0u;

const TILE: u32 = 16u;
const WG: u32 = 64u;
const MAX_K: u32 = 32u;
const NONE: u32 = 0xffffffffu;
// The key of an empty slot: after every real distance, NaN included.
const EMPTY: u32 = 0xffffffffu;
const NAN_KEY: u32 = 0xfffffffeu;

struct Params {
    dim: u32,
    n_queries: u32,
    n_base: u32,
    k: u32,
    out_offset: u32,
    out_stride: u32,
    _pad0: u32,
    _pad1: u32,
}

@group(0) @binding(0) var<uniform> p: Params;
@group(0) @binding(1) var<storage, read> queries: array<f32>;
@group(0) @binding(2) var<storage, read> base: array<f32>;
@group(0) @binding(3) var<storage, read_write> dists: array<f32>;
@group(0) @binding(4) var<storage, read_write> out: array<u32>;

var<workgroup> q_tile: array<array<f32, 16>, 16>;
var<workgroup> b_tile: array<array<f32, 16>, 16>;

@compute @workgroup_size(16, 16)
fn distances(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let q = wid.y * TILE + lid.y;
    let b = wid.x * TILE + lid.x;
    var acc = 0.0;
    var qq = 0.0;
    var bb = 0.0;
    for (var d0 = 0u; d0 < p.dim; d0 = d0 + TILE) {
        let d = d0 + lid.x;
        let q_row = wid.y * TILE + lid.y;
        let b_row = wid.x * TILE + lid.y;
        var qv = 0.0;
        var bv = 0.0;
        if (d < p.dim && q_row < p.n_queries) {
            qv = queries[q_row * p.dim + d];
        }
        if (d < p.dim && b_row < p.n_base) {
            bv = base[b_row * p.dim + d];
        }
        q_tile[lid.y][lid.x] = qv;
        b_tile[lid.y][lid.x] = bv;
        workgroupBarrier();
        for (var t = 0u; t < TILE; t = t + 1u) {
            let x = q_tile[lid.y][t];
            let y = b_tile[lid.x][t];
            if (METRIC == 0u) {
                let diff = x - y;
                acc = fma(diff, diff, acc);
            } else {
                acc = fma(x, y, acc);
                if (METRIC == 2u) {
                    qq = fma(x, x, qq);
                    bb = fma(y, y, bb);
                }
            }
        }
        workgroupBarrier();
    }
    if (q < p.n_queries && b < p.n_base) {
        var dist = acc;
        if (METRIC == 1u) {
            dist = 1.0 - acc;
        }
        if (METRIC == 2u) {
            // Two roots, not the root of the product, which overflows first.
            let denom = sqrt(qq) * sqrt(bb);
            var cosine = 0.0;
            if (denom > 0.0) {
                cosine = clamp(acc / denom, -1.0, 1.0);
            }
            dist = 1.0 - cosine;
        }
        dists[q * p.n_base + b] = dist;
    }
}

var<workgroup> share_k: array<u32, 1024>;
var<workgroup> share_i: array<u32, 1024>;

// A u32 that orders as the float does (negative < -0 = +0 < positive < +inf), with every
// NaN after +inf.
fn order_key(d: f32) -> u32 {
    let bits = bitcast<u32>(d);
    let exponent = (bits >> 23u) & 0xffu;
    if (exponent == 0xffu && (bits & 0x7fffffu) != 0u) {
        return NAN_KEY;
    }
    if (bits == 0x80000000u) {
        return 0x80000000u;
    }
    if ((bits & 0x80000000u) != 0u) {
        return ~bits;
    }
    return bits | 0x80000000u;
}

fn key_to_distance(key: u32) -> f32 {
    if (key == NAN_KEY) {
        return bitcast<f32>(0x7fc00000u);
    }
    if ((key & 0x80000000u) != 0u) {
        return bitcast<f32>(key & 0x7fffffffu);
    }
    return bitcast<f32>(~key);
}

fn before(ak: u32, ai: u32, bk: u32, bi: u32) -> bool {
    return ak < bk || (ak == bk && ai < bi);
}

@compute @workgroup_size(64)
fn top_k(@builtin(local_invocation_id) lid: vec3<u32>, @builtin(workgroup_id) wid: vec3<u32>) {
    let q = wid.x;
    let k = p.k;
    var best_k: array<u32, 32>;
    var best_i: array<u32, 32>;
    for (var j = 0u; j < MAX_K; j = j + 1u) {
        best_k[j] = EMPTY;
        best_i[j] = NONE;
    }
    if (q < p.n_queries) {
        for (var i = lid.x; i < p.n_base; i = i + WG) {
            let key = order_key(dists[q * p.n_base + i]);
            if (before(key, i, best_k[k - 1u], best_i[k - 1u])) {
                var j = k - 1u;
                loop {
                    if (j == 0u) {
                        break;
                    }
                    if (!before(key, i, best_k[j - 1u], best_i[j - 1u])) {
                        break;
                    }
                    best_k[j] = best_k[j - 1u];
                    best_i[j] = best_i[j - 1u];
                    j = j - 1u;
                }
                best_k[j] = key;
                best_i[j] = i;
            }
        }
    }
    for (var s = WG / 2u; s > 0u; s = s / 2u) {
        if (lid.x >= s && lid.x < 2u * s) {
            let at = (lid.x - s) * MAX_K;
            for (var j = 0u; j < k; j = j + 1u) {
                share_k[at + j] = best_k[j];
                share_i[at + j] = best_i[j];
            }
        }
        workgroupBarrier();
        if (lid.x < s) {
            let at = lid.x * MAX_K;
            var merged_k: array<u32, 32>;
            var merged_i: array<u32, 32>;
            var ia = 0u;
            var ib = 0u;
            // Taking k items in all keeps both cursors below k.
            for (var j = 0u; j < k; j = j + 1u) {
                let ok = share_k[at + ib];
                let oi = share_i[at + ib];
                if (before(best_k[ia], best_i[ia], ok, oi)) {
                    merged_k[j] = best_k[ia];
                    merged_i[j] = best_i[ia];
                    ia = ia + 1u;
                } else {
                    merged_k[j] = ok;
                    merged_i[j] = oi;
                    ib = ib + 1u;
                }
            }
            for (var j = 0u; j < k; j = j + 1u) {
                best_k[j] = merged_k[j];
                best_i[j] = merged_i[j];
            }
        }
        workgroupBarrier();
    }
    if (lid.x == 0u && q < p.n_queries) {
        let at = q * p.out_stride + p.out_offset;
        for (var j = 0u; j < k; j = j + 1u) {
            out[2u * (at + j)] = bitcast<u32>(key_to_distance(best_k[j]));
            out[2u * (at + j) + 1u] = best_i[j];
        }
    }
}

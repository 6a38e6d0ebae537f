//! [`Ops`] on the CPU: one f32 arena for every activation, kernels spread over a thread pool.
//!
//! Ops read some buffers and write another; the arena is one allocation, so each op takes its
//! slices with [`CpuOps::io`], which checks that what it writes overlaps nothing it reads.

use super::attention::window_attention;
use super::cross_attention::CrossAttention;
use super::depthwise::{DepthwiseArgs, depthwise3x3};
use super::gemm::{self, PackedB};
use super::kernels::{self, SharedMut};
use super::mbconv::{self, MbConvArgs};
use super::mlp::{self, MlpArgs};
use super::pool::ThreadPool;
use super::upscale::{self, Upscaling};
use crate::segment::ops::{AttentionWeights, Buf, Epilogue, ImageShape, Ops, WindowGeometry};

/// Scratch floats per thread: the fused MBConv's three hidden rows and one depthwise row at
/// 256 × 256 × 256 (262 144) is the largest need; the fused MLP needs 76 800 at 320 channels,
/// window attention 66 448, the decoder's attention and its upscaling 65 536 each.
const SCRATCH_PER_THREAD: usize = 4 * 256 * 256;

pub struct CpuOps {
    pool: ThreadPool,
    arena: Vec<f32>,
    scratch: Vec<f32>,
    /// Shared (not per-thread) scratch of the decoder's attention, sized at plan time.
    attention_scratch: Vec<f32>,
    /// Time and calls per op kind, when profiling is on.
    profile: Option<OpProfile>,
}

/// The kinds of op, for the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OpKind {
    Linear,
    MbConv,
    Mlp,
    LayerNorm,
    Depthwise,
    Elementwise,
    WindowAttention,
    Attention,
    DataMovement,
}

impl OpKind {
    pub const ALL: [OpKind; 9] = [
        OpKind::Linear,
        OpKind::MbConv,
        OpKind::Mlp,
        OpKind::LayerNorm,
        OpKind::Depthwise,
        OpKind::Elementwise,
        OpKind::WindowAttention,
        OpKind::Attention,
        OpKind::DataMovement,
    ];

    pub fn name(self) -> &'static str {
        match self {
            OpKind::Linear => "matrix products (linear, 1x1/3x3 conv)",
            OpKind::MbConv => "MBConv, fused (1x1, depthwise, 1x1, GELUs)",
            OpKind::Mlp => "MLP, fused (norm, fc1, GELU, fc2)",
            OpKind::LayerNorm => "layer norm",
            OpKind::Depthwise => "depthwise 3x3 conv",
            OpKind::Elementwise => "element-wise (GELU, adds)",
            OpKind::WindowAttention => "window attention",
            OpKind::Attention => "decoder attention, with projections",
            OpKind::DataMovement => "copies, padding, im2col, shuffles",
        }
    }
}

/// Accumulated time (ns) and calls per [`OpKind`].
#[derive(Debug, Clone, Default)]
pub struct OpProfile {
    pub ns: [u64; 9],
    pub calls: [u64; 9],
}

impl OpProfile {
    /// Adds another profile's times and calls to these.
    pub fn add(&mut self, other: &OpProfile) {
        for i in 0..OpKind::ALL.len() {
            self.ns[i] += other.ns[i];
            self.calls[i] += other.calls[i];
        }
    }
}

pub struct DepthwiseKernel {
    taps: Vec<f32>,
    bias: Vec<f32>,
}

impl CpuOps {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let pool = ThreadPool::new(threads)?;
        let scratch = vec![0.0; SCRATCH_PER_THREAD * pool.threads()];
        Ok(CpuOps { pool, arena: Vec::new(), scratch, attention_scratch: Vec::new(), profile: None })
    }

    /// Starts (or restarts) timing every op by kind.
    pub fn start_profile(&mut self) {
        self.profile = Some(OpProfile::default());
    }

    pub fn take_profile(&mut self) -> Option<OpProfile> {
        self.profile.take()
    }

    fn begin(&self) -> Option<std::time::Instant> {
        self.profile.as_ref().map(|_| std::time::Instant::now())
    }

    fn end(&mut self, kind: OpKind, started: Option<std::time::Instant>) {
        if let (Some(p), Some(t)) = (self.profile.as_mut(), started) {
            let i = OpKind::ALL.iter().position(|&k| k == kind).expect("listed");
            p.ns[i] += t.elapsed().as_nanos() as u64;
            p.calls[i] += 1;
        }
    }

    fn get(&self, b: Buf) -> &[f32] {
        &self.arena[b.offset..b.offset + b.len]
    }

    fn get_mut(&mut self, b: Buf) -> &mut [f32] {
        &mut self.arena[b.offset..b.offset + b.len]
    }

    /// The slices of `inputs` and, mutably, of `out`, which must overlap none of them.
    fn io<const N: usize>(&mut self, inputs: [Buf; N], out: Buf) -> ([&[f32]; N], &mut [f32], &ThreadPool, &mut [f32]) {
        let (ins, [out], pool, scratch) = self.io_many(inputs, [out]);
        (ins, out, pool, scratch)
    }

    /// [`io`](Self::io) with several outputs, which overlap neither the inputs nor each other.
    #[allow(clippy::type_complexity)]
    fn io_many<const N: usize, const M: usize>(
        &mut self,
        inputs: [Buf; N],
        outs: [Buf; M],
    ) -> ([&[f32]; N], [&mut [f32]; M], &ThreadPool, &mut [f32]) {
        let apart = |a: Buf, b: Buf| a.offset + a.len <= b.offset || b.offset + b.len <= a.offset;
        for (i, out) in outs.iter().enumerate() {
            assert!(out.offset + out.len <= self.arena.len(), "output outside the arena");
            for b in inputs {
                assert!(b.offset + b.len <= self.arena.len(), "input outside the arena");
                assert!(apart(b, *out), "op writes what it reads");
            }
            assert!(outs[..i].iter().all(|o| apart(*o, *out)), "op writes one range twice");
        }
        let base = SharedMut::new(&mut self.arena);
        // SAFETY: every range is inside the arena (checked above) and no output overlaps an
        // input or another output, so the shared and the mutable slices never alias.
        let ins = inputs.map(|b| {
            // SAFETY: see above: in the arena, and never aliased by an output.
            unsafe { &*base.rows(b.offset, b.len) }
        });
        // SAFETY: see above: in the arena, and overlapping nothing else handed out.
        let outs = outs.map(|o| unsafe { base.rows(o.offset, o.len) });
        (ins, outs, &self.pool, &mut self.scratch)
    }
}

impl Ops for CpuOps {
    type Linear = PackedB;
    type Vector = Vec<f32>;
    type Depthwise = DepthwiseKernel;
    type Attention = CrossAttention;

    fn allocate_arena(&mut self, len: usize) {
        self.arena = vec![0.0; len];
    }

    fn linear_weight(&mut self, weight: &[f32], out: usize, inputs: usize, bias: Option<&[f32]>) -> PackedB {
        PackedB::from_linear(weight, out, inputs, bias)
    }

    fn matrix_weight(&mut self, weight: &[f32], inputs: usize, out: usize, bias: Option<&[f32]>) -> PackedB {
        PackedB::from_k_by_n(weight, inputs, out, bias)
    }

    fn vector(&mut self, values: &[f32]) -> Vec<f32> {
        values.to_vec()
    }

    fn depthwise_weight(&mut self, weight: &[f32], bias: &[f32]) -> DepthwiseKernel {
        let c = bias.len();
        assert_eq!(weight.len(), c * 9, "depthwise weight");
        let mut taps = vec![0.0; 9 * c];
        for ch in 0..c {
            for t in 0..9 {
                taps[t * c + ch] = weight[ch * 9 + t];
            }
        }
        DepthwiseKernel { taps, bias: bias.to_vec() }
    }

    fn attention_weight(&mut self, w: &AttentionWeights) -> CrossAttention {
        let layer = CrossAttention::new(w);
        let shared = layer.scratch_len(w.max_queries, w.max_keys);
        if self.attention_scratch.len() < shared {
            self.attention_scratch.resize(shared, 0.0);
        }
        assert!(
            layer.thread_scratch_len(w.max_queries, w.max_keys) <= SCRATCH_PER_THREAD,
            "attention scratch per thread"
        );
        layer
    }

    fn upload(&mut self, dst: Buf, values: &[f32]) {
        self.get_mut(dst)[..values.len()].copy_from_slice(values);
    }

    fn download(&mut self, src: Buf, out: &mut [f32]) {
        let n = out.len();
        out.copy_from_slice(&self.get(src)[..n]);
    }

    fn copy(&mut self, src: Buf, dst: Buf) {
        let started = self.begin();
        let ([s], d, _, _) = self.io([src], dst);
        d[..s.len()].copy_from_slice(s);
        self.end(OpKind::DataMovement, started);
    }

    fn linear(&mut self, x: Buf, rows: usize, w: &PackedB, out: Buf, epilogue: Epilogue) {
        let started = self.begin();
        let ([a], c, pool, _) = self.io([x], out);
        gemm::gemm(pool, a, w.k, rows, w, c, w.n, epilogue);
        self.end(OpKind::Linear, started);
    }

    fn layer_norm(&mut self, x: Buf, rows: usize, gamma: &Vec<f32>, beta: &Vec<f32>, eps: f32, out: Buf) {
        let started = self.begin();
        let ([a], o, pool, _) = self.io([x], out);
        kernels::layer_norm(pool, a, rows, gamma.len(), gamma, beta, eps, o);
        self.end(OpKind::LayerNorm, started);
    }

    fn add_layer_norm(&mut self, x: Buf, delta: Buf, rows: usize, gamma: &Vec<f32>, beta: &Vec<f32>, eps: f32) {
        let started = self.begin();
        let ([d], o, pool, _) = self.io([delta], x);
        kernels::add_layer_norm(pool, o, d, rows, gamma.len(), gamma, beta, eps, None);
        self.end(OpKind::LayerNorm, started);
    }

    fn add_layer_norm_pe(
        &mut self,
        x: Buf,
        delta: Buf,
        rows: usize,
        norm: (&Vec<f32>, &Vec<f32>),
        eps: f32,
        pe: Buf,
        x_pe: Buf,
    ) {
        let started = self.begin();
        let ([d, pe], [o, o_pe], pool, _) = self.io_many([delta, pe], [x, x_pe]);
        let (gamma, beta) = norm;
        kernels::add_layer_norm(pool, o, d, rows, gamma.len(), gamma, beta, eps, Some((pe, o_pe)));
        self.end(OpKind::LayerNorm, started);
    }

    fn depthwise(&mut self, x: Buf, shape: ImageShape, stride: usize, k: &DepthwiseKernel, gelu: bool, out: Buf) {
        let started = self.begin();
        let ([input], o, pool, _) = self.io([x], out);
        let ImageShape { height, width, channels } = shape;
        let args = DepthwiseArgs { input, height, width, channels, stride, taps: &k.taps, bias: &k.bias, gelu };
        depthwise3x3(pool, &args, o);
        self.end(OpKind::Depthwise, started);
    }

    fn mbconv(&mut self, x: Buf, shape: ImageShape, conv1: &PackedB, dw: &DepthwiseKernel, conv3: &PackedB, out: Buf) {
        let started = self.begin();
        assert_eq!(shape.channels, conv1.k, "MBConv input channels");
        let ([input], o, pool, scratch) = self.io([x], out);
        let (height, width) = (shape.height, shape.width);
        let args = MbConvArgs { x: input, height, width, conv1, taps: &dw.taps, dw_bias: &dw.bias, conv3 };
        mbconv::mbconv(pool, &args, o, scratch);
        self.end(OpKind::MbConv, started);
    }

    fn mlp(&mut self, x: Buf, rows: usize, gamma: &Vec<f32>, beta: &Vec<f32>, eps: f32, fc1: &PackedB, fc2: &PackedB) {
        let started = self.begin();
        let ([], o, pool, scratch) = self.io([], x);
        mlp::mlp(pool, &MlpArgs { rows, gamma, beta, eps, fc1, fc2 }, o, scratch);
        self.end(OpKind::Mlp, started);
    }

    fn add(&mut self, x: Buf, other: Buf) {
        let started = self.begin();
        let ([r], o, pool, _) = self.io([other], x);
        kernels::add_par(pool, o, None, r);
        self.end(OpKind::Elementwise, started);
    }

    fn add_into(&mut self, a: Buf, b: Buf, out: Buf) {
        let started = self.begin();
        let ([a, b], o, pool, _) = self.io([a, b], out);
        kernels::add_par(pool, o, Some(a), b);
        self.end(OpKind::Elementwise, started);
    }

    fn add_row_pe(&mut self, x: Buf, rows: usize, row: &Vec<f32>, pe: Buf, out: Buf, out_pe: Buf) {
        let started = self.begin();
        let ([x, pe], [o, o_pe], pool, _) = self.io_many([x, pe], [out, out_pe]);
        kernels::add_row_pe(pool, x, rows, row, pe, o, o_pe);
        self.end(OpKind::Elementwise, started);
    }

    fn window_attention(&mut self, qkv: Buf, padding: &Vec<f32>, g: &WindowGeometry, bias: &Vec<f32>, out: Buf) {
        let started = self.begin();
        let ([q], o, pool, scratch) = self.io([qkv], out);
        window_attention(pool, q, padding, g, bias, o, scratch);
        self.end(OpKind::WindowAttention, started);
    }

    fn attend(&mut self, w: &CrossAttention, q: Buf, nq: usize, k: Buf, v: Buf, nk: usize, out: Buf) {
        let started = self.begin();
        // Taken out for the call so it can be borrowed beside the arena (no allocation).
        let mut shared = std::mem::take(&mut self.attention_scratch);
        let ([q, k, v], o, pool, scratch) = self.io([q, k, v], out);
        w.attend(pool, q, nq, k, v, nk, o, &mut shared, scratch);
        self.attention_scratch = shared;
        self.end(OpKind::Attention, started);
    }

    fn im2col3x3(&mut self, x: Buf, shape: ImageShape, out: Buf) {
        let started = self.begin();
        let ImageShape { height, width, channels } = shape;
        let ([src], dst, pool, _) = self.io([x], out);
        let c = channels;
        let row = 9 * c;
        let d = SharedMut::new(dst);
        pool.for_each(height, &|y| {
            for x in 0..width {
                // SAFETY: task y writes the rows of output pixels (y, *) only.
                let o = unsafe { d.rows((y * width + x) * row, row) };
                for tap in 0..9 {
                    let (iy, ix) = ((y + tap / 3) as isize - 1, (x + tap % 3) as isize - 1);
                    let part = &mut o[tap * c..(tap + 1) * c];
                    if (0..height as isize).contains(&iy) && (0..width as isize).contains(&ix) {
                        part.copy_from_slice(&src[(iy as usize * width + ix as usize) * c..][..c]);
                    } else {
                        part.fill(0.0);
                    }
                }
            }
        });
        self.end(OpKind::DataMovement, started);
    }

    fn patchify(&mut self, plane: Buf, side: usize, patch: usize, out: Buf) {
        let started = self.begin();
        let ([src], dst, _, _) = self.io([plane], out);
        let grid = side / patch;
        assert!(src.len() >= side * side && dst.len() >= grid * grid * patch * patch, "patchify: buffers too small");
        for (token, row) in dst.chunks_exact_mut(patch * patch).take(grid * grid).enumerate() {
            let (gy, gx) = (token / grid, token % grid);
            for (dy, part) in row.chunks_exact_mut(patch).enumerate() {
                part.copy_from_slice(&src[(gy * patch + dy) * side + gx * patch..][..patch]);
            }
        }
        self.end(OpKind::DataMovement, started);
    }

    fn pixel_shuffle2(&mut self, x: Buf, shape: ImageShape, out: Buf) {
        let started = self.begin();
        let ImageShape { height, width, channels } = shape;
        let ([src], dst, pool, _) = self.io([x], out);
        let c = channels;
        let d = SharedMut::new(dst);
        pool.for_each(height, &|y| {
            for x in 0..width {
                let from = &src[(y * width + x) * 4 * c..][..4 * c];
                for (q, part) in from.chunks_exact(c).enumerate() {
                    let (dy, dx) = (q / 2, q % 2);
                    // SAFETY: task y writes output rows 2y and 2y + 1 only.
                    let to = unsafe { d.rows(((2 * y + dy) * 2 * width + 2 * x + dx) * c, c) };
                    to.copy_from_slice(part);
                }
            }
        });
        self.end(OpKind::DataMovement, started);
    }

    fn upscaled_logits(
        &mut self,
        x: Buf,
        side: usize,
        up1: &PackedB,
        norm: (&Vec<f32>, &Vec<f32>),
        eps: f32,
        up2: &PackedB,
        v: Buf,
        out: Buf,
    ) {
        let started = self.begin();
        let ([x, v], o, pool, scratch) = self.io([x, v], out);
        let up = Upscaling { up1, gamma: norm.0, beta: norm.1, eps, up2 };
        upscale::upscaled_logits(pool, x, side, &up, v, o, scratch);
        self.end(OpKind::Linear, started);
    }
}

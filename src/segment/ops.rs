//! The operations the LiteMedSAM graph is written against. An engine (CPU now, CUDA later)
//! supplies them; the graph (`graph/`) is written once.
//!
//! Activations live in one arena per engine, planned once from the input shape: a [`Buf`] is a
//! range of it. Layout is token-major throughout (rows of channels: an H × W × C image is H·W
//! rows of C), so 1×1 convolutions, linear layers and LayerNorm2d are all row operations.
//! Weights are prepared once at plan time into the engine's own layout ([`Ops::Linear`] etc.).

/// A range of the engine's activation arena, in f32 elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Buf {
    pub offset: usize,
    pub len: usize,
}

impl Buf {
    /// The first `len` elements (a smaller tensor in a scratch buffer).
    pub fn prefix(self, len: usize) -> Buf {
        assert!(len <= self.len, "buffer of {} holds no {len}", self.len);
        Buf { offset: self.offset, len }
    }

    /// `len` elements starting `offset` elements in.
    pub fn slice(self, offset: usize, len: usize) -> Buf {
        assert!(offset + len <= self.len, "buffer of {} holds no [{offset}, +{len})", self.len);
        Buf { offset: self.offset + offset, len }
    }
}

/// Hands out arena ranges at plan time.
#[derive(Debug, Default)]
pub struct ArenaPlan {
    len: usize,
}

impl ArenaPlan {
    pub fn alloc(&mut self, len: usize) -> Buf {
        // 16-float alignment keeps every buffer on a 64-byte boundary.
        let offset = self.len.next_multiple_of(16);
        self.len = offset + len;
        Buf { offset, len }
    }

    /// Total arena size in f32 elements.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// What follows a product, per output element.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Epilogue {
    None,
    Gelu,
    Relu,
    /// Add to the output's previous value (a residual connection).
    AddToOutput,
}

/// An image of tokens: `height` × `width` rows of `channels` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageShape {
    pub height: usize,
    pub width: usize,
    pub channels: usize,
}

impl ImageShape {
    pub fn square(side: usize, channels: usize) -> Self {
        ImageShape { height: side, width: side, channels }
    }

    /// Rows (pixels).
    pub fn tokens(&self) -> usize {
        self.height * self.width
    }
}

/// Geometry of one windowed self-attention over an image of tokens (TinyViT).
#[derive(Debug, Clone, Copy)]
pub struct WindowGeometry {
    /// The image, in tokens.
    pub height: usize,
    pub width: usize,
    /// Zero-padded up to whole windows.
    pub padded_height: usize,
    pub padded_width: usize,
    pub window: usize,
    pub heads: usize,
    pub head_dim: usize,
}

/// An attention layer's projections as PyTorch has them (`y = x Wᵀ + b`, W out × in): q, k and
/// v map `dim` to `inner` channels (`heads` heads), `out` maps back; and the most queries and
/// keys it will be run on (an engine sizes its scratch from them at plan time).
pub struct AttentionWeights<'a> {
    pub q: (&'a [f32], &'a [f32]),
    pub k: (&'a [f32], &'a [f32]),
    pub v: (&'a [f32], &'a [f32]),
    pub out: (&'a [f32], &'a [f32]),
    pub dim: usize,
    pub inner: usize,
    pub heads: usize,
    pub max_queries: usize,
    pub max_keys: usize,
}

pub trait Ops {
    /// A weight matrix (with bias) for `rows × in → rows × out` products.
    type Linear;
    /// A per-channel vector (LayerNorm scale/shift, attention biases).
    type Vector;
    /// A depthwise 3×3 kernel with its bias.
    type Depthwise;
    /// An attention layer's four projections.
    type Attention;

    // Plan time.
    /// Allocates the activation arena (f32 elements), once, after the graph planned its buffers.
    fn allocate_arena(&mut self, len: usize);
    /// `weight` is PyTorch's (out × in), `y = x Wᵀ + b`.
    fn linear_weight(&mut self, weight: &[f32], out: usize, inputs: usize, bias: Option<&[f32]>) -> Self::Linear;
    /// `weight` row-major (in × out).
    fn matrix_weight(&mut self, weight: &[f32], inputs: usize, out: usize, bias: Option<&[f32]>) -> Self::Linear;
    fn vector(&mut self, values: &[f32]) -> Self::Vector;
    /// `weight` is PyTorch's depthwise (C × 1 × 3 × 3).
    fn depthwise_weight(&mut self, weight: &[f32], bias: &[f32]) -> Self::Depthwise;
    fn attention_weight(&mut self, weights: &AttentionWeights) -> Self::Attention;

    // Run time.
    /// Copies host values into a buffer (the input plane, prompt tokens).
    fn upload(&mut self, dst: Buf, values: &[f32]);
    /// Copies a buffer out to the host (outputs).
    fn download(&mut self, src: Buf, out: &mut [f32]);
    fn copy(&mut self, src: Buf, dst: Buf);
    /// `out[rows × out] = epilogue(x[rows × in] · W + b)`.
    fn linear(&mut self, x: Buf, rows: usize, w: &Self::Linear, out: Buf, epilogue: Epilogue);
    fn layer_norm(&mut self, x: Buf, rows: usize, gamma: &Self::Vector, beta: &Self::Vector, eps: f32, out: Buf);
    /// `x = LayerNorm(x + delta)` in place (a post-norm residual).
    fn add_layer_norm(&mut self, x: Buf, delta: Buf, rows: usize, gamma: &Self::Vector, beta: &Self::Vector, eps: f32);
    /// [`add_layer_norm`](Self::add_layer_norm), then also `x_pe = x + pe` in the same pass (the
    /// decoder's keys and their positionally encoded copy).
    #[allow(clippy::too_many_arguments)]
    fn add_layer_norm_pe(
        &mut self,
        x: Buf,
        delta: Buf,
        rows: usize,
        norm: (&Self::Vector, &Self::Vector),
        eps: f32,
        pe: Buf,
        x_pe: Buf,
    );
    /// Depthwise 3×3, padding 1, stride 1 or 2, on an image; optional GELU.
    fn depthwise(&mut self, x: Buf, shape: ImageShape, stride: usize, k: &Self::Depthwise, gelu: bool, out: Buf);
    /// TinyViT's MBConv on an image, in one op so an engine can keep the 4C-wide hidden layers
    /// out of memory: `out = gelu(x + conv3(gelu(dw(gelu(conv1(x))))))`.
    fn mbconv(
        &mut self,
        x: Buf,
        shape: ImageShape,
        conv1: &Self::Linear,
        dw: &Self::Depthwise,
        conv3: &Self::Linear,
        out: Buf,
    );
    /// TinyViT's MLP with its residual, in one op so an engine can keep the 4C-wide hidden layer
    /// out of memory: `x += fc2(gelu(fc1(layer_norm(x))))` over `rows` rows, in place.
    #[allow(clippy::too_many_arguments)]
    fn mlp(
        &mut self,
        x: Buf,
        rows: usize,
        gamma: &Self::Vector,
        beta: &Self::Vector,
        eps: f32,
        fc1: &Self::Linear,
        fc2: &Self::Linear,
    );
    /// `x += other`.
    fn add(&mut self, x: Buf, other: Buf);
    /// `out = a + b`.
    fn add_into(&mut self, a: Buf, b: Buf, out: Buf);
    /// `out[r] = x[r] + row` for every row, and `out_pe = out + pe` (the rows with their
    /// positional encoding).
    fn add_row_pe(&mut self, x: Buf, rows: usize, row: &Self::Vector, pe: Buf, out: Buf, out_pe: Buf);
    /// Windowed attention over per-head interleaved `[q | k | v]` rows of the image's tokens
    /// (H·W × heads·3·head_dim); the tokens that pad the grid to whole windows (Hp × Wp) are keys
    /// and values whose row is `padding`. With a relative-position bias expanded to heads × n × n
    /// ([`expand_window_bias`]); `out` is H·W × heads·head_dim.
    fn window_attention(&mut self, qkv: Buf, padding: &Self::Vector, g: &WindowGeometry, bias: &Self::Vector, out: Buf);
    /// Multi-head attention with its projections (SAM's `Attention`): q is nq × dim, k and v
    /// nk × dim, `out = out_proj(attention(q_proj(q), k_proj(k), v_proj(v)))` is nq × dim, heads
    /// split as contiguous blocks of the inner width. An engine may fold the projections into
    /// whichever side has fewer rows (the mask decoder's 7 tokens against 4096 image positions).
    #[allow(clippy::too_many_arguments)]
    fn attend(&mut self, w: &Self::Attention, q: Buf, nq: usize, k: Buf, v: Buf, nk: usize, out: Buf);
    /// 3×3 patches (padding 1) of an image as rows of 9·C, tap-major: for a full 3×3
    /// convolution as one product.
    fn im2col3x3(&mut self, x: Buf, shape: ImageShape, out: Buf);
    /// Non-overlapping `patch` × `patch` patches of a `side` × `side` plane as rows of patch²
    /// values (row-major inside the patch): a stride-`patch` convolution stem as one product,
    /// like PyTorch's `pixel_unshuffle` of one channel.
    fn patchify(&mut self, plane: Buf, side: usize, patch: usize, out: Buf);
    /// Rows of (2 × 2 × C) per pixel of an H × W image (`shape` has the C) → a 2H × 2W × C image (a 2×2, stride-2
    /// transposed convolution after its product).
    fn pixel_shuffle2(&mut self, x: Buf, shape: ImageShape, out: Buf);
    /// The mask decoder's upscaling and hypernetwork product in one op, so neither the 128² × 64
    /// nor the 256² × 32 features reach memory: on a side × side image x, two 2×2, stride-2
    /// transposed convolutions (`up1`, then LayerNorm2d and GELU; `up2`, then GELU), and each
    /// 4·side × 4·side pixel's features dotted with `v`: `out[pixel] = GELU(up2(…))[pixel] · v`.
    /// The convolutions' weights are products whose columns are (dy, dx, channel).
    #[allow(clippy::too_many_arguments)]
    fn upscaled_logits(
        &mut self,
        x: Buf,
        side: usize,
        up1: &Self::Linear,
        norm: (&Self::Vector, &Self::Vector),
        eps: f32,
        up2: &Self::Linear,
        v: Buf,
        out: Buf,
    );
}

/// Expands TinyViT's relative-position bias table (heads × window²) to heads × n × n for
/// n = window² tokens: `bias[h][i][j] = table[h][|dy|·window + |dx|]`, where (dy, dx) is the
/// offset between tokens i and j of a window.
pub fn expand_window_bias(table: &[f32], heads: usize, window: usize) -> Vec<f32> {
    let n = window * window;
    let mut out = vec![0.0; heads * n * n];
    for h in 0..heads {
        for i in 0..n {
            for j in 0..n {
                let offset = (i / window).abs_diff(j / window) * window + (i % window).abs_diff(j % window);
                out[(h * n + i) * n + j] = table[h * n + offset];
            }
        }
    }
    out
}

//! The planner: which kernel family runs a convolution layer on a given map, at which precision,
//! and how its work is cut across threads. Every threshold lives here, and so does the one
//! band-size rule; a new kernel family is one file beside this one and one arm in [`plan`].

use super::direct::DirectIsa;
use crate::ops::precision::Precision;

/// At f32, 3x3 maps of at most this many pixels (8x8) run as one im2col product instead of
/// Winograd: there reading the weights dominates, and Winograd's are 16/9 as large. Measured on
/// the keypoint detector (Intel Xeon, 2 threads): 512->1024 at 4x4 3.8 -> 1.6 ms, 1024->512 at
/// 4x4 3.1 -> 1.9 ms, 256->512 at 8x8 1.5 -> 1.0 ms; at 16x16 Winograd was as fast.
pub const F32_IM2COL_MAX_PIXELS: usize = 64;

/// At bf16, 3x3 maps with at least this many 2x2 tiles per image take Winograd; smaller ones the
/// im2col product. At 8x8 (16 tiles) Winograd's 2.25x fewer products win; at 4x4 (4 tiles) its
/// products would be 16-column blocks three quarters empty.
pub const BF16_MIN_WINOGRAD_TILES: usize = 16;

/// Images with at least this many tiles are cut into bands of tile rows, one job per band (each
/// band's transforms and products stay in one core's caches); smaller ones run whole, each phase
/// parallel on its own. Also the smallest band.
pub const MIN_BAND_TILES: usize = 64;

/// The largest band, in tiles.
pub const MAX_BAND_TILES: usize = 1024;

/// Scratch budget per band job, in bytes, for the transformed input and the products: the band
/// size follows from it ([`band_tiles`]). 8 MiB gave the best or near-best times for the vox-256
/// shapes on a 2-core AMD EPYC (measured with bands of 128..1024 tiles).
pub const BAND_BYTES: usize = 8 << 20;

/// The fused up block's tiles per image below which its products run in parallel inside one band
/// instead of bands in parallel.
pub const UP_MIN_BAND_TILES: usize = 128;

/// The fused up block takes maps with at least this many 2x2 tiles of the small map; smaller ones
/// would be mostly padding.
pub const UP_MIN_TILES: usize = 16;

/// Layers other than 3x3 with at most this many output channels (every FOMM head) run the direct
/// kernel at f32; wider ones Candle's convolution.
pub const DIRECT_MAX_CHANNELS: usize = 64;

/// Heads with at least this many output channels use the bf16 im2col product at bf16: its
/// micro-kernel computes 8 output channels at a time, so narrower heads would waste most of it.
pub const BF16_MIN_HEAD_CHANNELS: usize = 8;

/// Winograd-domain values per tile: F(2x2, 3x3) has 16, the fused up block's two phases per axis
/// 36.
pub const WINOGRAD_VALUES: usize = 16;
/// See [`WINOGRAD_VALUES`].
pub const UP_VALUES: usize = 36;

/// What a layer is, as far as choosing its kernel goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LayerShape {
    /// Output channels.
    pub c_out: usize,
    /// Input channels.
    pub c_in: usize,
    /// Square kernel side.
    pub kernel: usize,
    /// Symmetric zero padding.
    pub padding: usize,
}

impl LayerShape {
    /// A 3x3 convolution with padding 1 (most of FOMM's work).
    pub fn is_3x3_same(&self) -> bool {
        self.kernel == 3 && self.padding == 1
    }
}

/// A kernel family.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    /// Candle's own convolution: tensors that are not f32 on the CPU, or shapes no kernel here
    /// takes.
    Candle,
    /// 3x3 as Winograd F(2x2, 3x3) (`winograd.rs`, `winograd_bf16.rs`).
    Winograd,
    /// One matrix product over unfolded input columns (`im2col.rs` for 3x3 at f32,
    /// `im2col_bf16.rs` for any kernel at bf16).
    Im2col,
    /// Direct convolution in vector registers, f32 only (`direct.rs`).
    Direct(DirectIsa),
    /// Nearest 2x upsampling and 3x3 convolution on the small map (`upconv.rs`).
    Up,
}

/// How a kernel's work is cut across threads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schedule {
    /// The kernel's own split (one product, or jobs over output rows).
    Single,
    /// Bands of about this many tiles, one rayon job each.
    Bands(usize),
    /// All images at once, each phase parallel on its own.
    Whole,
}

/// The plan for one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Plan {
    /// The kernel family.
    pub family: Family,
    /// The precision it computes at (f32 where the family has no bf16 form, even in a bf16
    /// layer).
    pub precision: Precision,
    /// How its work is cut.
    pub schedule: Schedule,
    /// Whether the input is upsampled 2x (nearest) by Candle before the kernel runs: an up block
    /// whose map is too small for [`Family::Up`].
    pub upsample_first: bool,
}

/// Tiles per band for a Winograd-like kernel with `values` transformed values per tile: the band's
/// transformed input and products fill [`BAND_BYTES`].
pub fn band_tiles(values: usize, c_in: usize, c_out: usize) -> usize {
    let per_tile = values * (c_in + c_out) * std::mem::size_of::<f32>();
    (BAND_BYTES / per_tile.max(1)).clamp(MIN_BAND_TILES, MAX_BAND_TILES)
}

/// Tile rows per band for `n` images of `tiles_h x tiles_w` tiles cut into bands of about
/// `band_tiles` tiles. With fewer images than threads, the band count is rounded up to a multiple
/// of the thread count so every core gets equal work.
pub fn band_rows(n: usize, tiles_h: usize, tiles_w: usize, band_tiles: usize) -> usize {
    let threads = rayon::current_num_threads().max(1);
    let mut bands = (tiles_h * tiles_w).div_ceil(band_tiles.max(1));
    if n < threads {
        bands = bands.div_ceil(threads) * threads;
    }
    tiles_h.div_ceil(bands.clamp(1, tiles_h.max(1))).max(1)
}

/// The plan for `layer` at `precision` on an input of `h x w` (`upsample`: an up block, whose
/// convolution sees the map upsampled 2x). `cpu_f32`: the weights and the input are f32 tensors on
/// the CPU (everything else runs on Candle).
pub fn plan(
    layer: &LayerShape,
    precision: Precision,
    cpu_f32: bool,
    (h, w): (usize, usize),
    upsample: bool,
) -> Plan {
    let candle = Plan {
        family: Family::Candle,
        precision: Precision::F32,
        schedule: Schedule::Single,
        upsample_first: upsample,
    };
    if !cpu_f32 {
        return candle;
    }
    if upsample {
        let tiles = h.div_ceil(2) * w.div_ceil(2);
        if layer.is_3x3_same() && tiles >= UP_MIN_TILES {
            let schedule = if tiles < UP_MIN_BAND_TILES {
                Schedule::Whole
            } else {
                Schedule::Bands(band_tiles(UP_VALUES, layer.c_in, layer.c_out))
            };
            return Plan {
                family: Family::Up,
                precision,
                schedule,
                upsample_first: false,
            };
        }
        return Plan {
            upsample_first: true,
            ..plan(layer, precision, cpu_f32, (2 * h, 2 * w), false)
        };
    }
    let (k, p) = (layer.kernel, layer.padding);
    if k == 0 || h + 2 * p < k || w + 2 * p < k {
        return candle;
    }
    let at = |family, precision, schedule| Plan {
        family,
        precision,
        schedule,
        upsample_first: false,
    };
    let tiles = h.div_ceil(2) * w.div_ceil(2);
    let winograd_schedule = |values| {
        if tiles >= MIN_BAND_TILES {
            Schedule::Bands(band_tiles(values, layer.c_in, layer.c_out))
        } else {
            Schedule::Whole
        }
    };
    match precision {
        Precision::F32 if layer.is_3x3_same() && h * w <= F32_IM2COL_MAX_PIXELS => {
            at(Family::Im2col, precision, Schedule::Single)
        }
        Precision::F32 if layer.is_3x3_same() => at(
            Family::Winograd,
            precision,
            winograd_schedule(WINOGRAD_VALUES),
        ),
        Precision::Bf16 if layer.is_3x3_same() && tiles >= BF16_MIN_WINOGRAD_TILES => at(
            Family::Winograd,
            precision,
            winograd_schedule(WINOGRAD_VALUES),
        ),
        Precision::Bf16 if layer.is_3x3_same() || layer.c_out >= BF16_MIN_HEAD_CHANNELS => {
            at(Family::Im2col, precision, Schedule::Single)
        }
        _ if layer.c_out <= DIRECT_MAX_CHANNELS => at(
            Family::Direct(DirectIsa::detect()),
            Precision::F32,
            Schedule::Single,
        ),
        _ => candle,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(c_out: usize, c_in: usize, kernel: usize, padding: usize) -> LayerShape {
        LayerShape {
            c_out,
            c_in,
            kernel,
            padding,
        }
    }

    #[test]
    fn f32_3x3_follows_the_map_size() {
        let l = layer(256, 256, 3, 1);
        let p = |h| plan(&l, Precision::F32, true, (h, h), false);
        assert_eq!(p(8).family, Family::Im2col);
        assert_eq!(p(16).family, Family::Winograd);
        let band = band_tiles(WINOGRAD_VALUES, 256, 256);
        assert_eq!(p(16).schedule, Schedule::Bands(band));
        assert_eq!(p(10).schedule, Schedule::Whole);
        assert!(matches!(p(64).schedule, Schedule::Bands(_)));
    }

    #[test]
    fn bf16_heads_and_small_maps() {
        let head = layer(10, 64, 7, 3);
        let p = plan(&head, Precision::Bf16, true, (64, 64), false);
        assert_eq!((p.family, p.precision), (Family::Im2col, Precision::Bf16));
        let thin = layer(3, 64, 7, 3);
        let p = plan(&thin, Precision::Bf16, true, (256, 256), false);
        assert!(matches!(p.family, Family::Direct(_)));
        assert_eq!(p.precision, Precision::F32);
        let deep = layer(1024, 512, 3, 1);
        let p = plan(&deep, Precision::Bf16, true, (4, 4), false);
        assert_eq!(p.family, Family::Im2col);
    }

    #[test]
    fn up_blocks_fuse_where_the_map_is_big_enough() {
        let l = layer(128, 256, 3, 1);
        let p = plan(&l, Precision::F32, true, (64, 64), true);
        assert_eq!((p.family, p.upsample_first), (Family::Up, false));
        // 4x4 upsampled is 8x8: the plain plan for that map (im2col at f32).
        let p = plan(&l, Precision::F32, true, (4, 4), true);
        assert!(p.upsample_first);
        assert_eq!(p.family, Family::Im2col);
    }

    #[test]
    fn not_cpu_f32_is_candle() {
        let p = plan(&layer(8, 8, 3, 1), Precision::Bf16, false, (64, 64), false);
        assert_eq!(p.family, Family::Candle);
    }

    #[test]
    fn kernels_larger_than_the_padded_map_go_to_candle() {
        let p = plan(&layer(8, 8, 7, 0), Precision::F32, true, (4, 4), false);
        assert_eq!(p.family, Family::Candle);
    }

    #[test]
    fn bands_stay_within_their_limits() {
        for (ci, co) in [(1, 1), (64, 64), (256, 256), (2048, 512)] {
            let t = band_tiles(WINOGRAD_VALUES, ci, co);
            assert!((MIN_BAND_TILES..=MAX_BAND_TILES).contains(&t));
        }
    }
}

//! Letterbox geometry of the official LiteMedSAM inference: the frame's longest side is resized to
//! 256 px (the other side keeps the aspect ratio, rounded half up), the result sits in the top-left
//! corner of the 256 x 256 model input and the rest is padding.
//!
//! Also maps prompts from frame pixels into that 256 frame, with the official rules (the box is
//! truncated, points are not). Everything here is a handful of float64 operations per frame.

use super::preprocess::PreprocessError;

/// Geometry of the letterbox for one frame size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Letterbox {
    pub frame_width: usize,
    pub frame_height: usize,
    /// Width of the resized image inside the 256 x 256 model input (columns beyond it are padding).
    pub resized_width: usize,
    /// Height of the resized image inside the 256 x 256 model input (rows below it are padding).
    pub resized_height: usize,
    /// Model pixels per frame pixel: 256 / max(width, height), float64 as in the reference.
    pub scale: f64,
}

impl Letterbox {
    /// Side of the square model input, in pixels.
    pub const SIDE: usize = 256;

    /// The letterbox of a `width` x `height` frame (official `resize_longest_side`).
    ///
    /// Errors on a zero-size frame and on frames so elongated that the short side would resize
    /// to 0 px (more than 512 times longer than wide): OpenCV refuses those too.
    pub fn for_frame(width: usize, height: usize) -> Result<Letterbox, PreprocessError> {
        if width == 0 || height == 0 {
            return Err(PreprocessError::EmptyFrame { width, height });
        }
        let scale = Self::SIDE as f64 / width.max(height) as f64;
        // Python's int(x + 0.5) on a positive float: round half up. The longest side always lands
        // on exactly 256 (256 / n * n is within an ulp of 256, and + 0.5 absorbs it).
        let resized_width = (width as f64 * scale + 0.5) as usize;
        let resized_height = (height as f64 * scale + 0.5) as usize;
        if resized_width == 0 || resized_height == 0 {
            return Err(PreprocessError::DegenerateAspect { width, height });
        }
        Ok(Letterbox { frame_width: width, frame_height: height, resized_width, resized_height, scale })
    }

    /// A box `[x0, y0, x1, y1]` in frame pixels → the model's 256 frame, by the official
    /// `resize_box_to_256`: each coordinate becomes `int(v * scale)`. The truncation (towards zero,
    /// as Python's `int`) and the use of `scale` rather than `resized_width / frame_width` are
    /// what the model saw in training, so they are kept even though rounding would be "better".
    pub fn box_to_model(&self, b: [f32; 4]) -> [f32; 4] {
        // `+ 0.0` turns the -0.0 of a small negative coordinate into 0.0, as Python's int() does.
        b.map(|v| ((f64::from(v) * self.scale).trunc() + 0.0) as f32)
    }

    /// A point `(x, y)` in frame pixels → the model's 256 frame: `(x, y) * scale`, rounded once to
    /// float32, no truncation (the reference's convention; the official script has no points).
    pub fn point_to_model(&self, p: [f32; 2]) -> [f32; 2] {
        p.map(|v| (f64::from(v) * self.scale) as f32)
    }

    /// True when the resize keeps the frame as it is (its longest side is already 256 px), so the
    /// pre-processing resize and the post-processing resize are both copies.
    pub fn is_identity(&self) -> bool {
        self.resized_width == self.frame_width && self.resized_height == self.frame_height
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_follow_round_half_up() {
        let cases = [
            ((820, 616), (256, 192)),
            ((320, 240), (256, 192)),
            ((192, 250), (197, 256)), // 196.6 rounds to 197
            ((256, 256), (256, 256)),
            ((100, 256), (100, 256)),
            ((512, 1), (256, 1)), // 0.5 rounds up
            ((1, 1), (256, 256)),
            ((3, 2), (256, 171)), // 170.67
        ];
        for ((w, h), (rw, rh)) in cases {
            let l = Letterbox::for_frame(w, h).unwrap();
            assert_eq!((l.resized_width, l.resized_height), (rw, rh), "{w} x {h}");
        }
    }

    #[test]
    fn bad_frames_are_errors() {
        assert!(matches!(Letterbox::for_frame(0, 10), Err(PreprocessError::EmptyFrame { .. })));
        assert!(matches!(Letterbox::for_frame(10, 0), Err(PreprocessError::EmptyFrame { .. })));
        // 1 * 256 / 513 + 0.5 < 1: the short side would vanish.
        assert!(matches!(Letterbox::for_frame(513, 1), Err(PreprocessError::DegenerateAspect { .. })));
        assert!(Letterbox::for_frame(512, 1).is_ok());
    }

    #[test]
    fn box_truncates_and_points_do_not() {
        let l = Letterbox::for_frame(320, 240).unwrap(); // scale 0.8
        assert_eq!(l.box_to_model([5.5, 28.5, 310.25, 170.75]), [4.0, 22.0, 248.0, 136.0]);
        assert_eq!(l.point_to_model([5.5, 28.5]), [4.4, 22.8]);
        // Python's int() truncates towards zero, also for boxes reaching past the left edge.
        assert_eq!(l.box_to_model([-1.0, -0.5, 0.0, 1.0]), [0.0, 0.0, 0.0, 0.0]);
        assert!(l.box_to_model([-1.0, -0.5, 0.0, 1.0])[0].is_sign_positive()); // int(-0.8) is 0
    }
}

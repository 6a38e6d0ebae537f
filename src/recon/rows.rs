//! Which pixels of each image row may be inserted: the clip rectangle and the fan of curvilinear
//! and endocavity probes, computed once per image size exactly as PLUS bounds its raster lines
//! (the same inclusive edges, the same floor/ceil with PLUS's small tolerance), so the same pixels
//! reach the volume.

use super::settings::ReconSettings;

/// PLUS's floor tolerance (2^-17): a value a hair under an integer counts as that integer.
pub const FLOOR_TOL: f64 = 7.62939453125e-06;

pub fn plus_floor(x: f64) -> i64 {
    (x + FLOOR_TOL).floor() as i64
}

/// `-Floor(-x)`, PLUS's ceiling.
pub fn plus_ceil(x: f64) -> i64 {
    -plus_floor(-x)
}

/// Pixels `start..=end` of a row, minus `skip` (pixels inside the fan's start radius).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowSpan {
    pub start: i64,
    pub end: i64,
    pub skip: Option<(i64, i64)>,
}

impl RowSpan {
    pub const EMPTY: RowSpan = RowSpan { start: 0, end: -1, skip: None };

    /// The pixel runs of this row that also lie in `start..=end` (where the row meets the
    /// volume), with PLUS's rule for a skipped middle that the volume cuts on one side.
    pub fn runs(&self, start: i64, end: i64) -> [(i64, i64); 2] {
        let (mut s, mut e) = (start.max(self.start), end.min(self.end));
        if s > e {
            return [(0, -1), (0, -1)];
        }
        match self.skip {
            None => [(s, e), (0, -1)],
            Some((k0, k1)) if k0 < s => {
                if s < k1 + 1 {
                    s = k1 + 1;
                    e = e.max(s - 1);
                }
                [(s, e), (0, -1)]
            }
            Some((k0, k1)) if k1 > e => {
                if e > k0 - 1 {
                    e = k0 - 1;
                    if e < s {
                        e = s - 1;
                    }
                }
                [(s, e), (0, -1)]
            }
            Some((k0, k1)) => [(s, k0 - 1), (k1 + 1, e)],
        }
    }
}

/// The row spans of one frame size, kept between frames and recomputed (allocating) only when
/// the frame size changes, so insertion allocates nothing for frames of the size it was made for.
pub struct RowSpanCache {
    settings: ReconSettings,
    size: (usize, usize),
    spans: Vec<RowSpan>,
}

impl RowSpanCache {
    pub fn new(width: usize, height: usize, settings: &ReconSettings) -> Self {
        RowSpanCache { settings: settings.clone(), size: (width, height), spans: row_spans(width, height, settings) }
    }

    /// The spans of `width`×`height` frames.
    pub fn get(&mut self, width: usize, height: usize) -> &[RowSpan] {
        if self.size != (width, height) {
            self.spans = row_spans(width, height, &self.settings);
            self.size = (width, height);
        }
        &self.spans
    }
}

/// The allowed span of every row of a `width`×`height` image.
pub fn row_spans(width: usize, height: usize, settings: &ReconSettings) -> Vec<RowSpan> {
    let (w, h) = (width as i64, height as i64);
    // The clip rectangle in pixels; PLUS's extent includes `origin + size` (then clamps to the image).
    let (cx0, cx1, cy0, cy1) = match settings.clip_rectangle() {
        Some((o, s)) => {
            let (mut x0, mut x1, mut y0, mut y1) = (o[0], o[0] + s[0], o[1], o[1] + s[1]);
            if x0 > x1 {
                std::mem::swap(&mut x0, &mut x1);
            }
            if y0 > y1 {
                std::mem::swap(&mut y0, &mut y1);
            }
            (x0.max(0), x1.min(w - 1), y0.max(0), y1.min(h - 1))
        }
        None => (0, w - 1, 0, h - 1),
    };
    let [mut left, mut right] = settings.fan_angles_deg.map(|a| a.to_radians().tan());
    if left > right {
        std::mem::swap(&mut left, &mut right);
    }
    let fan = left != 0.0 || right != 0.0;
    let [fox, foy] = settings.fan_origin_px;
    let (r0, r1) = (settings.fan_radius_start_px, settings.fan_radius_stop_px);
    (0..h)
        .map(|row| {
            if row < cy0 || row > cy1 {
                return RowSpan::EMPTY;
            }
            let (mut s, mut e, mut skip) = (cx0, cx1, None);
            if fan {
                let y = row as f64 - foy;
                s = s.max(plus_ceil(left * y + fox + 1.0));
                e = e.min(plus_floor(right * y + fox - 1.0));
                let depth2 = y * y;
                if r1 * r1 - depth2 < 0.0 {
                    return RowSpan::EMPTY;
                }
                let dx = (r1 * r1 - depth2).sqrt();
                s = s.max(plus_ceil(fox - dx + 1.0));
                e = e.min(plus_floor(fox + dx - 1.0));
                if r0 * r0 - depth2 > 0.0 {
                    let dx0 = (r0 * r0 - depth2).sqrt();
                    skip = Some((plus_ceil(fox - dx0 + 1.0), plus_floor(fox + dx0 - 1.0)));
                }
            }
            if s > e { RowSpan::EMPTY } else { RowSpan { start: s, end: e, skip } }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_rectangle_keeps_its_far_edge_and_the_image() {
        let s = ReconSettings {
            clip_rectangle_origin_px: Some([2, 1]),
            clip_rectangle_size_px: Some([3, 2]),
            ..Default::default()
        };
        let rows = row_spans(10, 6, &s);
        assert_eq!(rows[0], RowSpan::EMPTY);
        assert_eq!(rows[1], RowSpan { start: 2, end: 5, skip: None });
        assert_eq!(rows[3], RowSpan { start: 2, end: 5, skip: None });
        assert_eq!(rows[4], RowSpan::EMPTY);
    }

    #[test]
    fn fan_narrows_with_angle_and_stops_at_radius() {
        let s = ReconSettings {
            fan_angles_deg: [-45.0, 45.0],
            fan_origin_px: [50.0, 0.0],
            fan_radius_start_px: 5.0,
            fan_radius_stop_px: 20.0,
            ..Default::default()
        };
        let rows = row_spans(101, 30, &s);
        // Row 10: the 45° lines are at 40 and 60, one pixel in from each; radius 20 allows ±17.3.
        assert_eq!((rows[10].start, rows[10].end), (41, 59));
        assert_eq!(rows[10].skip, None);
        // Row 3 is inside the start radius: ±4 pixels around the origin are skipped.
        assert_eq!(rows[3].skip, Some((47, 53)));
        assert_eq!(rows[25], RowSpan::EMPTY);
    }

    #[test]
    fn runs_split_around_the_skip_or_trim_one_side() {
        let span = RowSpan { start: 0, end: 100, skip: Some((40, 60)) };
        assert_eq!(span.runs(0, 100), [(0, 39), (61, 100)]);
        assert_eq!(span.runs(50, 100), [(61, 100), (0, -1)]);
        assert_eq!(span.runs(0, 50), [(0, 39), (0, -1)]);
        let [(a, b), _] = span.runs(70, 30);
        assert!(a > b);
    }
}

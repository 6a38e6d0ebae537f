//! Ultrasound regions (Sequence of Ultrasound Regions, PS3.3 C.8.5.5): which one gives the crop
//! and the spacing, and whether it fits the frame.
//!
//! Only regions measured in cm along both axes give a spacing. Among them the B-mode one wins:
//! Region Data Type tissue and Region Spatial Format 2D, else the first 2D one, else the first;
//! the first of equals (a dual view writes two identical B-mode regions side by side).
//!
//! Scanners often write the inclusive maximum one or two pixels past the frame (x1 = Columns):
//! such a region is clamped to the frame. One that does not fit at all (exports resampled to a
//! smaller frame keep the original's regions) is ignored with a warning, so that the spacing
//! comes from Pixel Spacing and the crop is the whole frame: a recording is not lost over one
//! metadata field. A crop configured explicitly (`capture.roi_px`) is never adjusted.

use dicom_object::{InMemDicomObject, Tag};

use super::{float, int};

const ULTRASOUND_REGIONS: Tag = Tag(0x0018, 0x6011);
const REGION_SPATIAL_FORMAT: Tag = Tag(0x0018, 0x6012);
const REGION_DATA_TYPE: Tag = Tag(0x0018, 0x6014);
const REGION_MIN_X0: Tag = Tag(0x0018, 0x6018);
const REGION_MIN_Y0: Tag = Tag(0x0018, 0x601A);
const REGION_MAX_X1: Tag = Tag(0x0018, 0x601C);
const REGION_MAX_Y1: Tag = Tag(0x0018, 0x601E);
const UNITS_X: Tag = Tag(0x0018, 0x6024);
const UNITS_Y: Tag = Tag(0x0018, 0x6026);
const DELTA_X: Tag = Tag(0x0018, 0x602C);
const DELTA_Y: Tag = Tag(0x0018, 0x602E);
/// Physical Units X/Y Direction code for centimetres.
const UNITS_CM: i64 = 3;
/// Region Spatial Format code for a 2D image (sector, linear, ...).
const SPATIAL_2D: i64 = 1;
/// Region Data Type code for tissue (B-mode).
const DATA_TISSUE: i64 = 1;
/// How far past the frame edge an inclusive maximum may reach and still be clamped to it.
pub(super) const MAX_OVERSHOOT_PX: u64 = 2;

/// One region measured in cm, as the file writes it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Region {
    pub spatial_format: Option<i64>,
    pub data_type: Option<i64>,
    /// Inclusive pixel bounds: x0, y0, x1, y1.
    pub bounds: [u64; 4],
    /// [column, row] spacing in mm.
    pub spacing_mm: [f64; 2],
}

/// Where a region lands in a frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Fit {
    /// `[x, y, width, height]`, inside the frame as written.
    Inside([usize; 4]),
    /// `[x, y, width, height]` after clamping a maximum that overshot by at most
    /// [`MAX_OVERSHOOT_PX`].
    Clamped([usize; 4]),
    /// Not within the frame even so.
    Outside,
}

impl Region {
    /// Preference: B-mode first, then any 2D region, then the rest.
    fn rank(&self) -> u8 {
        match (self.spatial_format, self.data_type) {
            (Some(SPATIAL_2D), Some(DATA_TISSUE)) => 0,
            (Some(SPATIAL_2D), _) => 1,
            _ => 2,
        }
    }

    pub fn fit(&self, columns: usize, rows: usize) -> Fit {
        let [x0, y0, x1, y1] = self.bounds;
        let (columns, rows) = (columns as u64, rows as u64);
        if columns == 0 || rows == 0 || x0 >= columns || y0 >= rows {
            return Fit::Outside;
        }
        if x1 > columns - 1 + MAX_OVERSHOOT_PX || y1 > rows - 1 + MAX_OVERSHOOT_PX {
            return Fit::Outside;
        }
        let (cx1, cy1) = (x1.min(columns - 1), y1.min(rows - 1));
        let crop = [x0 as usize, y0 as usize, (cx1 - x0 + 1) as usize, (cy1 - y0 + 1) as usize];
        if (cx1, cy1) == (x1, y1) { Fit::Inside(crop) } else { Fit::Clamped(crop) }
    }

    /// The bounds as the file writes them, for messages.
    pub fn describe(&self) -> String {
        let [x0, y0, x1, y1] = self.bounds;
        format!("x {x0}..={x1}, y {y0}..={y1}")
    }
}

/// The regions measured in cm along both axes with a positive spacing and ordered bounds, in
/// the file's order.
pub(super) fn read(obj: &InMemDicomObject) -> Vec<Region> {
    let Some(items) = obj.element_opt(ULTRASOUND_REGIONS).ok().flatten().and_then(|e| e.items()) else {
        return Vec::new();
    };
    items
        .iter()
        .filter_map(|r| {
            let cm = |tag| int(r, tag) == Some(UNITS_CM);
            if !(cm(UNITS_X) && cm(UNITS_Y)) {
                return None;
            }
            let (dx, dy) = (float(r, DELTA_X)?, float(r, DELTA_Y)?);
            let bound = |tag| int(r, tag).and_then(|v| u64::try_from(v).ok());
            let bounds = [bound(REGION_MIN_X0)?, bound(REGION_MIN_Y0)?, bound(REGION_MAX_X1)?, bound(REGION_MAX_Y1)?];
            let ordered = bounds[2] >= bounds[0] && bounds[3] >= bounds[1];
            if !(dx > 0.0 && dy > 0.0 && dx.is_finite() && dy.is_finite() && ordered) {
                return None;
            }
            Some(Region {
                spatial_format: int(r, REGION_SPATIAL_FORMAT),
                data_type: int(r, REGION_DATA_TYPE),
                bounds,
                spacing_mm: [dx * 10.0, dy * 10.0],
            })
        })
        .collect()
}

/// The region to use: the best ranked, the first of equals.
pub(super) fn choose(regions: &[Region]) -> Option<&Region> {
    regions.iter().min_by_key(|r| r.rank())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(format: i64, data: i64, bounds: [u64; 4]) -> Region {
        Region { spatial_format: Some(format), data_type: Some(data), bounds, spacing_mm: [0.1, 0.1] }
    }

    #[test]
    fn a_region_inside_the_frame_is_its_crop() {
        assert_eq!(region(1, 1, [120, 60, 679, 459]).fit(800, 600), Fit::Inside([120, 60, 560, 400]));
        assert_eq!(region(1, 1, [0, 0, 799, 599]).fit(800, 600), Fit::Inside([0, 0, 800, 600]));
    }

    #[test]
    fn a_maximum_one_or_two_past_the_edge_is_clamped() {
        // x1 = Columns: the scanner's off-by-one.
        assert_eq!(region(1, 1, [120, 60, 800, 518]).fit(800, 600), Fit::Clamped([120, 60, 680, 459]));
        assert_eq!(region(1, 1, [0, 10, 100, 601]).fit(800, 600), Fit::Clamped([0, 10, 101, 590]));
        assert_eq!(region(1, 1, [5, 5, 801, 601]).fit(800, 600), Fit::Clamped([5, 5, 795, 595]));
    }

    #[test]
    fn a_region_that_does_not_fit_is_outside() {
        assert_eq!(region(1, 1, [120, 60, 802, 518]).fit(800, 600), Fit::Outside);
        // A 640x480 region in a frame resampled to 320x240.
        assert_eq!(region(1, 1, [84, 31, 595, 414]).fit(320, 240), Fit::Outside);
        assert_eq!(region(1, 1, [800, 0, 800, 10]).fit(800, 600), Fit::Outside, "starts past the edge");
        assert_eq!(region(1, 1, [0, 0, u64::MAX, u64::MAX]).fit(800, 600), Fit::Outside);
        assert_eq!(region(1, 1, [0, 0, 0, 0]).fit(0, 0), Fit::Outside);
    }

    #[test]
    fn the_b_mode_region_is_chosen_whatever_its_place() {
        let spectral = region(4, 3, [0, 300, 799, 599]);
        let colour_flow = region(1, 2, [0, 0, 399, 299]);
        let b_mode = region(1, 1, [400, 0, 799, 299]);
        assert_eq!(choose(&[spectral, colour_flow, b_mode]), Some(&b_mode));
        assert_eq!(choose(&[spectral, colour_flow]), Some(&colour_flow), "else a 2D region");
        assert_eq!(choose(&[spectral]), Some(&spectral), "else the first");
        assert_eq!(choose(&[]), None);
        // A dual view: two B-mode regions; the first (left) one.
        let right = region(1, 1, [336, 24, 639, 415]);
        let left = region(1, 1, [32, 24, 335, 415]);
        assert_eq!(choose(&[spectral, left, right]), Some(&left));
        let unknown = Region { spatial_format: None, data_type: None, ..b_mode };
        assert_eq!(choose(&[unknown, b_mode]), Some(&b_mode));
    }
}

//! The phantom simulator as a live-like source: renders each frame on demand (no file), paced at
//! the simulated frame rate or as fast as possible, with the ground-truth label mask attached to
//! every frame whose mask buffer could be had.

use std::sync::Arc;

use crate::capture::simulator::{SimulationSpec, Simulator, TRANSFORM_NAMES};
use crate::capture::{CaptureError, Next, Pace, Source, SourceFormat};
use crate::frame::{Frame, PixelData, PixelFormat, PixelPool};
use crate::pipeline::clock::Clock;

pub struct SimulatedSource {
    simulator: Simulator,
    pace: Pace,
    next: usize,
    masks: PixelPool,
    names: [Arc<str>; TRANSFORM_NAMES.len()],
    /// Labels land here when no mask buffer is free (the frame then goes without a mask).
    spare_labels: Vec<u8>,
    start_ns: Option<u64>,
}

impl SimulatedSource {
    /// `mask_buffers` bounds how many ground-truth masks can be in flight at once.
    pub fn new(spec: SimulationSpec, pace: Pace, mask_buffers: usize) -> Result<Self, CaptureError> {
        let simulator = Simulator::new(spec)
            .map_err(|e| CaptureError::Failed { source_name: "simulator".into(), message: e.to_string() })?;
        let pixels = simulator.spec().width_px * simulator.spec().height_px;
        Ok(SimulatedSource {
            simulator,
            pace,
            next: 0,
            masks: PixelPool::new(PixelFormat::Gray8, pixels, mask_buffers),
            names: TRANSFORM_NAMES.map(Arc::from),
            spare_labels: vec![0; pixels],
            start_ns: None,
        })
    }
}

impl Source for SimulatedSource {
    fn describe(&self) -> String {
        format!("simulator (seed {}, {} frames)", self.simulator.spec().seed, self.simulator.spec().frames)
    }

    fn format(&self) -> SourceFormat {
        let spec = self.simulator.spec();
        SourceFormat { width: spec.width_px, height: spec.height_px, pixel_format: PixelFormat::Gray8 }
    }

    fn image_fields(&self) -> Vec<(String, String)> {
        crate::capture::simulator::image_fields()
    }

    fn wait_next(&mut self, clock: &mut Clock, keep_waiting: &dyn Fn() -> bool) -> Result<Next, CaptureError> {
        if self.next >= self.simulator.spec().frames {
            return Ok(Next::End);
        }
        if self.pace == Pace::Recorded {
            let start = *self.start_ns.get_or_insert_with(|| clock.now_ns());
            let period_ns = 1e9 / self.simulator.spec().frame_rate_hz;
            if !clock.sleep_until_ns(start + (self.next as f64 * period_ns) as u64, keep_waiting) {
                return Ok(Next::End);
            }
        }
        Ok(Next::Ready)
    }

    fn fill(&mut self, frame: &mut Frame) -> Result<(), CaptureError> {
        let fail =
            |message: String| CaptureError::BadFrame { source_name: "simulator".into(), frame: self.next, message };
        let mut mask = self.masks.try_acquire();
        let PixelData::Gray8(image) = frame.image.pixels.data_mut() else {
            return Err(fail("the simulator renders 8-bit frames only".into()));
        };
        let labels: &mut [u8] = match mask.as_mut().map(|m| m.data_mut()) {
            Some(PixelData::Gray8(labels)) => labels,
            _ => &mut self.spare_labels,
        };
        let pose = self.simulator.render(self.next, image, labels).map_err(|e| fail(e.to_string()))?;
        let spec = self.simulator.spec();
        frame.image.width = spec.width_px;
        frame.image.height = spec.height_px;
        frame.image.spacing_mm = [spec.spacing_mm, spec.spacing_mm];
        frame.capture_time_s = pose.timestamp_s;
        frame.image_ok = true;
        frame.mask = mask;
        frame.transforms.clear();
        for (name, (matrix, status)) in self.names.iter().zip(pose.transforms()) {
            frame.transforms.set(name, matrix, status).map_err(|e| fail(e.to_string()))?;
        }
        self.next += 1;
        Ok(())
    }
}

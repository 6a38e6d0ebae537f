//! A stage that hands every frame on untouched: the placeholder of stage kinds that are not built
//! yet (they register it explicitly), and a neutral stage for runtime tests and benchmarks.
//!
//! Latency budget: well under 10 µs per frame (a move of the frame, nothing else).

use crate::frame::Frame;
use crate::pipeline::stage::{Stage, StageError};

#[derive(Debug, Default)]
pub struct PassThroughStage;

impl Stage for PassThroughStage {
    fn process(&mut self, input: Frame) -> Result<Option<Frame>, StageError> {
        Ok(Some(input))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{PixelFormat, PixelPool};

    #[test]
    fn hands_the_frame_on_untouched() {
        let pool = PixelPool::new(PixelFormat::Gray8, 4, 1);
        let mut frame = Frame::new(pool.try_acquire().unwrap());
        frame.seq = 7;
        assert_eq!(PassThroughStage.process(frame).unwrap().unwrap().seq, 7);
    }
}

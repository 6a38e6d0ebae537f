//! Placeholder stage for the parts of the chain that are not built yet (segment, threshold,
//! reconstruct, haptics): it hands every frame on untouched. It exists so the runtime, queues and
//! metrics can be exercised end to end; real stages replace it one by one.
//!
//! Latency budget: well under 10 µs per frame (a move of the frame, nothing else).

use crate::frame::Frame;
use crate::pipeline::stage::{Outcome, Stage, StageError};

#[derive(Debug, Default)]
pub struct PassThroughStage;

impl Stage for PassThroughStage {
    fn process(&mut self, input: Frame, output: &mut Option<Frame>) -> Result<Outcome, StageError> {
        *output = Some(input);
        Ok(Outcome::Emitted)
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
        let mut out = None;
        assert_eq!(PassThroughStage.process(frame, &mut out).unwrap(), Outcome::Emitted);
        assert_eq!(out.unwrap().seq, 7);
    }
}

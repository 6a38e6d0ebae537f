//! The runtime: one thread per stage, bounded queues between them, timing in one place.
//!
//! The capture thread takes a pooled buffer, waits for the source, fills the frame and pushes it
//! on. Each stage thread receives, stamps the start, calls `process`, stamps the end, applies the
//! supervisor's error policy and pushes on. The last stage's thread is also the sink: it measures
//! end-to-end latency (output time − receive time) and deadline misses. Shutdown is by
//! disconnection: the capture thread stops and drops its queue, each stage drains its input and
//! drops its own, so every frame in flight is either processed or counted as drained.

use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::capture::{Next, Source};
use crate::frame::{Frame, PixelPool};
use crate::pipeline::clock::Clock;
use crate::pipeline::metrics::LatencyRecorder;
use crate::pipeline::outputs::Outputs;
use crate::pipeline::queue::{self, QueueCounters, QueuePolicy, QueueReceiver, QueueSender};
use crate::pipeline::recording::RecordingTap;
use crate::pipeline::report::{EndToEndReport, QueueReport, Report, ReportParts, StageReport, TraceEvent};
use crate::pipeline::stage::{ErrorPolicy, Stage, StageError, StageFactory, error_chain};
use crate::pipeline::supervisor::{Fault, FaultAction, StopReason, Supervisor};

/// One processing stage as the runtime needs it.
pub struct StageSpec {
    pub name: String,
    pub factory: StageFactory,
    pub on_error: ErrorPolicy,
    /// Capacity and policy of the queue that feeds this stage.
    pub queue_capacity: usize,
    pub queue_policy: QueuePolicy,
}

/// Everything a run needs, validated and built before any thread starts.
pub struct PipelineSpec {
    pub source: Box<dyn Source>,
    pub stages: Vec<StageSpec>,
    pub clock: Clock,
    /// Pixel buffers shared by all frames in flight.
    pub pool_frames: usize,
    /// Stop after this many frames (None: until the source ends).
    pub max_frames: Option<u64>,
    pub deadline_ms: f64,
    pub max_restarts: u32,
    /// Trace events kept per thread (0: no trace).
    pub trace_capacity: usize,
    /// Records every captured frame.
    pub input_tap: Option<RecordingTap>,
    /// Records the label mask of every frame that reaches the end.
    pub mask_tap: Option<RecordingTap>,
    pub supervisor: Supervisor,
    /// The handles the stages share (see [`Outputs`]); the caller keeps what it needs from here
    /// before the run (e.g. a slot the stages leave results in).
    pub outputs: Outputs,
}

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PipelineError {
    #[error("stage '{stage}' could not be built")]
    StageBuild {
        stage: String,
        #[source]
        source: StageError,
    },
    #[error("could not start the thread of stage '{stage}'")]
    Thread {
        stage: String,
        #[source]
        source: std::io::Error,
    },
    #[error("at most {max} stages fit in a frame's stamps; the pipeline has {got}")]
    TooManyStages { max: usize, got: usize },
}

/// What a run produced.
pub struct RunResult {
    pub report: Report,
    /// Per-stage trace events, in the order each thread recorded them.
    pub trace: Vec<TraceEvent>,
}

/// What each thread hands back when it ends.
struct StageOutcome {
    report: StageReport,
    /// The stage's own report section ([`Stage::report`]).
    section: Option<serde_json::Value>,
    trace: Vec<TraceEvent>,
    sink: Option<SinkMetrics>,
    /// The mask recording, handed back by the sink for finishing.
    mask_tap: Option<RecordingTap>,
}

struct SinkMetrics {
    end_to_end: LatencyRecorder,
    after_capture: LatencyRecorder,
    output_interval: LatencyRecorder,
    deadline_misses: u64,
    frames_out: u64,
    last_output_ns: Option<u64>,
}

/// Bounded per-thread trace buffer: events past its capacity are counted, never allocated.
struct TraceBuffer {
    events: Vec<TraceEvent>,
    dropped: u64,
}

impl TraceBuffer {
    fn new(capacity: usize) -> Self {
        TraceBuffer { events: Vec::with_capacity(capacity), dropped: 0 }
    }

    fn push(&mut self, event: TraceEvent) {
        if self.events.len() < self.events.capacity() {
            self.events.push(event);
        } else {
            self.dropped += 1;
        }
    }
}

/// Runs the pipeline to its end (end of input, frame limit, interruption or safe-stop).
pub fn run(spec: PipelineSpec) -> Result<RunResult, PipelineError> {
    let PipelineSpec {
        source,
        stages,
        clock,
        pool_frames,
        max_frames,
        deadline_ms,
        max_restarts,
        trace_capacity,
        input_tap,
        mask_tap,
        supervisor,
        outputs: _,
    } = spec;
    if stages.len() + 1 > crate::frame::MAX_STAGES {
        return Err(PipelineError::TooManyStages { max: crate::frame::MAX_STAGES - 1, got: stages.len() });
    }
    let started = Instant::now();
    let format = source.format();
    let pool = PixelPool::new(format.pixel_format, format.width * format.height, pool_frames);
    let source_name = source.describe();
    tracing::info!(
        source = %source_name,
        width = format.width,
        height = format.height,
        pool_frames,
        stages = stages.len(),
        "starting pipeline"
    );
    let built = build_stages(stages)?;
    let settings = WorkerSettings { clock: &clock, supervisor: &supervisor, trace_capacity, max_restarts, deadline_ms };
    let Spawned { queues, handles, first, unused_mask_tap } = spawn_stages(built, &settings, mask_tap)?;
    let capture = CaptureWorker {
        supervisor: supervisor.clone(),
        clock: clock.fork(),
        trace: TraceBuffer::new(trace_capacity),
        max_frames,
        pool: pool.clone(),
        input_tap,
    };
    let capture_handle = std::thread::Builder::new()
        .name("stage-capture".into())
        .spawn(move || capture.run(source, first))
        .map_err(|source| PipelineError::Thread { stage: "capture".into(), source })?;
    let (outcomes, input_tap, pool_waits) = join_all(capture_handle, handles, &supervisor);
    tracing::info!(reason = ?supervisor.reason(), "pipeline stopped");
    Ok(assemble(
        outcomes,
        AssembleInputs {
            source_name,
            mock_clock: clock.is_mock(),
            supervisor: &supervisor,
            started,
            deadline_ms,
            queues,
            pool: (pool.buffers(), pool_waits),
            taps: input_tap.into_iter().chain(unused_mask_tap).collect(),
        },
    ))
}

/// A stage with its first instance.
type Built = (StageSpec, Box<dyn Stage>);

/// Builds every stage before any thread starts, so a bad model path or device fails the run up
/// front instead of after frames have flowed.
fn build_stages(stages: Vec<StageSpec>) -> Result<Vec<Built>, PipelineError> {
    let mut built = Vec::with_capacity(stages.len());
    for mut stage in stages {
        let instance =
            (stage.factory)().map_err(|source| PipelineError::StageBuild { stage: stage.name.clone(), source })?;
        built.push((stage, instance));
    }
    Ok(built)
}

/// What every stage thread is started with.
struct WorkerSettings<'a> {
    clock: &'a Clock,
    supervisor: &'a Supervisor,
    trace_capacity: usize,
    max_restarts: u32,
    deadline_ms: f64,
}

type QueueCounterSet = Vec<(String, usize, QueuePolicy, Arc<QueueCounters>)>;
type StageHandles = Vec<(String, JoinHandle<StageOutcome>)>;

/// What `spawn_stages` started.
struct Spawned {
    queues: QueueCounterSet,
    handles: StageHandles,
    /// The queue capture feeds (none without stages).
    first: Option<QueueSender<Frame>>,
    unused_mask_tap: Option<RecordingTap>,
}

/// Makes the queues (edge k feeds stage k + 1; stage 0 is capture) and starts one thread per
/// stage.
fn spawn_stages(
    built: Vec<Built>,
    settings: &WorkerSettings,
    mut mask_tap: Option<RecordingTap>,
) -> Result<Spawned, PipelineError> {
    let stage_count = built.len();
    let mut names = vec!["capture".to_string()];
    names.extend(built.iter().map(|(s, _)| s.name.clone()));
    let mut queues = Vec::new();
    let mut senders: Vec<Option<QueueSender<Frame>>> = Vec::new();
    let mut receivers: Vec<Option<QueueReceiver<Frame>>> = Vec::new();
    for (k, (stage, _)) in built.iter().enumerate() {
        let (tx, rx, counters) = queue::bounded(stage.queue_capacity, stage.queue_policy);
        queues.push((format!("{}->{}", names[k], names[k + 1]), stage.queue_capacity, stage.queue_policy, counters));
        senders.push(Some(tx));
        receivers.push(Some(rx));
    }
    let mut handles = Vec::new();
    for (k, (stage, instance)) in built.into_iter().enumerate() {
        let index = k + 1;
        let input = receivers[k].take().expect("one receiver per stage");
        let output = if index < stage_count { senders[index].take() } else { None };
        let worker = StageWorker {
            index,
            name: stage.name.clone(),
            factory: stage.factory,
            on_error: stage.on_error,
            max_restarts: settings.max_restarts,
            supervisor: settings.supervisor.clone(),
            clock: settings.clock.fork(),
            trace: TraceBuffer::new(settings.trace_capacity),
            deadline_ns: (settings.deadline_ms * 1e6) as u64,
            // Only the sink records masks.
            mask_tap: if index == stage_count { mask_tap.take() } else { None },
            section: None,
        };
        let handle = std::thread::Builder::new()
            .name(format!("stage-{}", stage.name))
            .spawn(move || worker.run(instance, input, output))
            .map_err(|source| PipelineError::Thread { stage: stage.name.clone(), source })?;
        handles.push((stage.name, handle));
    }
    let first = senders.first_mut().and_then(Option::take);
    // A pipeline without stages has no sink to take the mask tap: it comes back unused.
    Ok(Spawned { queues, handles, first, unused_mask_tap: mask_tap })
}

/// Waits for every thread; a thread that panicked is recorded as a fault and safe-stops the run.
fn join_all(
    capture: JoinHandle<(StageOutcome, Option<RecordingTap>, u64)>,
    handles: StageHandles,
    supervisor: &Supervisor,
) -> (Vec<StageOutcome>, Option<RecordingTap>, u64) {
    let (capture_outcome, input_tap, pool_waits) = capture.join().unwrap_or_else(|_| {
        supervisor.request_stop(StopReason::SafeStop);
        (StageOutcome::empty("capture"), None, 0)
    });
    let mut outcomes = vec![capture_outcome];
    for (name, handle) in handles {
        outcomes.push(handle.join().unwrap_or_else(|_| {
            supervisor.record_fault(Fault {
                stage: name.clone(),
                seq: 0,
                error: "stage thread panicked".into(),
                action: FaultAction::SafeStop,
            });
            supervisor.request_stop(StopReason::SafeStop);
            StageOutcome::empty(&name)
        }));
    }
    (outcomes, input_tap, pool_waits)
}

struct AssembleInputs<'a> {
    source_name: String,
    mock_clock: bool,
    supervisor: &'a Supervisor,
    started: Instant,
    deadline_ms: f64,
    queues: QueueCounterSet,
    /// Buffers, and the times capture waited for one.
    pool: (usize, u64),
    /// Recording taps the sink does not hand back (the input's, an unused mask tap).
    taps: Vec<RecordingTap>,
}

/// The run report and trace from what the threads handed back.
fn assemble(outcomes: Vec<StageOutcome>, inputs: AssembleInputs) -> RunResult {
    let mut outcomes = outcomes;
    let mut recordings: Vec<_> = inputs.taps.into_iter().map(RecordingTap::finish).collect();
    recordings.extend(outcomes.iter_mut().filter_map(|o| o.mask_tap.take()).map(RecordingTap::finish));
    let queues = inputs
        .queues
        .into_iter()
        .map(|(name, capacity, policy, c)| QueueReport {
            name,
            capacity,
            policy,
            pushed: c.pushed.load(Ordering::Relaxed),
            dropped: c.dropped.load(Ordering::Relaxed),
            drained: c.drained.load(Ordering::Relaxed),
            stale: c.stale.load(Ordering::Relaxed),
            max_depth: c.max_depth.load(Ordering::Relaxed),
        })
        .collect();
    let (mut trace, mut stages, mut sections, mut sink) = (Vec::new(), Vec::new(), Vec::new(), None);
    for outcome in outcomes {
        trace.extend(outcome.trace);
        if let Some(section) = outcome.section {
            sections.push((outcome.report.name.clone(), section));
        }
        stages.push(outcome.report);
        if outcome.sink.is_some() {
            sink = outcome.sink;
        }
    }
    let deadline_ms = inputs.deadline_ms;
    let (faults, fault_count) = inputs.supervisor.faults();
    let report = Report::assemble(ReportParts {
        source: inputs.source_name,
        mock_clock: inputs.mock_clock,
        stop_reason: inputs.supervisor.reason(),
        wall_time: inputs.started.elapsed(),
        stages,
        end_to_end: sink.map(|s| EndToEndReport {
            frames_out: s.frames_out,
            latency: s.end_to_end.summary(),
            after_capture: s.after_capture.summary(),
            output_interval: s.output_interval.summary(),
            deadline_ms,
            deadline_misses: s.deadline_misses,
        }),
        deadline_ms,
        queues,
        pool: inputs.pool,
        recordings,
        faults,
        fault_count,
        sections,
    });
    RunResult { report, trace }
}

impl StageOutcome {
    /// The outcome of a thread that could not report (it panicked).
    fn empty(name: &str) -> Self {
        StageOutcome { report: StageReport::named(name), section: None, trace: Vec::new(), sink: None, mask_tap: None }
    }
}

struct CaptureWorker {
    supervisor: Supervisor,
    clock: Clock,
    trace: TraceBuffer,
    max_frames: Option<u64>,
    pool: PixelPool,
    input_tap: Option<RecordingTap>,
}

impl CaptureWorker {
    fn run(
        mut self,
        mut source: Box<dyn Source>,
        output: Option<QueueSender<Frame>>,
    ) -> (StageOutcome, Option<RecordingTap>, u64) {
        let mut report = StageReport::named("capture");
        let mut latency = LatencyRecorder::new();
        let mut pool_waits = 0u64;
        let name = source.describe();
        let mut seq = 0u64;
        while self.supervisor.running() {
            if self.max_frames.is_some_and(|max| seq >= max) {
                self.supervisor.request_stop(StopReason::FrameLimit);
                break;
            }
            // Every buffer in flight means the stages are behind; wait for one to come back.
            let pixels = loop {
                if let Some(p) = self.pool.try_acquire() {
                    break Some(p);
                }
                if !self.supervisor.running() {
                    break None;
                }
                pool_waits += 1;
                std::thread::sleep(Duration::from_micros(100));
            };
            let Some(pixels) = pixels else { break };
            let supervisor = &self.supervisor;
            match source.wait_next(&mut self.clock, &|| supervisor.running()) {
                Ok(Next::Ready) => {}
                Ok(Next::End) => {
                    self.supervisor.request_stop(StopReason::EndOfInput);
                    break;
                }
                Err(e) => {
                    self.fail(&name, seq, &error_chain(&e), &mut report);
                    break;
                }
            }
            let mut frame = Frame::new(pixels);
            let receive_ns = self.clock.now_ns();
            frame.seq = seq;
            frame.receive_ns = receive_ns;
            let span = tracing::debug_span!("stage", stage = "capture", seq).entered();
            let filled = source.fill(&mut frame);
            drop(span);
            let end_ns = self.clock.now_ns();
            report.frames_in += 1;
            if let Err(e) = filled {
                self.fail(&name, seq, &error_chain(&e), &mut report);
                break;
            }
            frame.stamps.set_start(0, receive_ns);
            frame.stamps.set_end(0, end_ns);
            latency.record_ns(end_ns - receive_ns);
            self.trace.push(TraceEvent { stage: 0, seq, start_ns: receive_ns, end_ns });
            if let Some(tap) = &self.input_tap {
                tap.offer(&frame);
            }
            report.frames_out += 1;
            seq += 1;
            match &output {
                Some(out) => {
                    let supervisor = &self.supervisor;
                    if out.push(frame, || !supervisor.safe_stopped()).is_err() {
                        break;
                    }
                }
                // A pipeline without stages: capture is its own sink.
                None => drop(frame),
            }
        }
        // A live source's bounded queue drops frames the chain was too slow for; they count as
        // frames in that the capture stage skipped, so every frame stays accounted for.
        let dropped = source.dropped_frames();
        report.frames_in += dropped;
        report.skipped += dropped;
        report.latency = latency.summary();
        report.trace_dropped = self.trace.dropped;
        let outcome = StageOutcome { report, section: None, trace: self.trace.events, sink: None, mask_tap: None };
        (outcome, self.input_tap, pool_waits)
    }

    /// A source error ends the run: the input cannot be trusted past it.
    fn fail(&self, source: &str, seq: u64, error: &str, report: &mut StageReport) {
        report.errors += 1;
        self.supervisor.record_fault(Fault {
            stage: "capture".into(),
            seq,
            error: format!("{source}: {error}"),
            action: FaultAction::Stop,
        });
        self.supervisor.request_stop(StopReason::SourceError);
    }
}

struct StageWorker {
    index: usize,
    name: String,
    factory: StageFactory,
    on_error: ErrorPolicy,
    max_restarts: u32,
    supervisor: Supervisor,
    clock: Clock,
    trace: TraceBuffer,
    deadline_ns: u64,
    mask_tap: Option<RecordingTap>,
    /// The last report section a stopped instance gave (a restart must not lose it).
    section: Option<serde_json::Value>,
}

impl StageWorker {
    fn run(
        mut self,
        mut stage: Box<dyn Stage>,
        input: QueueReceiver<Frame>,
        output: Option<QueueSender<Frame>>,
    ) -> StageOutcome {
        let mut report = StageReport::named(&self.name);
        let mut latency = LatencyRecorder::new();
        let mut sink = output.is_none().then(|| SinkMetrics {
            end_to_end: LatencyRecorder::new(),
            after_capture: LatencyRecorder::new(),
            output_interval: LatencyRecorder::new(),
            deadline_misses: 0,
            frames_out: 0,
            last_output_ns: None,
        });
        let index = self.index;
        while let Some(frame) = input.recv() {
            if self.supervisor.safe_stopped() {
                input.count_drained();
                continue;
            }
            // Virtual time follows the frame: this stage starts after the previous one ended.
            self.clock.observe(frame.stamps.get(index - 1).end_ns);
            let seq = frame.seq;
            let start_ns = self.clock.now_ns();
            let newer_waiting = !input.is_empty();
            if is_stale(input.policy(), start_ns, frame.receive_ns, self.deadline_ns, newer_waiting) {
                input.count_stale();
                continue;
            }
            report.frames_in += 1;
            let span = tracing::debug_span!("stage", stage = self.name.as_str(), seq).entered();
            let caught = std::panic::catch_unwind(AssertUnwindSafe(|| stage.process(frame)));
            drop(span);
            let end_ns = self.clock.now_ns();
            latency.record_ns(end_ns - start_ns);
            self.trace.push(TraceEvent { stage: index as u32, seq, start_ns, end_ns });
            // A panic is a stage bug: its state cannot be trusted after unwinding, so it is
            // rebuilt (or the pipeline safe-stops) even where the policy would only drop a frame.
            let (result, panicked) = match caught {
                Ok(result) => (result, false),
                Err(payload) => (Err(StageError::Failed(format!("panicked: {}", panic_message(&payload)))), true),
            };
            let emitted = match result {
                Ok(Some(frame)) => Some(frame),
                Ok(None) => {
                    report.skipped += 1;
                    None
                }
                Err(e) => {
                    let policy = match self.on_error {
                        ErrorPolicy::DropFrame if panicked => ErrorPolicy::RestartStage,
                        policy => policy,
                    };
                    self.on_stage_error(&mut stage, seq, e, policy, &mut report);
                    None
                }
            };
            let Some(mut frame) = emitted else { continue };
            frame.stamps.set_start(index, start_ns);
            frame.stamps.set_end(index, end_ns);
            report.frames_out += 1;
            match (&output, sink.as_mut()) {
                (Some(out), _) => {
                    let supervisor = &self.supervisor;
                    let _ = out.push(frame, || !supervisor.safe_stopped());
                }
                (None, Some(sink)) => self.deliver(frame, end_ns, sink),
                (None, None) => {}
            }
        }
        self.stop(&mut stage);
        report.latency = latency.summary();
        report.trace_dropped = self.trace.dropped;
        StageOutcome { report, section: self.section, trace: self.trace.events, sink, mask_tap: self.mask_tap }
    }

    /// Stops an instance and keeps its report section.
    fn stop(&mut self, stage: &mut Box<dyn Stage>) {
        stage.stop();
        if let Some(section) = stage.report() {
            self.section = Some(section);
        }
    }

    /// The end of the chain: end-to-end latency is output time minus receive time.
    fn deliver(&self, frame: Frame, output_ns: u64, sink: &mut SinkMetrics) {
        let e2e = output_ns.saturating_sub(frame.receive_ns);
        sink.end_to_end.record_ns(e2e);
        sink.after_capture.record_ns(output_ns.saturating_sub(frame.stamps.get(0).end_ns));
        if e2e > self.deadline_ns {
            sink.deadline_misses += 1;
        }
        if let Some(last) = sink.last_output_ns {
            sink.output_interval.record_ns(output_ns.saturating_sub(last));
        }
        sink.last_output_ns = Some(output_ns);
        sink.frames_out += 1;
        if let Some(tap) = &self.mask_tap {
            tap.offer(&frame);
        }
    }

    fn on_stage_error(
        &mut self,
        stage: &mut Box<dyn Stage>,
        seq: u64,
        error: StageError,
        policy: ErrorPolicy,
        report: &mut StageReport,
    ) {
        report.errors += 1;
        let mut action = policy;
        if action == ErrorPolicy::RestartStage {
            if report.restarts >= self.max_restarts {
                action = ErrorPolicy::SafeStop;
            } else {
                self.stop(stage);
                match (self.factory)() {
                    Ok(fresh) => {
                        *stage = fresh;
                        report.restarts += 1;
                    }
                    Err(build_error) => {
                        self.supervisor.record_fault(Fault {
                            stage: self.name.clone(),
                            seq,
                            error: format!("restart failed: {}", error_chain(&build_error)),
                            action: FaultAction::SafeStop,
                        });
                        action = ErrorPolicy::SafeStop;
                    }
                }
            }
        }
        let action = match action {
            ErrorPolicy::DropFrame => FaultAction::DropFrame,
            ErrorPolicy::RestartStage => FaultAction::RestartStage,
            ErrorPolicy::SafeStop => FaultAction::SafeStop,
        };
        self.supervisor.record_fault(Fault { stage: self.name.clone(), seq, error: error_chain(&error), action });
        if action == FaultAction::SafeStop {
            self.supervisor.request_stop(StopReason::SafeStop);
        }
    }
}

/// Whether a frame taken from a queue at `now_ns` is backlog not worth processing: on a live
/// (drop-oldest) edge, a frame already older than the end-to-end deadline while a newer frame
/// waits behind it would only delay that newer frame, and its own output would miss the deadline
/// anyway. The newest frame is always processed, however old: dropping it would leave the stages
/// after a slow one with nothing at all. Blocking edges (replays that must process every frame)
/// never drop.
fn is_stale(policy: QueuePolicy, now_ns: u64, receive_ns: u64, deadline_ns: u64, newer_waiting: bool) -> bool {
    policy == QueuePolicy::DropOldest && newer_waiting && now_ns.saturating_sub(receive_ns) > deadline_ns
}

/// The text of a panic payload (`panic!` with a literal or a formatted message).
fn panic_message(payload: &Box<dyn std::any::Any + Send>) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_live_edges_drop_frames_older_than_the_deadline() {
        let deadline = 80_000_000;
        assert!(!is_stale(QueuePolicy::DropOldest, 180_000_000, 100_000_000, deadline, true), "80 ms old: on time");
        assert!(is_stale(QueuePolicy::DropOldest, 180_000_001, 100_000_000, deadline, true));
        assert!(!is_stale(QueuePolicy::DropOldest, 980_000_000, 100_000_000, deadline, false), "the newest frame runs");
        assert!(!is_stale(QueuePolicy::Block, 980_000_000, 100_000_000, deadline, true), "replays process every frame");
        // A clock that reads earlier than the stamp (another thread's) is not stale.
        assert!(!is_stale(QueuePolicy::DropOldest, 0, 100_000_000, deadline, true));
    }
}

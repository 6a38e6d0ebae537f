//! The run report: JSON for machines (schema in the README), one line on stderr for people, and
//! an optional Chrome/Perfetto trace.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::pipeline::metrics::LatencySummary;
use crate::pipeline::queue::QueuePolicy;
use crate::pipeline::recording::RecordingReport;
use crate::pipeline::supervisor::{Fault, StopReason};

/// Version of the report's JSON layout; bumped on any incompatible change.
pub const REPORT_SCHEMA_VERSION: u32 = 1;

#[derive(Debug, Clone, Default, Serialize)]
pub struct StageReport {
    pub name: String,
    /// Frames handed to the stage (those discarded by a safe-stop are counted by the queue).
    pub frames_in: u64,
    pub frames_out: u64,
    pub skipped: u64,
    pub errors: u64,
    pub restarts: u32,
    /// Time inside the stage per frame.
    pub latency: LatencySummary,
    /// Trace events that did not fit the trace buffer.
    pub trace_dropped: u64,
}

impl StageReport {
    pub fn named(name: &str) -> Self {
        StageReport { name: name.to_string(), ..Default::default() }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct QueueReport {
    /// `producer->consumer`.
    pub name: String,
    pub capacity: usize,
    pub policy: QueuePolicy,
    pub pushed: u64,
    /// Taken out to make room for a newer frame (drop-oldest).
    pub dropped: u64,
    /// Discarded because of a safe-stop, by the producer (gave up waiting) or the consumer.
    pub drained: u64,
    /// Taken by the consumer but discarded unprocessed: already older than the end-to-end
    /// deadline (live edges only).
    pub stale: u64,
    pub max_depth: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct EndToEndReport {
    /// Frames that left the last stage.
    pub frames_out: u64,
    /// Output time − receive time.
    pub latency: LatencySummary,
    /// Output time − end of capture: the processing chain and its queues, without the source's
    /// own work (decoding, copying).
    pub after_capture: LatencySummary,
    /// Time between consecutive outputs.
    pub output_interval: LatencySummary,
    pub deadline_ms: f64,
    pub deadline_misses: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct PoolReport {
    pub buffers: usize,
    /// Times the capture thread found every buffer in flight and had to wait (100 µs each).
    pub exhausted_waits: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub schema_version: u32,
    pub sonoflow_version: String,
    pub source: String,
    /// "monotonic" or "mock".
    pub clock: String,
    pub stop_reason: StopReason,
    pub wall_time_s: f64,
    pub frames_in: u64,
    pub frames_out: u64,
    pub stages: Vec<StageReport>,
    pub end_to_end: EndToEndReport,
    pub queues: Vec<QueueReport>,
    pub pool: PoolReport,
    pub recordings: Vec<RecordingReport>,
    pub fault_count: u64,
    pub faults: Vec<Fault>,
    /// Each stage's own section ([`Stage::report`]) under the stage's name, at the top level of
    /// the JSON.
    ///
    /// [`Stage::report`]: crate::pipeline::stage::Stage::report
    #[serde(flatten)]
    pub sections: BTreeMap<String, serde_json::Value>,
}

/// What a report is assembled from.
pub(crate) struct ReportParts {
    pub source: String,
    pub mock_clock: bool,
    pub stop_reason: StopReason,
    pub wall_time: Duration,
    pub stages: Vec<StageReport>,
    /// None when no frame reached a sink (no stages).
    pub end_to_end: Option<EndToEndReport>,
    pub deadline_ms: f64,
    pub queues: Vec<QueueReport>,
    /// Buffers, and the times capture waited for one.
    pub pool: (usize, u64),
    pub recordings: Vec<RecordingReport>,
    pub faults: Vec<Fault>,
    pub fault_count: u64,
    pub sections: Vec<(String, serde_json::Value)>,
}

impl Report {
    pub(crate) fn assemble(parts: ReportParts) -> Self {
        let ReportParts { stages, deadline_ms, pool: (buffers, exhausted_waits), .. } = parts;
        let end_to_end = parts.end_to_end.unwrap_or(EndToEndReport { deadline_ms, ..Default::default() });
        Report {
            schema_version: REPORT_SCHEMA_VERSION,
            sonoflow_version: env!("CARGO_PKG_VERSION").to_string(),
            source: parts.source,
            clock: if parts.mock_clock { "mock" } else { "monotonic" }.to_string(),
            stop_reason: parts.stop_reason,
            wall_time_s: parts.wall_time.as_secs_f64(),
            frames_in: stages.first().map_or(0, |s| s.frames_out),
            // Without processing stages capture is its own sink: what it passed on is the output.
            frames_out: if stages.len() == 1 { stages[0].frames_out } else { end_to_end.frames_out },
            stages,
            end_to_end,
            queues: parts.queues,
            pool: PoolReport { buffers, exhausted_waits },
            recordings: parts.recordings,
            fault_count: parts.fault_count,
            faults: parts.faults,
            sections: parts.sections.into_iter().collect(),
        }
    }

    /// The section of stage `name`, read back as `T` (None when the stage gave none, or gave
    /// one of another shape).
    pub fn section<T: serde::de::DeserializeOwned>(&self, name: &str) -> Option<T> {
        self.sections.get(name).and_then(|v| serde_json::from_value(v.clone()).ok())
    }

    /// Frames displaced from a full queue or discarded as stale.
    pub fn total_drops(&self) -> u64 {
        self.queues.iter().map(|q| q.dropped + q.stale).sum()
    }

    /// Of [`Self::total_drops`], those discarded as stale.
    pub fn stale_drops(&self) -> u64 {
        self.queues.iter().map(|q| q.stale).sum()
    }

    /// The one-line summary printed on stderr at the end of a run.
    pub fn summary_line(&self) -> String {
        let e = &self.end_to_end.latency;
        format!(
            "sonoflow: {} frames in, {} out, {} dropped ({} stale); end-to-end p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms; \
             {} over the {} ms deadline; {} faults; stopped: {}",
            self.frames_in,
            self.frames_out,
            self.total_drops(),
            self.stale_drops(),
            e.p50_ms,
            e.p99_ms,
            e.max_ms,
            self.end_to_end.deadline_misses,
            self.end_to_end.deadline_ms,
            self.fault_count,
            serde_json::to_value(self.stop_reason).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
        )
    }

    /// A small per-stage latency table for people.
    pub fn stage_table(&self) -> String {
        let mut out = format!(
            "{:<14} {:>8} {:>8} {:>10} {:>10} {:>10} {:>10}\n",
            "stage", "in", "out", "p50 ms", "p99 ms", "max ms", "jitter ms"
        );
        let rows = self.stages.iter().map(|s| (s.name.as_str(), s.frames_in, s.frames_out, &s.latency));
        let e2e = std::iter::once(("end-to-end", self.frames_in, self.frames_out, &self.end_to_end.latency));
        for (name, frames_in, frames_out, l) in rows.chain(e2e) {
            out.push_str(&format!(
                "{:<14} {:>8} {:>8} {:>10.3} {:>10.3} {:>10.3} {:>10.3}\n",
                name, frames_in, frames_out, l.p50_ms, l.p99_ms, l.max_ms, l.jitter_ms
            ));
        }
        out
    }

    pub fn write_json(&self, path: &Path) -> std::io::Result<()> {
        let mut text = serde_json::to_string_pretty(self).map_err(std::io::Error::other)?;
        text.push('\n');
        std::fs::write(path, text)
    }
}

/// One stage's work on one frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct TraceEvent {
    /// Position in the pipeline (0 = capture).
    pub stage: u32,
    pub seq: u64,
    pub start_ns: u64,
    pub end_ns: u64,
}

/// Writes events in the Chrome trace-event format (open in Perfetto or chrome://tracing): one
/// complete event per stage and frame, one track per stage. Events are sorted by time, then
/// stage, so the file is identical for identical runs under the mock clock.
pub fn write_chrome_trace(path: &Path, stage_names: &[String], events: &[TraceEvent]) -> std::io::Result<()> {
    let mut sorted = events.to_vec();
    sorted.sort_by_key(|e| (e.start_ns, e.stage, e.seq));
    let mut out = std::io::BufWriter::new(std::fs::File::create(path)?);
    out.write_all(b"{\"traceEvents\":[\n")?;
    for (i, name) in stage_names.iter().enumerate() {
        let meta = serde_json::json!({"name": "thread_name", "ph": "M", "pid": 1, "tid": i, "args": {"name": name}});
        writeln!(out, "{meta},")?;
    }
    for (i, e) in sorted.iter().enumerate() {
        let name = stage_names.get(e.stage as usize).map_or("?", String::as_str);
        let event = serde_json::json!({
            "name": name, "cat": "stage", "ph": "X", "pid": 1, "tid": e.stage,
            "ts": e.start_ns as f64 / 1e3, "dur": (e.end_ns - e.start_ns) as f64 / 1e3,
            "args": {"seq": e.seq},
        });
        let sep = if i + 1 == sorted.len() { "" } else { "," };
        writeln!(out, "{event}{sep}")?;
    }
    out.write_all(b"],\"displayTimeUnit\":\"ms\"}\n")?;
    out.flush()
}

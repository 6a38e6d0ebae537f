//! The serial link to the haptic device: sends force frames, reads the device's heartbeats, and
//! survives the device being unplugged.
//!
//! A failed write or read closes the port and schedules a reconnect with exponential backoff;
//! meanwhile the loop keeps ticking (frames that cannot be sent are counted) and the pipeline
//! keeps running. Nothing here blocks for longer than the port's write timeout (a fraction of a
//! period); nothing allocates per frame.

use std::io::{self, Read, Write};
use std::time::Duration;

use serde::Serialize;
use serialport::SerialPort;

use super::protocol::{MAX_WIRE_LEN, Message, StatusFrame, StreamDecoder, status};

/// Byte transport to the device (a serial port; a pseudo-terminal in tests).
pub trait Port: Send {
    /// Writes all of `bytes` or fails (a timeout counts as a failure).
    fn write_all_now(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Reads what has already arrived into `buf` without waiting; 0 when nothing has.
    fn read_available(&mut self, buf: &mut [u8]) -> io::Result<usize>;
}

/// Opens the port, again after each loss.
pub trait Connector: Send {
    fn connect(&mut self) -> io::Result<Box<dyn Port>>;
    /// The port's name for messages.
    fn name(&self) -> &str;
}

/// A serial device by path.
pub struct SerialConnector {
    pub path: String,
    pub baud_rate: u32,
    /// Longest a write may wait for room in the device's buffer.
    pub write_timeout: Duration,
}

/// A serial port (or one end of a pseudo-terminal) as a [`Port`].
pub(crate) struct SerialPortLink(pub(crate) serialport::TTYPort);

impl Port for SerialPortLink {
    fn write_all_now(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.0.write(bytes) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::WriteZero, "port accepted no bytes")),
                Ok(n) => bytes = &bytes[n..],
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn read_available(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let waiting = self.0.bytes_to_read().map_err(io::Error::from)? as usize;
        if waiting == 0 {
            return Ok(0);
        }
        let n = waiting.min(buf.len());
        self.0.read(&mut buf[..n])
    }
}

impl Connector for SerialConnector {
    fn connect(&mut self) -> io::Result<Box<dyn Port>> {
        let port = serialport::new(&self.path, self.baud_rate)
            .timeout(self.write_timeout)
            .open_native()
            .map_err(io::Error::from)?;
        Ok(Box::new(SerialPortLink(port)))
    }

    fn name(&self) -> &str {
        &self.path
    }
}

/// Counts the link keeps, reported at the end.
#[derive(Debug, Clone, Default, Serialize)]
pub struct LinkReport {
    pub port: String,
    pub frames_sent: u64,
    /// Frames that could not be sent (port down or write failed).
    pub frames_unsent: u64,
    pub disconnects: u64,
    pub reconnects: u64,
    pub heartbeats: u64,
    /// Times the device's heartbeats stopped for longer than the timeout.
    pub heartbeat_losses: u64,
    /// Device messages rejected (bad CRC, COBS, length, version).
    pub bad_messages: u64,
    /// Status frames with the device's fault or emergency-stop bit set.
    pub device_fault_frames: u64,
    /// The last error the port gave, for the report.
    pub last_error: Option<String>,
}

/// Exponential backoff between reconnect attempts.
#[derive(Debug, Clone, Copy)]
struct Backoff {
    min_ns: u64,
    max_ns: u64,
    current_ns: u64,
}

impl Backoff {
    fn next_delay(&mut self) -> u64 {
        let d = self.current_ns;
        self.current_ns = (self.current_ns * 2).min(self.max_ns);
        d
    }

    fn reset(&mut self) {
        self.current_ns = self.min_ns;
    }
}

pub struct Link {
    connector: Box<dyn Connector>,
    port: Option<Box<dyn Port>>,
    backoff: Backoff,
    next_attempt_ns: u64,
    heartbeat_timeout_ns: u64,
    /// Last heartbeat, or the moment of connecting (the device gets a timeout's grace).
    last_heard_ns: u64,
    silent: bool,
    last_status: Option<StatusFrame>,
    decoder: StreamDecoder,
    report: LinkReport,
}

impl Link {
    /// `heartbeat_timeout_ns` 0 disables the heartbeat check.
    pub fn new(connector: Box<dyn Connector>, heartbeat_timeout_ns: u64, backoff_ns: (u64, u64)) -> Self {
        let report = LinkReport { port: connector.name().to_string(), ..Default::default() };
        Link {
            connector,
            port: None,
            backoff: Backoff { min_ns: backoff_ns.0, max_ns: backoff_ns.1, current_ns: backoff_ns.0 },
            next_attempt_ns: 0,
            heartbeat_timeout_ns,
            last_heard_ns: 0,
            silent: false,
            last_status: None,
            decoder: StreamDecoder::default(),
            report,
        }
    }

    /// Opens the port now; the error names the port. Used once at start-up so a wrong path is
    /// reported before any frame flows.
    pub fn connect_now(&mut self, now_ns: u64) -> io::Result<()> {
        let port = self.connector.connect()?;
        self.port = Some(port);
        self.last_heard_ns = now_ns;
        self.backoff.reset();
        Ok(())
    }

    fn lose_port(&mut self, now_ns: u64, error: &io::Error) {
        if self.port.take().is_some() {
            self.report.disconnects += 1;
            tracing::warn!(port = %self.connector.name(), "haptics port lost: {error}; reconnecting");
        }
        self.report.last_error = Some(error.to_string());
        self.next_attempt_ns = now_ns + self.backoff.next_delay();
    }

    fn try_reconnect(&mut self, now_ns: u64) {
        if self.port.is_some() || now_ns < self.next_attempt_ns {
            return;
        }
        match self.connector.connect() {
            Ok(port) => {
                self.port = Some(port);
                self.report.reconnects += 1;
                self.last_heard_ns = now_ns;
                self.silent = false;
                self.backoff.reset();
                tracing::info!(port = %self.connector.name(), "haptics port reconnected");
            }
            Err(e) => {
                self.report.last_error = Some(e.to_string());
                self.next_attempt_ns = now_ns + self.backoff.next_delay();
            }
        }
    }

    /// Sends one encoded message; false when it could not be sent.
    pub fn send(&mut self, message: &Message, now_ns: u64) -> bool {
        self.try_reconnect(now_ns);
        let Some(port) = self.port.as_mut() else {
            self.report.frames_unsent += 1;
            return false;
        };
        let mut wire = [0u8; MAX_WIRE_LEN];
        let n = message.encode(&mut wire);
        match port.write_all_now(&wire[..n]) {
            Ok(()) => {
                self.report.frames_sent += 1;
                true
            }
            Err(e) => {
                self.report.frames_unsent += 1;
                self.lose_port(now_ns, &e);
                false
            }
        }
    }

    /// Reads and decodes whatever the device sent since the last call.
    pub fn poll(&mut self, now_ns: u64) {
        let mut buf = [0u8; 256];
        loop {
            let Some(port) = self.port.as_mut() else { return };
            match port.read_available(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    let report = &mut self.report;
                    let (last_heard, last_status) = (&mut self.last_heard_ns, &mut self.last_status);
                    self.decoder.feed(&buf[..n], |m| match m {
                        Ok(Message::Status(s)) => {
                            report.heartbeats += 1;
                            report.device_fault_frames += u64::from(s.status & (status::FAULT | status::ESTOP) != 0);
                            *last_heard = now_ns;
                            *last_status = Some(s);
                        }
                        // The device never sends force frames; one here is as wrong as garbage.
                        Ok(Message::Force(_)) | Err(_) => report.bad_messages += 1,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.lose_port(now_ns, &e);
                    return;
                }
            }
        }
        let silent =
            self.heartbeat_timeout_ns > 0 && now_ns.saturating_sub(self.last_heard_ns) > self.heartbeat_timeout_ns;
        if silent && !self.silent {
            self.report.heartbeat_losses += 1;
            tracing::warn!(port = %self.connector.name(), "haptic device heartbeats stopped");
        }
        self.silent = silent;
    }

    /// True while the device's heartbeats are overdue (or the port is down: no heartbeat can come).
    pub fn device_silent(&self) -> bool {
        self.silent || self.port.is_none()
    }

    /// True while the device's latest status reports a fault or emergency stop.
    pub fn device_fault(&self) -> bool {
        self.last_status.is_some_and(|s| s.status & (status::FAULT | status::ESTOP) != 0)
    }

    /// Closes the port (after the caller has sent its zero-force frames).
    pub fn close(&mut self) {
        self.port = None;
    }

    pub fn report(&self) -> LinkReport {
        self.report.clone()
    }
}

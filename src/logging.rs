//! The process's log: `--log-format json` (the default, one JSON object per line) or
//! `text`, on stderr, filtered by `RUST_LOG` (default `info`).
//!
//! A JSON line has the shape of tracing-subscriber's `json()` with flattened events and
//! the current span — `timestamp` (RFC 3339, microseconds, UTC), `level`, the event's
//! fields with its `message`, `target`, then `span` (the current span's fields and
//! `name`) when there is one — but [`JsonLine`] writes it itself. tracing-subscriber's
//! formatter passes every piece through serde_json into an `io::Write` that turns each
//! chunk back into a `str` (UTF-8 validation) and formats the time through
//! `fmt::Display`: 22,000 instructions for the review line, about a fifth of a review's
//! own work. [`JsonLine`] writes the same object straight into the line's buffer
//! (BENCHMARKS.md, "The log line"). tracing-subscriber still does everything else: the
//! filter, the span registry and the per-line buffer; tests check that both formatters
//! give the same objects.
//!
//! Lines reach stderr through a [`LineBuffer`]: info and debug lines wait in memory for
//! at most `--log-flush-interval` (as Kubernetes' own components do with
//! `--log-flush-frequency`), so that a burst of reviews costs one `write` per batch
//! instead of one per line; a warning or an error is written at once, after whatever
//! waited before it, and [`flush`] writes what is left when the process stops.

use std::{
    fmt::{self, Write as _},
    io,
    sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock},
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use tracing::{field::Field, Event, Level, Metadata, Subscriber};
use tracing_log::NormalizeEvent as _;
use tracing_subscriber::{
    field::Visit,
    fmt::{
        format::{JsonFields, Writer},
        FmtContext, FormatEvent, FormatFields, FormattedFields, MakeWriter,
    },
    registry::LookupSpan,
    util::SubscriberInitExt as _,
    EnvFilter,
};

use crate::{cli::LogFormat, json_text::Escaped};

/// The process's log buffer, once [`init`] ran.
static STDERR: OnceLock<LineBuffer<io::Stderr>> = OnceLock::new();

/// Install the process's subscriber: `RUST_LOG` (default `info`), lines on stderr
/// through a [`LineBuffer`] holding info and debug lines for up to `flush_interval`
/// (`Duration::ZERO`: every line written at once).
pub fn init(format: LogFormat, flush_interval: Duration) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let stderr = STDERR
        .get_or_init(|| LineBuffer::new(io::stderr(), flush_interval))
        .clone();
    if !flush_interval.is_zero() {
        let flusher = stderr.clone();
        let spawned = std::thread::Builder::new()
            .name("fdg-log-flush".into())
            .spawn(move || flusher.flush_every(flush_interval));
        if let Err(e) = spawned {
            eprintln!("fleet-delete-guard: cannot start the log's flush thread ({e}); writing every line at once");
            stderr.write_through();
        }
    }
    // A panic's message comes after the lines logged before it (`try_lock`: the panic
    // may have happened while this thread held the buffer).
    let previous = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(stderr) = STDERR.get() {
            if let Ok(mut pending) = stderr.inner.pending.try_lock() {
                let _ = pending.write_out();
            }
        }
        previous(info);
    }));
    // Either also turns `log` records (rustls) into events.
    let installed = match format {
        LogFormat::Json => json_subscriber(stderr, filter).try_init(),
        LogFormat::Text => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(stderr)
            .finish()
            .try_init(),
    };
    if let Err(e) = installed {
        eprintln!("fleet-delete-guard: cannot install the log: {e}");
    }
}

/// Write the lines still waiting (before the process exits).
pub fn flush() {
    if let Some(stderr) = STDERR.get() {
        stderr.flush_pending();
    }
}

/// Lines bound for `W`: info and debug lines collect until the flush thread comes by
/// (every `--log-flush-interval`) or [`LineBuffer::LIMIT`] bytes wait; a warning or an
/// error is written at once, after them. Cheap to clone (`Arc`).
pub struct LineBuffer<W> {
    inner: Arc<Shared<W>>,
}

struct Shared<W> {
    pending: Mutex<Pending<W>>,
    /// Told when a line starts a batch: the flush thread sleeps only while lines wait.
    started: Condvar,
}

impl<W> Clone for LineBuffer<W> {
    fn clone(&self) -> Self {
        LineBuffer {
            inner: self.inner.clone(),
        }
    }
}

struct Pending<W> {
    lines: Vec<u8>,
    out: W,
    /// Every line is written at once (`--log-flush-interval=0`, or no flush thread).
    write_through: bool,
}

impl<W: io::Write> LineBuffer<W> {
    /// Bytes that may wait: about 200 review lines.
    pub const LIMIT: usize = 64 * 1024;

    pub fn new(out: W, flush_interval: Duration) -> Self {
        LineBuffer {
            inner: Arc::new(Shared {
                pending: Mutex::new(Pending {
                    lines: Vec::new(),
                    out,
                    write_through: flush_interval.is_zero(),
                }),
                started: Condvar::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Pending<W>> {
        self.inner.pending.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The flush thread: once a batch has started, wait `interval` and write it; while
    /// nothing waits, sleep without waking.
    fn flush_every(&self, interval: Duration) -> ! {
        loop {
            let mut pending = self.lock();
            while pending.lines.is_empty() {
                pending = self
                    .inner
                    .started
                    .wait(pending)
                    .unwrap_or_else(|e| e.into_inner());
            }
            drop(pending);
            std::thread::sleep(interval);
            self.flush_pending();
        }
    }

    /// Write whatever waits.
    pub fn flush_pending(&self) {
        let _ = self.lock().write_out();
    }

    fn write_through(&self) {
        let mut pending = self.lock();
        pending.write_through = true;
        let _ = pending.write_out();
    }
}

impl<W: io::Write> Pending<W> {
    fn write_out(&mut self) -> io::Result<()> {
        if self.lines.is_empty() {
            return Ok(());
        }
        // Written or not (stderr closed), the lines are not kept: memory stays bounded.
        let written = self.out.write_all(&self.lines);
        self.lines.clear();
        written
    }
}

/// One line on its way into a [`LineBuffer`].
pub struct Line<'a, W> {
    buffer: &'a LineBuffer<W>,
    urgent: bool,
}

impl<W: io::Write> io::Write for Line<'_, W> {
    fn write(&mut self, line: &[u8]) -> io::Result<usize> {
        let mut pending = self.buffer.lock();
        let starts_batch = pending.lines.is_empty();
        pending.lines.extend_from_slice(line);
        if self.urgent || pending.write_through || pending.lines.len() >= LineBuffer::<W>::LIMIT {
            pending.write_out()?;
        } else if starts_batch {
            self.buffer.inner.started.notify_one();
        }
        Ok(line.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl<'a, W: io::Write + 'a> MakeWriter<'a> for LineBuffer<W> {
    type Writer = Line<'a, W>;

    fn make_writer(&'a self) -> Self::Writer {
        Line {
            buffer: self,
            urgent: true,
        }
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        Line {
            buffer: self,
            // WARN and ERROR (tracing orders the verbose levels above).
            urgent: *meta.level() <= Level::WARN,
        }
    }
}

/// The JSON subscriber `serve` installs, writing to `make_writer` (benches and tests
/// pass their own).
pub fn json_subscriber<W>(make_writer: W, filter: EnvFilter) -> impl Subscriber + Send + Sync
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(make_writer)
        // Span fields are kept as JSON objects, which the line embeds as they are.
        .fmt_fields(JsonFields::new())
        .event_format(JsonLine)
        .finish()
}

/// One JSON object per event; see the module documentation.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLine;

impl<S, N> FormatEvent<S, N> for JsonLine
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        // `log` records carry their own target in fields; this is the record's.
        let normalized = event.normalized_metadata();
        let meta = normalized.as_ref().unwrap_or_else(|| event.metadata());
        let w = &mut writer;
        w.write_str("{\"timestamp\":\"")?;
        write_timestamp(w, SystemTime::now())?;
        w.write_str("\",\"level\":\"")?;
        w.write_str(level_name(meta.level()))?;
        w.write_char('"')?;
        let mut fields = Fields {
            w: &mut *w,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        w.write_str(",\"target\":")?;
        write_string(w, meta.target())?;
        let span = event
            .parent()
            .and_then(|id| ctx.span(id))
            .or_else(|| ctx.lookup_current());
        if let Some(span) = span {
            w.write_str(",\"span\":{")?;
            let extensions = span.extensions();
            let stored = extensions
                .get::<FormattedFields<N>>()
                .map(|f| f.fields.as_str())
                .unwrap_or_default();
            // JsonFields stores `{"k":v,…}` (or nothing for a span without fields).
            if let Some(inner) = stored
                .strip_prefix('{')
                .and_then(|s| s.strip_suffix('}'))
                .filter(|s| !s.is_empty())
            {
                w.write_str(inner)?;
                w.write_char(',')?;
            }
            w.write_str("\"name\":")?;
            write_string(w, span.name())?;
            w.write_char('}')?;
        }
        w.write_str("}\n")
    }
}

fn level_name(level: &Level) -> &'static str {
    match *level {
        Level::TRACE => "TRACE",
        Level::DEBUG => "DEBUG",
        Level::INFO => "INFO",
        Level::WARN => "WARN",
        Level::ERROR => "ERROR",
    }
}

/// An event's fields as `,"name":value` pairs, valued as tracing-subscriber's JSON
/// does: strings and `Debug`/`Display` values as JSON strings, integers and booleans as
/// themselves, floats as serde_json writes them (`null` when not finite).
struct Fields<'a, 'w> {
    w: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Fields<'_, '_> {
    fn entry(&mut self, field: &Field, value: impl FnOnce(&mut Writer<'_>) -> fmt::Result) {
        if self.result.is_ok() {
            self.result = (|| {
                self.w.write_char(',')?;
                write_string(self.w, field.name())?;
                self.w.write_char(':')?;
                value(self.w)
            })();
        }
    }
}

impl Visit for Fields<'_, '_> {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.entry(field, |w| write_string(w, value));
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        self.entry(field, |w| {
            w.write_char('"')?;
            write!(Escaped(&mut *w), "{value:?}")?;
            w.write_char('"')
        });
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.entry(field, |w| write!(w, "{value}"));
    }

    fn record_i64(&mut self, field: &Field, value: i64) {
        self.entry(field, |w| write!(w, "{value}"));
    }

    fn record_bool(&mut self, field: &Field, value: bool) {
        self.entry(field, |w| w.write_str(if value { "true" } else { "false" }));
    }

    fn record_f64(&mut self, field: &Field, value: f64) {
        // serde_json's shortest round-trip form (`60.0`, `0.5`, `1e21`), as before.
        self.entry(field, |w| match serde_json::to_string(&value) {
            Ok(number) => w.write_str(&number),
            Err(_) => w.write_str("null"),
        });
    }
}

/// `s` as a JSON string.
fn write_string(w: &mut impl fmt::Write, s: &str) -> fmt::Result {
    w.write_char('"')?;
    Escaped(&mut *w).write_str(s)?;
    w.write_char('"')
}

/// `2026-12-07T01:27:42.193879Z`: UTC, microseconds, as tracing-subscriber's
/// `SystemTime` writes it (a clock before 1970 is written as 1970).
fn write_timestamp(w: &mut impl fmt::Write, now: SystemTime) -> fmt::Result {
    let since = now.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let (year, month, day) = civil_from_days(secs / 86_400);
    let of_day = secs % 86_400;
    write!(
        w,
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:06}Z",
        of_day / 3600,
        of_day / 60 % 60,
        of_day % 60,
        since.subsec_micros()
    )
}

/// Year, month and day of the `days`th day after 1970-01-01 (Howard Hinnant's
/// `civil_from_days`, for days on or after the epoch).
fn civil_from_days(days: u64) -> (u64, u64, u64) {
    let z = days + 719_468;
    let era = z / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + u64::from(month <= 2);
    (year, month, day)
}

#[cfg(test)]
mod tests {
    use std::{
        io,
        sync::{Arc, Mutex},
        time::Duration,
    };

    use super::*;

    /// Lines written by a subscriber, for comparison.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().expect("lock").extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Captured {
            self.clone()
        }
    }

    impl Captured {
        fn lines(&self) -> Vec<serde_json::Value> {
            let bytes = self.0.lock().expect("lock").clone();
            String::from_utf8(bytes)
                .expect("UTF-8")
                .lines()
                .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
                .collect()
        }
    }

    /// Events of every kind of value, in and out of spans.
    fn emit() {
        let latency = Duration::from_micros(42);
        tracing::info!(
            uid = "705ab4f5-6393-11e8-b7cc-42010a800002",
            user = "system:serviceaccount:cattle-fleet-system:fleet-agent",
            operation = "DELETE",
            warnings = 2usize,
            dry_run = false,
            latency_us = latency.as_micros() as u64,
            "review answered"
        );
        let quote = "a \"quoted\" \\ back\nslash\ttab\u{1}\u{7f} é ✓";
        tracing::warn!(detail = %quote, offset = -3i64, fraction = 0.5, window_s = 60.0, "odd {}", "message");
        tracing::error!(error = ?std::io::Error::other("boom"), nan = f64::NAN, "failed");
        let span = tracing::info_span!("review", uid = "u-1", attempt = 2u64);
        let _in = span.enter();
        tracing::info!(inside = true, "in a span");
        let empty = tracing::info_span!("bare");
        let _in_bare = empty.enter();
        tracing::debug!("in a span without fields");
    }

    #[test]
    fn lines_equal_tracing_subscribers_json_but_for_the_time() {
        let ours = Captured::default();
        tracing::subscriber::with_default(
            json_subscriber(ours.clone(), EnvFilter::new("debug")),
            emit,
        );
        let theirs = Captured::default();
        tracing::subscriber::with_default(
            tracing_subscriber::fmt()
                .with_env_filter(EnvFilter::new("debug"))
                .with_writer(theirs.clone())
                .json()
                .flatten_event(true)
                .with_current_span(true)
                .with_span_list(false)
                .finish(),
            emit,
        );
        let (mut ours, mut theirs) = (ours.lines(), theirs.lines());
        assert_eq!(ours.len(), 5, "{ours:#?}");
        assert_eq!(ours.len(), theirs.len());
        for (a, b) in ours.iter_mut().zip(theirs.iter_mut()) {
            let (ta, tb) = (a["timestamp"].take(), b["timestamp"].take());
            let (ta, tb) = (ta.as_str().expect("ts"), tb.as_str().expect("ts"));
            assert_eq!(ta.len(), tb.len(), "{ta} vs {tb}");
            let (ta, tb) = (
                ta.parse::<jiff::Timestamp>().expect("RFC 3339"),
                tb.parse::<jiff::Timestamp>().expect("RFC 3339"),
            );
            assert!(
                tb.duration_since(ta).unsigned_abs() < Duration::from_secs(5),
                "{ta} vs {tb}"
            );
            assert_eq!(a, b);
        }
        assert_eq!(ours[3]["span"]["uid"], "u-1", "{:#?}", ours[3]);
        assert_eq!(ours[4]["span"], serde_json::json!({"name": "bare"}));
        assert_eq!(ours[1]["window_s"], serde_json::json!(60.0));
        assert!(ours[2]["nan"].is_null());
    }

    /// A `LineBuffer`'s output: what reached it, write by write.
    #[derive(Clone, Default)]
    struct Writes(Arc<Mutex<Vec<Vec<u8>>>>, Arc<std::sync::atomic::AtomicBool>);

    impl io::Write for Writes {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.1.load(std::sync::atomic::Ordering::Relaxed) {
                return Err(io::Error::new(io::ErrorKind::BrokenPipe, "stderr closed"));
            }
            self.0.lock().expect("lock").push(buf.to_vec());
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Writes {
        fn taken(&self) -> Vec<String> {
            let writes = std::mem::take(&mut *self.0.lock().expect("lock"));
            writes
                .into_iter()
                .map(|w| String::from_utf8(w).expect("UTF-8"))
                .collect()
        }
    }

    fn line<W: io::Write>(buffer: &LineBuffer<W>, level: Level, text: &str) {
        let mut writer = if level == Level::INFO {
            buffer.make_writer_for(&INFO_META)
        } else {
            buffer.make_writer_for(&WARN_META)
        };
        io::Write::write_all(&mut writer, text.as_bytes()).expect("line");
    }

    struct Callsite;
    impl tracing::callsite::Callsite for Callsite {
        fn set_interest(&self, _: tracing::subscriber::Interest) {}
        fn metadata(&self) -> &Metadata<'_> {
            &INFO_META
        }
    }
    static CALLSITE: Callsite = Callsite;
    static INFO_META: Metadata<'static> = tracing::metadata! {
        name: "info", target: "t", level: Level::INFO, fields: &[],
        callsite: &CALLSITE, kind: tracing::metadata::Kind::EVENT
    };
    static WARN_META: Metadata<'static> = tracing::metadata! {
        name: "warn", target: "t", level: Level::WARN, fields: &[],
        callsite: &CALLSITE, kind: tracing::metadata::Kind::EVENT
    };

    #[test]
    fn info_lines_wait_for_the_flush_and_a_warning_takes_them_along_in_order() {
        let out = Writes::default();
        let buffer = LineBuffer::new(out.clone(), Duration::from_secs(3600));
        line(&buffer, Level::INFO, "a\n");
        line(&buffer, Level::INFO, "b\n");
        assert!(out.taken().is_empty(), "info lines wait");
        buffer.flush_pending();
        assert_eq!(out.taken(), ["a\nb\n"], "one write for both");
        buffer.flush_pending();
        assert!(out.taken().is_empty(), "nothing to write, no write");

        line(&buffer, Level::INFO, "c\n");
        line(&buffer, Level::WARN, "W\n");
        assert_eq!(
            out.taken(),
            ["c\nW\n"],
            "the warning at once, after what waited"
        );
    }

    #[test]
    fn a_full_buffer_is_written_and_a_zero_interval_writes_every_line() {
        let out = Writes::default();
        let buffer = LineBuffer::new(out.clone(), Duration::from_secs(3600));
        let long = "x".repeat(1000) + "\n";
        let lines = LineBuffer::<Writes>::LIMIT / long.len() + 1;
        for _ in 0..lines {
            line(&buffer, Level::INFO, &long);
        }
        let writes = out.taken();
        assert_eq!(writes.len(), 1, "written once, when full");
        assert_eq!(writes[0].len(), lines * long.len());

        let every = LineBuffer::new(out.clone(), Duration::ZERO);
        line(&every, Level::INFO, "a\n");
        line(&every, Level::INFO, "b\n");
        assert_eq!(out.taken(), ["a\n", "b\n"]);

        buffer.write_through();
        line(&buffer, Level::INFO, "c\n");
        assert_eq!(out.taken(), ["c\n"], "no flush thread: written at once");
    }

    #[test]
    fn the_flush_thread_writes_a_batch_once_it_has_started() {
        let out = Writes::default();
        let buffer = LineBuffer::new(out.clone(), Duration::from_millis(20));
        let flusher = buffer.clone();
        std::thread::spawn(move || flusher.flush_every(Duration::from_millis(20)));
        for round in 0..2 {
            line(&buffer, Level::INFO, "a\n");
            line(&buffer, Level::INFO, "b\n");
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            let mut seen = Vec::new();
            while seen.concat() != "a\nb\n" {
                assert!(
                    std::time::Instant::now() < deadline,
                    "round {round}: {seen:?}"
                );
                std::thread::sleep(Duration::from_millis(5));
                seen.extend(out.taken());
            }
        }
    }

    #[test]
    fn lines_that_cannot_be_written_are_dropped_not_kept() {
        let out = Writes::default();
        let buffer = LineBuffer::new(out.clone(), Duration::from_secs(3600));
        out.1.store(true, std::sync::atomic::Ordering::Relaxed);
        line(&buffer, Level::INFO, "lost\n");
        let mut warn = buffer.make_writer_for(&WARN_META);
        let err = io::Write::write_all(&mut warn, b"W\n").expect_err("stderr closed");
        assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
        assert!(buffer.lock().lines.is_empty(), "memory stays bounded");
        out.1.store(false, std::sync::atomic::Ordering::Relaxed);
        line(&buffer, Level::WARN, "after\n");
        assert_eq!(out.taken(), ["after\n"]);
    }

    #[test]
    fn timestamps_are_rfc3339_utc_with_microseconds() {
        for secs in [
            0u64,
            59,
            86_399,
            86_400,
            951_782_400,     // 2000-02-29
            1_709_164_800,   // 2024-02-29
            1_798_675_200,   // 2026-12-31
            4_102_444_800,   // 2100-01-01
            253_402_207_199, // 9999-12-30, the last second jiff formats
        ] {
            for micros in [0u32, 7, 999_999] {
                let t = UNIX_EPOCH + Duration::new(secs, micros * 1000);
                let mut ours = String::new();
                write_timestamp(&mut ours, t).expect("write");
                let want = jiff::Timestamp::try_from(t).expect("in range");
                let want = format!("{want:.6}");
                assert_eq!(ours, want, "{secs}s {micros}µs");
            }
        }
        let mut before = String::new();
        write_timestamp(&mut before, UNIX_EPOCH - Duration::from_secs(1)).expect("write");
        assert_eq!(before, "1970-01-01T00:00:00.000000Z");
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let all: String = (0u8..=0x7f).map(char::from).chain("é✓😀".chars()).collect();
        let mut ours = String::new();
        write_string(&mut ours, &all).expect("write");
        assert_eq!(ours, serde_json::to_string(&all).expect("json"));
    }
}

//! The access log: one line per connection when it ends, as logfmt-like text or JSON.
//!
//! A connection task formats its own line ([`format`]) and hands it to a writer thread through a
//! bounded queue ([`AccessLog`]). The connection never waits for the log: when the queue is full
//! (a stalled disk, a stdout nobody reads), the line is dropped and counted, because a gateway that
//! stops relaying to keep its log complete would turn a logging problem into an outage. The
//! writer buffers lines and flushes whenever its queue runs empty, so a quiet gateway's log is
//! current and a busy one's is written in large blocks.
//!
//! Every value a client controls (SNI, ALPN) is escaped: a line cannot be split, and a field
//! cannot be forged, whatever the client sent.

use std::fmt::Write as _;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, TrySendError};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

/// The line format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// `key=value` pairs in a fixed order, `-` for an absent value, anything outside a safe set
    /// of characters quoted and escaped.
    Text,
    /// One JSON object per line, the same keys, numbers as numbers and absent values as null.
    Json,
}

/// What one line says. Borrowed: built by the connection task when it ends.
#[derive(Clone, Copy, Debug)]
pub struct Record<'a> {
    /// Accept time.
    pub start: SystemTime,
    /// The client's address.
    pub client: SocketAddr,
    /// The gateway socket that accepted.
    pub local: SocketAddr,
    /// The listener that took the connection: namespace/gateway/listener.
    pub listener: Option<&'a str>,
    /// The server name the client asked for.
    pub sni: Option<&'a str>,
    /// Protocols the client offered, in order.
    pub alpn: &'a [Vec<u8>],
    /// The route rule chosen: namespace/name#rule.
    pub route: Option<&'a str>,
    /// The backend chosen.
    pub backend: Option<&'a str>,
    /// The backend endpoint connected to.
    pub endpoint: Option<SocketAddr>,
    /// Bytes received from the client.
    pub bytes_from_client: u64,
    /// Bytes sent to the client.
    pub bytes_to_client: u64,
    /// Accept to complete ClientHello.
    pub hello: Option<Duration>,
    /// Backend connect time.
    pub connect: Option<Duration>,
    /// Accept to end.
    pub total: Duration,
    /// Why it ended, e.g. "completed", "no_route", "idle_timeout", "limit_listener".
    pub reason: &'static str,
    /// Who ended it: "client", "backend", "gateway".
    pub ended_by: &'static str,
}

/// Appends one line for `rec`, including the final `'\n'`, to `out`.
pub fn format(rec: &Record<'_>, format: Format, out: &mut String) {
    let time = rfc3339_millis(rec.start);
    let alpn = (!rec.alpn.is_empty()).then(|| alpn_list(rec.alpn));
    let fields: [(&str, Value<'_>); 16] = [
        ("time", Value::Str(Some(&time))),
        ("client", Value::Display(Some(&rec.client))),
        ("local", Value::Display(Some(&rec.local))),
        ("listener", Value::Str(rec.listener)),
        ("sni", Value::Str(rec.sni)),
        ("alpn", Value::Alpn(alpn.as_deref())),
        ("route", Value::Str(rec.route)),
        ("backend", Value::Str(rec.backend)),
        ("endpoint", Value::Display(rec.endpoint.as_ref().map(|e| e as &dyn std::fmt::Display))),
        ("bytes_in", Value::Count(rec.bytes_from_client)),
        ("bytes_out", Value::Count(rec.bytes_to_client)),
        ("hello_ms", Value::Millis(rec.hello)),
        ("connect_ms", Value::Millis(rec.connect)),
        ("duration_ms", Value::Millis(Some(rec.total))),
        ("reason", Value::Str(Some(rec.reason))),
        ("ended_by", Value::Str(Some(rec.ended_by))),
    ];
    match format {
        Format::Text => {
            for (i, (key, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(' ');
                }
                out.push_str(key);
                out.push('=');
                value.text(out);
            }
        }
        Format::Json => {
            out.push('{');
            for (i, (key, value)) in fields.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push('"');
                out.push_str(key);
                out.push_str("\":");
                value.json(out);
            }
            out.push('}');
        }
    }
    out.push('\n');
}

/// One field's value, rendered per format.
enum Value<'a> {
    Str(Option<&'a str>),
    Display(Option<&'a dyn std::fmt::Display>),
    /// Protocols, each already made printable by [`alpn_protocol`].
    Alpn(Option<&'a [String]>),
    Count(u64),
    Millis(Option<Duration>),
}

impl Value<'_> {
    fn text(&self, out: &mut String) {
        match self {
            Value::Str(Some(s)) => text_value(s, out),
            Value::Display(Some(d)) => text_value(&d.to_string(), out),
            Value::Alpn(Some(list)) => text_value(&list.join(","), out),
            Value::Count(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Millis(Some(d)) => {
                let _ = write!(out, "{}", millis(*d));
            }
            Value::Str(None) | Value::Display(None) | Value::Alpn(None) | Value::Millis(None) => {
                out.push('-')
            }
        }
    }

    fn json(&self, out: &mut String) {
        match self {
            Value::Str(Some(s)) => json_string(s, out),
            Value::Display(Some(d)) => json_string(&d.to_string(), out),
            Value::Alpn(Some(list)) => {
                out.push('[');
                for (i, p) in list.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    json_string(p, out);
                }
                out.push(']');
            }
            Value::Count(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Millis(Some(d)) => {
                let _ = write!(out, "{}", millis(*d));
            }
            Value::Str(None) | Value::Display(None) | Value::Alpn(None) | Value::Millis(None) => {
                out.push_str("null")
            }
        }
    }
}

/// Milliseconds with microsecond resolution: `0.812`, `12.5`, `3`. The shortest decimal that
/// reads back as the same number, so text and JSON show the same digits.
fn millis(d: Duration) -> f64 {
    // Whole microseconds first, so the division does not print float noise.
    (d.as_micros().min(u128::from(u64::MAX)) as u64) as f64 / 1000.0
}

/// Characters that need no quoting in a text value.
fn plain(c: char) -> bool {
    c.is_ascii_alphanumeric()
        || matches!(c, '.' | '_' | ':' | '/' | '#' | '-' | ',' | '*' | '[' | ']')
}

/// A text value as is when every character is plain (and it is neither empty nor `-`, which
/// means absent); otherwise in double quotes, with `"` and `\` escaped and anything outside
/// printable ASCII as `\u{..}`, so no value can contain a line break or an unquoted space.
fn text_value(s: &str, out: &mut String) {
    if !s.is_empty() && s != "-" && s.chars().all(plain) {
        out.push_str(s);
        return;
    }
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            ' '..='~' => out.push(c),
            _ => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    out.push('"');
}

fn json_string(s: &str, out: &mut String) {
    // Serialising a str cannot fail.
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "null".into()));
}

fn alpn_list(alpn: &[Vec<u8>]) -> Vec<String> {
    alpn.iter().map(|p| alpn_protocol(p)).collect()
}

/// An ALPN protocol ID as printable ASCII: bytes other than visible ASCII, and `%` and `,`
/// (which would be ambiguous in a comma-separated list), as `%XX`. Registered IDs (`h2`,
/// `http/1.1`, `acme-tls/1`) come out unchanged.
fn alpn_protocol(p: &[u8]) -> String {
    let mut s = String::with_capacity(p.len());
    for &b in p {
        if (0x21..=0x7e).contains(&b) && b != b'%' && b != b',' {
            s.push(char::from(b));
        } else {
            let _ = write!(s, "%{b:02X}");
        }
    }
    s
}

/// RFC 3339 UTC with milliseconds: `2026-12-01T10:00:00.123Z`. Times before 1970 show as the
/// epoch.
pub fn rfc3339_millis(t: SystemTime) -> String {
    rfc3339(t, true)
}

/// RFC 3339 UTC, with milliseconds or whole seconds (`2026-12-01T10:00:00Z`, as Kubernetes
/// writes `lastTransitionTime`). Times before 1970 show as the epoch.
pub fn rfc3339(t: SystemTime, millis: bool) -> String {
    let since = t.duration_since(SystemTime::UNIX_EPOCH).unwrap_or_default();
    let secs = since.as_secs();
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    if millis {
        let ms = since.subsec_millis();
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}.{ms:03}Z")
    } else {
        format!("{year:04}-{month:02}-{day:02}T{h:02}:{m:02}:{s:02}Z")
    }
}

/// The writer's buffer: lines are written in blocks of up to this many bytes.
const WRITE_BUFFER: usize = 64 * 1024;

/// Lines queued by default before new ones are dropped.
pub const DEFAULT_QUEUE: usize = 64 * 1024;

/// The access log: formats on the caller's thread, writes on its own. Cheap to clone; the writer
/// thread ends when the last clone is dropped, after writing what is queued.
#[derive(Clone, Debug)]
pub struct AccessLog {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    format: Format,
    tx: SyncSender<String>,
    /// Lines accepted into the queue.
    queued: AtomicU64,
    progress: Arc<Progress>,
}

/// What the writer reports back.
#[derive(Debug, Default)]
struct Progress {
    /// Lines dropped: the queue was full, or writing them failed.
    dropped: AtomicU64,
    /// Lines taken from the queue and flushed (written or dropped), for [`AccessLog::flush`].
    done: Mutex<u64>,
    done_changed: Condvar,
    /// A write error was reported already; later ones are only counted.
    failed: AtomicBool,
}

impl AccessLog {
    /// Starts a writer thread that owns `out` (stdout or a file), buffers lines and flushes when
    /// its queue is empty; the queue holds [`DEFAULT_QUEUE`] lines: when full, lines are dropped
    /// and counted, never blocking a connection.
    pub fn start(format: Format, out: Box<dyn Write + Send>) -> AccessLog {
        AccessLog::start_with_queue(format, out, DEFAULT_QUEUE)
    }

    /// As [`AccessLog::start`], with a queue of `capacity` lines (at least 1).
    pub fn start_with_queue(
        format: Format,
        out: Box<dyn Write + Send>,
        capacity: usize,
    ) -> AccessLog {
        let (tx, rx) = std::sync::mpsc::sync_channel(capacity.max(1));
        let progress = Arc::new(Progress::default());
        let writer_progress = Arc::clone(&progress);
        let spawned = std::thread::Builder::new()
            .name("sniway-access-log".into())
            .spawn(move || write_lines(rx, out, &writer_progress));
        if let Err(e) = spawned {
            // The receiver is gone with the closure: every line will be counted as dropped.
            tracing::error!(error = %e, "cannot start the access log writer; lines are dropped");
        }
        AccessLog { inner: Arc::new(Inner { format, tx, queued: AtomicU64::new(0), progress }) }
    }

    /// Formats `rec` and queues the line, or drops and counts it when the queue is full.
    pub fn log(&self, rec: &Record<'_>) {
        let mut line = String::with_capacity(320);
        format(rec, self.inner.format, &mut line);
        match self.inner.tx.try_send(line) {
            Ok(()) => {
                self.inner.queued.fetch_add(1, Ordering::Release);
            }
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => {
                self.inner.progress.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
    }

    /// Lines dropped so far: queue full, or a failed write.
    pub fn dropped(&self) -> u64 {
        self.inner.progress.dropped.load(Ordering::Relaxed)
    }

    /// Waits, at most `timeout`, until every line queued before the call is written and flushed,
    /// for shutdown. Returns whether it was.
    pub fn flush(&self, timeout: Duration) -> bool {
        let target = self.inner.queued.load(Ordering::Acquire);
        let deadline = Instant::now() + timeout;
        let p = &self.inner.progress;
        let mut done = p.done.lock().unwrap_or_else(|e| e.into_inner());
        while *done < target {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                tracing::warn!(pending = target - *done, "access log not flushed in time");
                return false;
            }
            done = p.done_changed.wait_timeout(done, left).unwrap_or_else(|e| e.into_inner()).0;
        }
        true
    }
}

/// The writer thread: takes lines as they come, flushes whenever the queue is empty, ends when
/// every [`AccessLog`] is gone.
fn write_lines(rx: Receiver<String>, out: Box<dyn Write + Send>, progress: &Progress) {
    let mut out = std::io::BufWriter::with_capacity(WRITE_BUFFER, out);
    let mut taken: u64 = 0;
    let mut unflushed: u64 = 0;
    while let Ok(line) = rx.recv() {
        let mut next = Some(line);
        while let Some(line) = next.take() {
            taken += 1;
            unflushed += 1;
            if let Err(e) = out.write_all(line.as_bytes()) {
                report(progress, &e, 1);
                unflushed -= 1;
            }
            match rx.try_recv() {
                Ok(l) => next = Some(l),
                Err(TryRecvError::Empty | TryRecvError::Disconnected) => {}
            }
        }
        if let Err(e) = out.flush() {
            // What was buffered is lost, or partly written; count it all, and discard it so that
            // a writer that recovers does not write lines already counted as dropped.
            report(progress, &e, unflushed);
            let (inner, _lost) = out.into_parts();
            out = std::io::BufWriter::with_capacity(WRITE_BUFFER, inner);
        }
        unflushed = 0;
        *progress.done.lock().unwrap_or_else(|e| e.into_inner()) = taken;
        progress.done_changed.notify_all();
    }
}

fn report(progress: &Progress, e: &std::io::Error, lines: u64) {
    progress.dropped.fetch_add(lines, Ordering::Relaxed);
    if !progress.failed.swap(true, Ordering::Relaxed) {
        tracing::error!(error = %e, "writing the access log failed; lines are dropped and counted");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BOUND: Duration = Duration::from_secs(10);

    fn listener() -> String {
        "ns/gw/l".into()
    }

    fn route() -> String {
        "ns/r#0".into()
    }

    /// 2026-12-01T10:00:00.123Z
    fn t0() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_millis(1_796_119_200_123)
    }

    fn full<'a>(l: &'a str, r: &'a str, alpn: &'a [Vec<u8>]) -> Record<'a> {
        Record {
            start: t0(),
            client: "1.2.3.4:5555".parse().unwrap(),
            local: "10.0.0.9:443".parse().unwrap(),
            listener: Some(l),
            sni: Some("a.example.com"),
            alpn,
            route: Some(r),
            backend: Some("ns/svc:443"),
            endpoint: Some("10.0.0.1:443".parse().unwrap()),
            bytes_from_client: 517,
            bytes_to_client: 1234,
            hello: Some(Duration::from_micros(800)),
            connect: Some(Duration::from_micros(312)),
            total: Duration::from_micros(12_500),
            reason: "completed",
            ended_by: "client",
        }
    }

    fn refused() -> Record<'static> {
        Record {
            start: t0(),
            client: "[2001:db8::1]:40000".parse().unwrap(),
            local: "[::]:443".parse().unwrap(),
            listener: None,
            sni: Some("unknown.example.com"),
            alpn: &[],
            route: None,
            backend: None,
            endpoint: None,
            bytes_from_client: 517,
            bytes_to_client: 0,
            hello: Some(Duration::from_millis(2)),
            connect: None,
            total: Duration::from_millis(2),
            reason: "no_listener",
            ended_by: "gateway",
        }
    }

    fn line(rec: &Record<'_>, f: Format) -> String {
        let mut s = String::new();
        format(rec, f, &mut s);
        s
    }

    #[test]
    fn a_full_record_as_text_has_every_key_in_order() {
        let (l, r) = (listener(), route());
        let alpn = [b"h2".to_vec(), b"http/1.1".to_vec()];
        assert_eq!(
            line(&full(&l, &r, &alpn), Format::Text),
            "time=2026-12-01T10:00:00.123Z client=1.2.3.4:5555 local=10.0.0.9:443 \
             listener=ns/gw/l sni=a.example.com alpn=h2,http/1.1 route=ns/r#0 \
             backend=ns/svc:443 endpoint=10.0.0.1:443 bytes_in=517 bytes_out=1234 hello_ms=0.8 \
             connect_ms=0.312 duration_ms=12.5 reason=completed ended_by=client\n"
        );
    }

    #[test]
    fn a_refused_record_as_text_shows_dashes_for_what_is_absent() {
        assert_eq!(
            line(&refused(), Format::Text),
            "time=2026-12-01T10:00:00.123Z client=[2001:db8::1]:40000 local=[::]:443 listener=- \
             sni=unknown.example.com alpn=- route=- backend=- endpoint=- bytes_in=517 \
             bytes_out=0 hello_ms=2 connect_ms=- duration_ms=2 reason=no_listener \
             ended_by=gateway\n"
        );
    }

    #[test]
    fn a_full_record_as_json_is_one_object_with_numbers_as_numbers() {
        let (l, r) = (listener(), route());
        let alpn = [b"h2".to_vec(), b"http/1.1".to_vec()];
        let text = line(&full(&l, &r, &alpn), Format::Json);
        assert!(text.ends_with("}\n") && text.matches('\n').count() == 1, "{text}");
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            v,
            serde_json::json!({
                "time": "2026-12-01T10:00:00.123Z", "client": "1.2.3.4:5555",
                "local": "10.0.0.9:443", "listener": "ns/gw/l", "sni": "a.example.com",
                "alpn": ["h2", "http/1.1"], "route": "ns/r#0", "backend": "ns/svc:443",
                "endpoint": "10.0.0.1:443", "bytes_in": 517, "bytes_out": 1234,
                "hello_ms": 0.8, "connect_ms": 0.312, "duration_ms": 12.5,
                "reason": "completed", "ended_by": "client"
            })
        );
        // The keys are in the same order as the text format's.
        assert!(
            text.starts_with("{\"time\":")
                && text.contains("\"reason\":\"completed\",\"ended_by\"")
        );
    }

    #[test]
    fn a_refused_record_as_json_has_nulls_for_what_is_absent() {
        let v: serde_json::Value = serde_json::from_str(&line(&refused(), Format::Json)).unwrap();
        for key in ["listener", "alpn", "route", "backend", "endpoint", "connect_ms"] {
            assert_eq!(v[key], serde_json::Value::Null, "{key}");
        }
        assert_eq!(v["client"], "[2001:db8::1]:40000");
        assert_eq!(v["hello_ms"], 2);
        assert_eq!(v["reason"], "no_listener");
    }

    #[test]
    fn hostile_values_cannot_break_the_line_or_forge_a_field() {
        let mut rec = refused();
        rec.sni = Some("a.example.com\nreason=completed x=\"y\\");
        let hostile = [b"h2,evil".to_vec(), b"\n%\x00 ".to_vec()];
        rec.alpn = &hostile;
        let text = line(&rec, Format::Text);
        assert_eq!(text.matches('\n').count(), 1, "{text}");
        assert!(
            text.contains(r#" sni="a.example.com\u{a}reason=completed x=\"y\\" alpn="#),
            "{text}"
        );
        // A comma inside a protocol cannot pass for a separator.
        assert!(text.contains(r#" alpn="h2%2Cevil,%0A%25%00%20" "#), "{text}");
        assert!(!text.contains(" reason=completed"), "{text}");

        let json = line(&rec, Format::Json);
        assert_eq!(json.matches('\n').count(), 1, "{json}");
        let v: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(v["sni"], "a.example.com\nreason=completed x=\"y\\");
        assert_eq!(v["alpn"], serde_json::json!(["h2%2Cevil", "%0A%25%00%20"]));
    }

    #[test]
    fn text_values_that_look_absent_or_empty_are_quoted() {
        let mut out = String::new();
        text_value("-", &mut out);
        out.push(' ');
        text_value("", &mut out);
        out.push(' ');
        text_value("é", &mut out);
        assert_eq!(out, r#""-" "" "\u{e9}""#);
    }

    #[test]
    fn times_are_rfc3339_utc_with_milliseconds() {
        assert_eq!(rfc3339_millis(SystemTime::UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let leap = SystemTime::UNIX_EPOCH + Duration::from_millis(951_782_400_007);
        assert_eq!(rfc3339_millis(leap), "2000-02-29T00:00:00.007Z");
        assert_eq!(rfc3339_millis(t0()), "2026-12-01T10:00:00.123Z");
        let before = SystemTime::UNIX_EPOCH - Duration::from_secs(1);
        assert_eq!(rfc3339_millis(before), "1970-01-01T00:00:00.000Z");
    }

    /// Collects what the writer writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Sink {
        fn text(&self) -> String {
            String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
        }
    }

    #[test]
    fn flush_writes_every_line_logged_before_it() {
        let sink = Sink::default();
        let log = AccessLog::start(Format::Json, Box::new(sink.clone()));
        let (l, r) = (listener(), route());
        for _ in 0..1000 {
            log.log(&full(&l, &r, &[]));
            log.clone().log(&refused());
        }
        assert!(log.flush(BOUND));
        let text = sink.text();
        assert_eq!(text.lines().count(), 2000);
        for l in text.lines() {
            serde_json::from_str::<serde_json::Value>(l).unwrap();
        }
        assert_eq!(log.dropped(), 0);
    }

    /// A writer that blocks until released, and says when a write first arrives.
    struct Gate {
        arrived: SyncSender<()>,
        open: Arc<(Mutex<bool>, Condvar)>,
        sink: Sink,
    }

    impl Write for Gate {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            let _ = self.arrived.try_send(());
            let (lock, cvar) = &*self.open;
            let guard = lock.lock().unwrap();
            // Bounded, so a failing test cannot hang the suite.
            let (guard, _) = cvar.wait_timeout_while(guard, BOUND, |open| !*open).unwrap();
            drop(guard);
            self.sink.write(buf)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_full_queue_drops_and_counts_lines_instead_of_blocking() {
        let (arrived_tx, arrived) = std::sync::mpsc::sync_channel(1);
        let open = Arc::new((Mutex::new(false), Condvar::new()));
        let sink = Sink::default();
        let gate = Gate { arrived: arrived_tx, open: Arc::clone(&open), sink: sink.clone() };
        let log = AccessLog::start_with_queue(Format::Text, Box::new(gate), 4);
        let rec = refused();
        // The first line reaches the writer, which then blocks in its write.
        log.log(&rec);
        arrived.recv_timeout(BOUND).expect("the writer writes");
        // With the writer stuck, the queue takes 4 lines and the other 96 are dropped; `log`
        // returns every time (on a separate thread so that a regression fails, not hangs).
        let (done_tx, done) = std::sync::mpsc::channel();
        let logger = log.clone();
        std::thread::spawn(move || {
            for _ in 0..100 {
                logger.log(&refused());
            }
            let _ = done_tx.send(());
        });
        done.recv_timeout(BOUND).expect("logging does not block on a stuck writer");
        assert_eq!(log.dropped(), 96);
        assert!(!log.flush(Duration::from_millis(50)), "nothing is flushed while stuck");

        *open.0.lock().unwrap() = true;
        open.1.notify_all();
        assert!(log.flush(BOUND));
        assert_eq!(sink.text().lines().count(), 5);
        assert_eq!(log.dropped(), 96);
    }

    /// A writer whose every write fails.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::Error::other("disk full"))
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::Error::other("disk full"))
        }
    }

    #[test]
    fn lines_that_cannot_be_written_are_counted_as_dropped() {
        let log = AccessLog::start(Format::Text, Box::new(Broken));
        for _ in 0..3 {
            log.log(&refused());
        }
        assert!(log.flush(BOUND));
        assert_eq!(log.dropped(), 3);
    }
}

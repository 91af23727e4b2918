//! What a person (or a CI log) sees while images build and push: one progress line per
//! consumer in a terminal; in a log (stderr is not a terminal), a plain line per image on each
//! build step, and another at least every 30 seconds while a step runs, as
//! `docker buildx build --progress plain` does. A job log then never goes quiet for minutes.

use std::io::IsTerminal;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The longest a log goes without a line about a running image.
const HEARTBEAT: Duration = Duration::from_secs(25);

/// Where progress goes.
#[derive(Debug, Clone)]
pub struct Progress {
    mode: Mode,
}

#[derive(Debug, Clone)]
enum Mode {
    Bars(MultiProgress),
    Lines { sink: Sink, heartbeat: Duration },
}

/// Where plain lines go: stderr, or a buffer (the unit tests).
#[derive(Debug, Clone)]
enum Sink {
    Stderr,
    #[cfg(test)]
    Buffer(Arc<Mutex<Vec<String>>>),
}

impl Sink {
    fn line(&self, consumer: &str, msg: &str) {
        match self {
            Sink::Stderr => eprintln!("[{consumer}] {msg}"),
            #[cfg(test)]
            Sink::Buffer(lines) => lock(lines).push(format!("[{consumer}] {msg}")),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Progress {
    /// Bars when stderr is a terminal, lines otherwise.
    pub fn auto() -> Progress {
        if std::io::stderr().is_terminal() {
            Progress::bars()
        } else {
            Progress::lines()
        }
    }

    /// One animated line per consumer on stderr.
    pub fn bars() -> Progress {
        Progress {
            mode: Mode::Bars(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// Plain lines on stderr (CI logs, tests): `[consumer] what`, on each step and at least
    /// every 30 seconds while one runs.
    pub fn lines() -> Progress {
        Progress {
            mode: Mode::Lines {
                sink: Sink::Stderr,
                heartbeat: HEARTBEAT,
            },
        }
    }

    /// Starts the progress of one consumer.
    pub(crate) fn task(&self, consumer: &str) -> Task {
        let out = match &self.mode {
            Mode::Bars(m) => {
                let bar = m.add(ProgressBar::new_spinner());
                bar.set_style(
                    ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(consumer.to_string());
                bar.enable_steady_tick(Duration::from_millis(120));
                Out::Bar(bar)
            }
            Mode::Lines { sink, heartbeat } => Out::Log(Log::start(consumer, sink, *heartbeat)),
        };
        Task {
            consumer: consumer.to_string(),
            out,
        }
    }
}

/// The progress of one consumer.
#[derive(Debug)]
pub(crate) struct Task {
    consumer: String,
    out: Out,
}

#[derive(Debug)]
enum Out {
    Bar(ProgressBar),
    Log(Log),
}

impl Task {
    /// A step worth a line in a CI log (a Dockerfile step, a pushed layer).
    pub fn step(&self, msg: &str) {
        match &self.out {
            Out::Bar(bar) => bar.set_message(msg.to_string()),
            Out::Log(log) => log.step(msg),
        }
    }

    /// Detail that only a terminal shows (byte counts).
    pub fn detail(&self, msg: &str) {
        if let Out::Bar(bar) = &self.out {
            bar.set_message(msg.to_string());
        }
    }

    /// The end, good (`ok`) or bad.
    pub fn finish(&self, ok: bool, msg: &str) {
        match &self.out {
            Out::Bar(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix:.bold} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(format!("{} {}", if ok { "✓" } else { "✗" }, self.consumer));
                bar.finish_with_message(msg.to_string());
            }
            Out::Log(log) => log.finish(ok, msg),
        }
    }
}

/// One consumer's lines in a log, and the thread that repeats the running step when nothing
/// else has been printed for a heartbeat.
#[derive(Debug)]
struct Log {
    shared: Arc<Shared>,
    ticker: Mutex<Option<JoinHandle<()>>>,
}

#[derive(Debug)]
struct Shared {
    consumer: String,
    sink: Sink,
    state: Mutex<State>,
    wake: Condvar,
}

#[derive(Debug)]
struct State {
    /// The running step and when it began.
    step: Option<(String, Instant)>,
    /// When the last line was printed.
    printed: Instant,
    done: bool,
}

impl Log {
    fn start(consumer: &str, sink: &Sink, heartbeat: Duration) -> Log {
        let shared = Arc::new(Shared {
            consumer: consumer.to_string(),
            sink: sink.clone(),
            state: Mutex::new(State {
                step: None,
                printed: Instant::now(),
                done: false,
            }),
            wake: Condvar::new(),
        });
        let ticking = Arc::clone(&shared);
        let ticker = std::thread::Builder::new()
            .name(format!("progress-{consumer}"))
            .spawn(move || ticking.tick(heartbeat))
            .ok();
        Log {
            shared,
            ticker: Mutex::new(ticker),
        }
    }

    fn step(&self, msg: &str) {
        let mut state = lock(&self.shared.state);
        if state.done {
            return;
        }
        self.shared.sink.line(&self.shared.consumer, msg);
        let now = Instant::now();
        state.step = Some((msg.to_string(), now));
        state.printed = now;
    }

    fn finish(&self, ok: bool, msg: &str) {
        {
            let mut state = lock(&self.shared.state);
            if state.done {
                return;
            }
            let outcome = if ok { "done" } else { "failed" };
            self.shared
                .sink
                .line(&self.shared.consumer, &format!("{outcome}: {msg}"));
            state.done = true;
        }
        self.stop();
    }

    fn stop(&self) {
        lock(&self.shared.state).done = true;
        self.shared.wake.notify_all();
        if let Some(ticker) = lock(&self.ticker).take() {
            let _ = ticker.join();
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        self.stop();
    }
}

impl Shared {
    /// Until the task is done: whenever a heartbeat passes without a line, repeats the
    /// running step with how long it has run.
    fn tick(&self, heartbeat: Duration) {
        let mut state = lock(&self.state);
        while !state.done {
            let due = state.printed + heartbeat;
            let now = Instant::now();
            if now >= due {
                let line = match &state.step {
                    Some((step, began)) => {
                        format!("{step} (running for {})", seconds(now - *began))
                    }
                    None => "starting".to_string(),
                };
                self.sink.line(&self.consumer, &line);
                state.printed = now;
                continue;
            }
            state = self
                .wake
                .wait_timeout(state, due - now)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }
}

/// `42s`, `3m05s`.
fn seconds(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else {
        format!("{}m{:02}s", s / 60, s % 60)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn buffered(heartbeat: Duration) -> (Progress, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let progress = Progress {
            mode: Mode::Lines {
                sink: Sink::Buffer(Arc::clone(&lines)),
                heartbeat,
            },
        };
        (progress, lines)
    }

    #[test]
    fn a_log_gets_a_line_per_step_and_the_result() {
        let (progress, lines) = buffered(Duration::from_secs(3600));
        let task = progress.task("api");
        task.step("Step 1/2 : FROM rust:1.95-bookworm");
        task.detail("Downloading 12 MB");
        task.step("Step 2/2 : RUN cargo build");
        task.finish(true, "built abc");
        task.step("after the end");
        assert_eq!(
            *lock(&lines),
            [
                "[api] Step 1/2 : FROM rust:1.95-bookworm",
                "[api] Step 2/2 : RUN cargo build",
                "[api] done: built abc",
            ]
        );
        let task = progress.task("worker");
        task.finish(false, "Step 3 failed");
        assert_eq!(
            lock(&lines).last().map(String::as_str),
            Some("[worker] failed: Step 3 failed")
        );
    }

    #[test]
    fn a_long_step_is_repeated_every_heartbeat_until_the_end() {
        let (progress, lines) = buffered(Duration::from_millis(100));
        let task = progress.task("consumer");
        task.step("Step 4/9 : RUN cargo build --release");
        std::thread::sleep(Duration::from_millis(450));
        task.finish(true, "built");
        let count = lock(&lines).len();
        std::thread::sleep(Duration::from_millis(250));
        let lines = lock(&lines).clone();
        assert_eq!(lines.len(), count, "nothing after the end: {lines:#?}");
        assert_eq!(lines[0], "[consumer] Step 4/9 : RUN cargo build --release");
        let repeats = &lines[1..lines.len() - 1];
        assert!((2..=10).contains(&repeats.len()), "{lines:#?}");
        for line in repeats {
            assert!(
                line.starts_with("[consumer] Step 4/9 : RUN cargo build --release (running for "),
                "{line}"
            );
        }
        assert_eq!(
            lines.last().map(String::as_str),
            Some("[consumer] done: built")
        );
    }

    #[test]
    fn a_dropped_task_stops_its_heartbeat() {
        let (progress, lines) = buffered(Duration::from_millis(50));
        drop(progress.task("gone"));
        std::thread::sleep(Duration::from_millis(200));
        assert!(lock(&lines).is_empty(), "{:?}", lock(&lines));
    }

    #[test]
    fn durations_read_as_minutes_and_seconds() {
        assert_eq!(seconds(Duration::from_secs(42)), "42s");
        assert_eq!(seconds(Duration::from_secs(185)), "3m05s");
    }
}

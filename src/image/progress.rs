//! What a person (or a CI log) sees while images build and push: one progress line per
//! consumer in a terminal, plain `tracing` lines otherwise.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Where progress goes.
#[derive(Debug, Clone)]
pub struct Progress {
    bars: Option<MultiProgress>,
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
            bars: Some(MultiProgress::with_draw_target(ProgressDrawTarget::stderr())),
        }
    }

    /// `tracing` info lines (CI logs, tests).
    pub fn lines() -> Progress {
        Progress { bars: None }
    }

    /// Starts the progress of one consumer.
    pub(crate) fn task(&self, consumer: &str) -> Task {
        let bar = self.bars.as_ref().map(|m| {
            let bar = m.add(ProgressBar::new_spinner());
            bar.set_style(
                ProgressStyle::with_template("{spinner} {prefix:.bold} {wide_msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar.set_prefix(consumer.to_string());
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Task {
            consumer: consumer.to_string(),
            bar,
        }
    }
}

/// The progress of one consumer.
#[derive(Debug)]
pub(crate) struct Task {
    consumer: String,
    bar: Option<ProgressBar>,
}

impl Task {
    /// A step worth a line in a CI log (a Dockerfile step, a pushed layer).
    pub fn step(&self, msg: &str) {
        match &self.bar {
            Some(bar) => bar.set_message(msg.to_string()),
            None => tracing::info!(consumer = %self.consumer, "{msg}"),
        }
    }

    /// Detail that only a terminal shows (byte counts).
    pub fn detail(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.to_string());
        }
    }

    /// The end, good (`ok`) or bad.
    pub fn finish(&self, ok: bool, msg: &str) {
        match &self.bar {
            Some(bar) => {
                bar.set_style(
                    ProgressStyle::with_template("{prefix:.bold} {wide_msg}")
                        .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                );
                bar.set_prefix(format!("{} {}", if ok { "✓" } else { "✗" }, self.consumer));
                bar.finish_with_message(msg.to_string());
            }
            None if ok => tracing::info!(consumer = %self.consumer, "{msg}"),
            None => tracing::error!(consumer = %self.consumer, "{msg}"),
        }
    }
}

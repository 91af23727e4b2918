//! What shoal tells people: logs on stderr through `tracing`, errors with help, and GitHub
//! annotations when running in GitHub Actions. A URL's password never reaches any of them
//! (`manifest::credential::redact_text`).

use std::io::Write;

use anstyle::{AnsiColor, Style};
use tracing_subscriber::EnvFilter;

use crate::cli::Output;
use crate::error::Error;
use crate::manifest::credential::redact_text;

const ERROR: Style = AnsiColor::Red.on_default().bold();
const HELP: Style = AnsiColor::Cyan.on_default().bold();

/// Logs go to stderr: warnings by default, more with each -v. `RUST_LOG` overrides.
pub fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => "warn",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("shoal={level},warn")));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(|| Redacting(std::io::stderr()))
        .with_target(verbose > 1)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}

/// stderr for log lines, each written with its URL passwords masked (an event is formatted
/// whole, then written at once).
struct Redacting(std::io::Stderr);

impl Write for Redacting {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let text = String::from_utf8_lossy(buf);
        self.0.write_all(redact_text(&text).as_bytes())?;
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.0.flush()
    }
}

/// Prints an error for a person (stderr) or a program (JSON on stdout).
pub fn error(e: &Error, output: Output) {
    let problems = match e {
        Error::Invalid(p) => Some(p),
        _ => None,
    };
    if output == Output::Json {
        let mut v = serde_json::json!({
            "error": redact_text(&e.to_string()),
            "exit_code": e.exit_code(),
            "problems": problems,
        });
        crate::manifest::credential::redact_json(&mut v);
        outln(&serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        let mut err = anstream::stderr();
        if let Some(problems) = problems {
            for p in problems.iter() {
                let _ = writeln!(
                    err,
                    "{ERROR}error{ERROR:#}: {}",
                    redact_text(&p.to_string())
                );
            }
        }
        let _ = writeln!(
            err,
            "{ERROR}error{ERROR:#}: {}",
            redact_text(&e.to_string())
        );
        if let Some(help) = e.help() {
            let _ = writeln!(err, "{HELP}help{HELP:#}: {help}");
        }
    }
    if std::env::var_os("GITHUB_ACTIONS").is_some() {
        github_annotations(e);
    }
}

/// `::error file=…,line=…::message` lines, which GitHub shows on the workflow run and the diff.
fn github_annotations(e: &Error) {
    match e {
        Error::Invalid(problems) => {
            for p in problems.iter() {
                let line = p.line.map(|l| format!(",line={l}")).unwrap_or_default();
                outln(&format!(
                    "::error file={}{line}::{}",
                    p.file.display(),
                    escape(&redact_text(&format!("{}: {}", p.key, p.message)))
                ));
            }
        }
        other => outln(&format!(
            "::error::{}",
            escape(&redact_text(&other.to_string()))
        )),
    }
}

fn escape(s: &str) -> String {
    s.replace('%', "%25")
        .replace('\r', "%0D")
        .replace('\n', "%0A")
}

/// Writes to stdout. A closed pipe (`shoal discover | head`) ends the program quietly instead
/// of panicking as `print!` would.
pub fn out(text: &str) {
    let mut stdout = anstream::stdout();
    if let Err(e) = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(crate::exit::OK);
        }
    }
}

/// [`out`] with a newline.
pub fn outln(text: &str) {
    out(&format!("{text}\n"));
}

/// A plain text table with aligned columns.
pub fn table(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let parts: Vec<String> = cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(headers.to_vec(), &mut out);
    for row in rows {
        line(row.iter().map(String::as_str).collect(), &mut out);
    }
    out
}

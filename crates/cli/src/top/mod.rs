//! `numashm top PATH`: a live, read-only view of a layout-4 rendezvous. Each
//! refresh is a [`numashm::pool::inspect`] (which maps the rendezvous and
//! every live pool read-only and joins nothing); rates are the difference of
//! two successive reports over the time between them. `--once` prints one
//! frame (rates over one interval) as text, or `--once --json` as JSON.
//!
//! The terminal is restored (raw mode off, alternate screen left, cursor
//! shown) on `q`, Esc, Ctrl-C, an error, and a panic (the hook restores
//! before the default hook prints).

mod snapshot;
mod view;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use crossterm::event::{self, Event, KeyCode, KeyEvent, KeyEventKind, KeyModifiers};
use crossterm::terminal::{disable_raw_mode, enable_raw_mode, EnterAlternateScreen, LeaveAlternateScreen};
use crossterm::{cursor, execute};
use numashm::pool::RendezvousReport;
use ratatui::backend::{CrosstermBackend, TestBackend};
use ratatui::Terminal;

use crate::util::CliError;
pub use snapshot::Snapshot;

/// Width and height of the frame `--once` prints as text.
const ONCE_SIZE: (u16, u16) = (150, 40);

/// One read of the rendezvous, with the CLI's wording of a failure.
fn read(path: &Path) -> Result<RendezvousReport, CliError> {
    numashm::pool::inspect(path).map_err(|e| {
        let hint = match e {
            numashm::pool::PoolError::Corrupt { what: "rendezvous", field: "magic", .. } => {
                "; not a layout-4 rendezvous (`numashm create` makes one)"
            }
            _ => "",
        };
        CliError(format!("top {}: {e}{hint}", path.display()))
    })
}

/// `numashm top PATH [--interval MS] [--once [--json]]`.
pub fn run(path: &Path, interval: Duration, once: bool, json: bool) -> Result<(), CliError> {
    let shown = path.display().to_string();
    if once {
        let before = read(path)?;
        let t0 = Instant::now();
        std::thread::sleep(interval);
        let now = read(path)?;
        let s = snapshot::build(&shown, &before, &now, t0.elapsed().as_secs_f64());
        let out = if json { serde_json::to_string_pretty(&s.to_json()).unwrap_or_default() } else { render_text(&s, ONCE_SIZE) };
        println!("{out}");
        return Ok(());
    }
    let first = read(path)?;
    live(path, &shown, first, interval).map_err(|e| CliError(format!("top {shown}: terminal: {e}")))
}

/// One frame drawn into a text buffer (`--once`, the docs' capture): trailing
/// blanks trimmed, one line per terminal row.
pub fn render_text(s: &Snapshot, (w, h): (u16, u16)) -> String {
    let mut t = match Terminal::new(TestBackend::new(w, h)) {
        Ok(t) => t,
        Err(e) => return format!("error: {e}"),
    };
    if let Err(e) = t.draw(|f| view::draw(f, s, "")) {
        return format!("error: {e}");
    }
    let buf = t.backend().buffer();
    let mut out = String::new();
    for y in 0..buf.area.height {
        let line: String = (0..buf.area.width).map(|x| buf[(x, y)].symbol()).collect();
        out += line.trim_end();
        out.push('\n');
    }
    out.trim_end().to_string()
}

/// Leaves raw mode and the alternate screen, shows the cursor. Errors are
/// ignored: this runs on the way out (drop, panic), where nothing better can be done.
fn restore() {
    let _ = disable_raw_mode();
    let mut out = std::io::stdout();
    let _ = execute!(out, LeaveAlternateScreen, cursor::Show);
    let _ = out.flush();
}

/// The terminal while `top` runs: restored when dropped (any return, `?`).
struct TermGuard;

impl TermGuard {
    fn enter() -> std::io::Result<Self> {
        // First the hook, so a panic at any later point restores before the message.
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            restore();
            default(info);
        }));
        enable_raw_mode()?;
        let guard = TermGuard;
        execute!(std::io::stdout(), EnterAlternateScreen, cursor::Hide)?;
        Ok(guard)
    }
}

impl Drop for TermGuard {
    fn drop(&mut self) {
        restore();
    }
}

/// Whether a key ends `top`.
fn quits(k: &KeyEvent) -> bool {
    k.kind != KeyEventKind::Release
        && match k.code {
            KeyCode::Char('q') | KeyCode::Char('Q') | KeyCode::Esc => true,
            // Raw mode turns Ctrl-C into a key, not a SIGINT.
            KeyCode::Char('c') => k.modifiers.contains(KeyModifiers::CONTROL),
            _ => false,
        }
}

fn live(path: &Path, shown: &str, first: RendezvousReport, interval: Duration) -> std::io::Result<()> {
    // SIGTERM and SIGHUP end `top` like `q` (the terminal restored); their handler
    // only records them, the loop below looks every 100 ms at most.
    let mut signals = signal_hook::iterator::Signals::new([signal_hook::consts::SIGTERM, signal_hook::consts::SIGHUP])?;
    let _guard = TermGuard::enter()?;
    let mut term = Terminal::new(CrosstermBackend::new(std::io::stdout()))?;
    term.clear()?;
    // The first frame has no rates (nothing to difference yet).
    let mut snap = snapshot::build(shown, &first, &first, 0.0);
    let (mut prev, mut at) = (first, Instant::now());
    let mut status = String::new();
    loop {
        term.draw(|f| view::draw(f, &snap, &status))?;
        let due = at + interval;
        loop {
            let left = due.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            if signals.pending().next().is_some() {
                return Ok(());
            }
            if event::poll(left.min(Duration::from_millis(100)))? {
                match event::read()? {
                    Event::Key(k) if quits(&k) => return Ok(()),
                    Event::Resize(..) => term.draw(|f| view::draw(f, &snap, &status)).map(drop)?,
                    _ => {}
                }
            }
        }
        match read(path) {
            Ok(now) => {
                let t = Instant::now();
                snap = snapshot::build(shown, &prev, &now, t.duration_since(at).as_secs_f64());
                (prev, at) = (now, t);
                status.clear();
            }
            Err(e) => {
                // Shown in place; the last good frame stays (the file may come back).
                status = e.to_string();
                at = Instant::now();
            }
        }
    }
}

#[cfg(test)]
mod tests;

//! What the user does: a press (add a view to the find / take a shot), a double press (start a
//! new find), a hold (enroll / cancel), or quit.
//!
//! `--buttons stdin` reads one command per line (a PC, a script, a test): an empty line or
//! `press`, `new`, `hold`, `quit`; end of input quits. `--buttons gpio:/dev/gpiochipN:LINE`
//! watches a push button wired from the line to ground (internal pull-up, active low, 10 ms
//! debounce), read by [`Gestures`]: released within [`HOLD`] it is a press, held longer a hold,
//! and two presses within [`DOUBLE_PRESS`] a double press.

use std::io::BufRead;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc::Sender;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Press,
    /// Start a new find: the next press photographs another mushroom.
    NewFind,
    Hold,
    Quit,
}

/// How long a button must stay down to count as a hold.
pub const HOLD: Duration = Duration::from_millis(800);
/// Longest gap between two presses that makes them one double press. A single press is reported
/// this much later than its release, once no second one came.
pub const DOUBLE_PRESS: Duration = Duration::from_millis(350);

/// Turns one button's edges (with their times) into presses, double presses and holds.
#[derive(Debug, Default)]
pub struct Gestures {
    /// When the button went down, while it is down.
    down_at: Option<Duration>,
    /// A press released at this time, not yet reported: a second may follow.
    pending: Option<Duration>,
    /// The button is down for the second press of a double press.
    second: bool,
}

impl Gestures {
    pub fn down(&mut self, at: Duration) -> Option<Event> {
        self.down_at = Some(at);
        self.second = self.pending.is_some_and(|released| at.saturating_sub(released) <= DOUBLE_PRESS);
        if !self.second {
            // Too late to pair with it: the earlier press stands alone.
            return self.pending.take().map(|_| Event::Press);
        }
        None
    }

    /// Zero, one or two events: a pending press may be reported along with a hold.
    pub fn up(&mut self, at: Duration) -> Vec<Event> {
        let Some(down_at) = self.down_at.take() else { return vec![] };
        let held = at.saturating_sub(down_at) >= HOLD;
        match (held, std::mem::take(&mut self.second)) {
            (true, _) => self.pending.take().map(|_| Event::Press).into_iter().chain([Event::Hold]).collect(),
            (false, true) => {
                self.pending = None;
                vec![Event::NewFind]
            }
            (false, false) => {
                self.pending = Some(at);
                vec![]
            }
        }
    }

    /// When to call [`Gestures::timeout`] if no edge comes first.
    pub fn deadline(&self) -> Option<Duration> {
        match self.down_at {
            Some(_) => None,
            None => self.pending.map(|released| released + DOUBLE_PRESS),
        }
    }

    /// The pending press, once its double-press window has passed at `now`.
    pub fn timeout(&mut self, now: Duration) -> Option<Event> {
        match self.deadline() {
            Some(deadline) if now >= deadline => self.pending.take().map(|_| Event::Press),
            _ => None,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum ButtonSpec {
    Stdin,
    Gpio { chip: PathBuf, line: u32 },
}

impl FromStr for ButtonSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "stdin" {
            return Ok(ButtonSpec::Stdin);
        }
        let usage = || format!("unknown buttons \"{s}\"; expected stdin or gpio:/dev/gpiochipN:LINE");
        let rest = s.strip_prefix("gpio:").ok_or_else(usage)?;
        let (chip, line) = rest.rsplit_once(':').ok_or_else(usage)?;
        let line = line.parse().map_err(|_| usage())?;
        Ok(ButtonSpec::Gpio { chip: chip.into(), line })
    }
}

/// One line of `--buttons stdin`.
pub fn parse_command(line: &str) -> Option<Event> {
    match line.trim().to_ascii_lowercase().as_str() {
        "" | "p" | "press" => Some(Event::Press),
        "n" | "new" => Some(Event::NewFind),
        "h" | "hold" => Some(Event::Hold),
        "q" | "quit" | "exit" => Some(Event::Quit),
        _ => None,
    }
}

/// Starts reading the buttons on a thread of their own, sending events to `events`.
pub fn spawn(spec: &ButtonSpec, events: Sender<Event>) -> anyhow::Result<()> {
    match spec {
        ButtonSpec::Stdin => {
            std::thread::spawn(move || {
                for line in std::io::stdin().lock().lines() {
                    let Ok(line) = line else { break };
                    match parse_command(&line) {
                        Some(event) => {
                            if events.send(event).is_err() {
                                return;
                            }
                        }
                        None => eprintln!("unknown command {line:?}: an empty line or press, new, hold, quit"),
                    }
                }
                let _ = events.send(Event::Quit);
            });
            Ok(())
        }
        ButtonSpec::Gpio { chip, line } => gpio::spawn(chip, *line, events),
    }
}

#[cfg(target_os = "linux")]
mod gpio {
    use super::{Event, Gestures, monotonic_at};
    use anyhow::Context;
    use gpiocdev::line::{Bias, EdgeDetection, EdgeKind};
    use std::path::Path;
    use std::sync::mpsc::Sender;
    use std::time::{Duration, Instant};

    pub fn spawn(chip: &Path, line: u32, events: Sender<Event>) -> anyhow::Result<()> {
        let request = gpiocdev::Request::builder()
            .on_chip(chip)
            .with_consumer("sporeprint")
            .with_line(line)
            .as_active_low()
            .with_bias(Bias::PullUp)
            .with_edge_detection(EdgeDetection::BothEdges)
            .with_debounce_period(Duration::from_millis(10))
            .request()
            .with_context(|| format!("buttons gpio: cannot request line {line} of {}", chip.display()))?;
        std::thread::spawn(move || {
            // Edge times are the kernel's monotonic clock, as is `Instant` on Linux.
            let start = Instant::now();
            let mut gestures = Gestures::default();
            loop {
                let now = start.elapsed();
                if let Some(deadline) = gestures.deadline() {
                    match request.wait_edge_event(deadline.saturating_sub(now)) {
                        Ok(true) => {}
                        Ok(false) => {
                            let flushed = gestures.timeout(deadline);
                            if flushed.is_some_and(|e| events.send(e).is_err()) {
                                return;
                            }
                            continue;
                        }
                        Err(_) => break,
                    }
                }
                let Ok(event) = request.read_edge_event() else { break };
                let at = Duration::from_nanos(event.timestamp_ns).saturating_sub(monotonic_at(start));
                let happened = match event.kind {
                    EdgeKind::Rising => gestures.down(at).into_iter().collect(),
                    EdgeKind::Falling => gestures.up(at),
                };
                if happened.into_iter().any(|e| events.send(e).is_err()) {
                    return;
                }
            }
        });
        Ok(())
    }
}

/// `Instant` `start` on the kernel's monotonic clock (what edge timestamps are read on).
#[cfg(target_os = "linux")]
fn monotonic_at(start: std::time::Instant) -> std::time::Duration {
    let mut now = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: clock_gettime only writes the timespec it is given.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    let monotonic_now = std::time::Duration::new(now.tv_sec as u64, now.tv_nsec as u32);
    monotonic_now.saturating_sub(start.elapsed())
}

#[cfg(not(target_os = "linux"))]
mod gpio {
    pub fn spawn(_: &std::path::Path, _: u32, _: std::sync::mpsc::Sender<super::Event>) -> anyhow::Result<()> {
        anyhow::bail!("buttons gpio: the GPIO character device exists on Linux only")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_and_button_specs_parse() {
        assert_eq!(parse_command(""), Some(Event::Press));
        assert_eq!(parse_command(" HOLD "), Some(Event::Hold));
        assert_eq!(parse_command("q"), Some(Event::Quit));
        assert_eq!(parse_command("new"), Some(Event::NewFind));
        assert_eq!(parse_command("identify"), None);
        assert_eq!("stdin".parse(), Ok(ButtonSpec::Stdin));
        assert_eq!("gpio:/dev/gpiochip0:17".parse(), Ok(ButtonSpec::Gpio { chip: "/dev/gpiochip0".into(), line: 17 }));
        assert!("gpio:/dev/gpiochip0".parse::<ButtonSpec>().is_err());
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn edges_become_presses_double_presses_and_holds() {
        // A press is reported once its double-press window has passed, not before.
        let mut g = Gestures::default();
        assert_eq!((g.down(ms(0)), g.up(ms(100))), (None, vec![]));
        assert_eq!(g.deadline(), Some(ms(100) + DOUBLE_PRESS));
        assert_eq!(g.timeout(ms(200)), None);
        assert_eq!(g.timeout(ms(100) + DOUBLE_PRESS), Some(Event::Press));
        assert_eq!(g.deadline(), None);

        // Two quick presses: one double press, no press.
        let mut g = Gestures::default();
        g.down(ms(0));
        g.up(ms(80));
        assert_eq!(g.down(ms(250)), None);
        assert_eq!(g.up(ms(330)), vec![Event::NewFind]);
        assert_eq!((g.deadline(), g.timeout(ms(5000))), (None, None));

        // Two presses further apart: two presses.
        let mut g = Gestures::default();
        g.down(ms(0));
        g.up(ms(80));
        assert_eq!(g.down(ms(80) + DOUBLE_PRESS + ms(1)), Some(Event::Press));
        assert_eq!(g.up(ms(600)), vec![]);
        assert_eq!(g.timeout(ms(2000)), Some(Event::Press));

        // A hold is a hold, also right after a press (which is reported first).
        let mut g = Gestures::default();
        g.down(ms(0));
        assert_eq!(g.up(HOLD), vec![Event::Hold]);
        g.down(ms(2000));
        g.up(ms(2050));
        g.down(ms(2100));
        assert_eq!(g.deadline(), None, "no timeout while the button is down");
        assert_eq!(g.up(ms(2100) + HOLD), vec![Event::Press, Event::Hold]);
    }
}

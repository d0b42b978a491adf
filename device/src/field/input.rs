//! What the user does: a press (identify / take a shot), a hold (enroll / cancel), or quit.
//!
//! `--buttons stdin` reads one command per line (a PC, a script, a test): an empty line or
//! `press`, `hold`, `quit`; end of input quits. `--buttons gpio:/dev/gpiochipN:LINE` watches a
//! push button wired from the line to ground (internal pull-up, active low, 10 ms debounce):
//! released within [`HOLD`] it is a press, held longer a hold.

use std::io::BufRead;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::mpsc::Sender;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Event {
    Press,
    Hold,
    Quit,
}

/// How long a button must stay down to count as a hold.
pub const HOLD: Duration = Duration::from_millis(800);

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
                        None => eprintln!("unknown command {line:?}: an empty line or press, hold, quit"),
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
    use super::{Event, HOLD};
    use anyhow::Context;
    use gpiocdev::line::{Bias, EdgeDetection, EdgeKind};
    use std::path::Path;
    use std::sync::mpsc::Sender;
    use std::time::Duration;

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
            let mut pressed_at: Option<u64> = None;
            for event in request.edge_events() {
                let Ok(event) = event else { break };
                match event.kind {
                    EdgeKind::Rising => pressed_at = Some(event.timestamp_ns),
                    EdgeKind::Falling => {
                        let Some(at) = pressed_at.take() else { continue };
                        let held = Duration::from_nanos(event.timestamp_ns.saturating_sub(at));
                        let kind = if held >= HOLD { Event::Hold } else { Event::Press };
                        if events.send(kind).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(())
    }
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
        assert_eq!(parse_command("identify"), None);
        assert_eq!("stdin".parse(), Ok(ButtonSpec::Stdin));
        assert_eq!("gpio:/dev/gpiochip0:17".parse(), Ok(ButtonSpec::Gpio { chip: "/dev/gpiochip0".into(), line: 17 }));
        assert!("gpio:/dev/gpiochip0".parse::<ButtonSpec>().is_err());
    }
}

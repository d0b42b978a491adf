//! The field loop: wait for a press, capture, answer; hold to enroll K shots of a new species.
//!
//! Presses build a find: each one adds a view (cap, gills, stem...) of the mushroom in hand and
//! the screen shows the answer from all views so far, with their count. A double press, or a
//! press after `find_pause` without one, starts a new find; holding to enroll ends it too.
//!
//! It never dies on one bad frame or one failed capture: the screen says what went wrong and
//! the next press tries again. Ctrl-C and SIGTERM (systemd stopping the service) end it
//! cleanly between two events.

use super::camera::{Camera, CameraSpec};
use super::canvas::Canvas;
use super::display::{Display, DisplaySpec};
use super::input::{self, ButtonSpec, Event};
use super::ui::{self, Screen};
use crate::enroll;
use crate::identify;
use crate::model::Model;
use sporeprint_shared::embedder::Observation;
use sporeprint_shared::{Origin, Table};
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

/// How a field session is set up.
#[derive(Clone, Debug)]
pub struct Settings {
    pub camera: CameraSpec,
    pub display: DisplaySpec,
    pub buttons: ButtonSpec,
    /// Canvas size when the display has none of its own (PNG, none).
    pub size: (u32, u32),
    /// Shots per enrollment.
    pub shots: usize,
    /// Names given to species enrolled in the field, in turn; after them, "field species N".
    pub names: Vec<String>,
    pub top_k: usize,
    /// Without a press for this long, the next press starts a new find.
    pub find_pause: Duration,
}

/// Whether presses identify or take enrollment shots.
enum Mode {
    /// Identifying: the views of the current find (none yet after a new find).
    Ready(Find),
    Enrolling(Vec<Vec<f32>>),
}

/// The views of the mushroom being identified, and when the last one was taken.
#[derive(Default)]
struct Find {
    views: Vec<Observation>,
    last: Option<Instant>,
}

pub struct Session<'a> {
    model: &'a Model,
    table_path: PathBuf,
    table: Table,
    table_stamp: Option<SystemTime>,
    settings: Settings,
    camera: Camera,
    display: Display,
    canvas: Canvas,
    origin: Origin,
    enrolled: usize,
}

impl<'a> Session<'a> {
    /// Opens the camera and the display (clear errors when either is missing) and the table.
    pub fn open(model: &'a Model, table_path: &Path, settings: Settings, origin: Origin) -> anyhow::Result<Self> {
        let camera = Camera::open(&settings.camera, *model.embedder.spec())?;
        let display = Display::open(&settings.display)?;
        let (width, height) = display.native_size().unwrap_or(settings.size);
        let table = model.open_table(table_path)?;
        Ok(Session {
            model,
            table_path: table_path.into(),
            table,
            table_stamp: modified(table_path),
            camera,
            display,
            canvas: Canvas::new(width, height),
            settings,
            origin,
            enrolled: 0,
        })
    }

    /// Runs until the buttons say quit, input ends, or a signal arrives.
    pub fn run(mut self) -> anyhow::Result<()> {
        let (events, received) = mpsc::channel();
        input::spawn(&self.settings.buttons, events.clone())?;
        let on_signal = events.clone();
        ctrlc::set_handler(move || {
            let _ = on_signal.send(Event::Quit);
        })?;
        let mut mode = Mode::Ready(Find::default());
        self.show(&Screen::Ready { species: self.table.len() })?;
        for event in received {
            mode = match (mode, event) {
                (_, Event::Quit) => break,
                (Mode::Ready(mut find), Event::Press) => {
                    if find.last.is_some_and(|last| last.elapsed() >= self.settings.find_pause) {
                        find = Find::default();
                    }
                    let screen = self.add_view(&mut find);
                    self.show(&screen)?;
                    Mode::Ready(find)
                }
                (Mode::Ready(_), Event::NewFind) => {
                    self.show(&Screen::Ready { species: self.table.len() })?;
                    Mode::Ready(Find::default())
                }
                (Mode::Ready(_), Event::Hold) => {
                    self.show(&Screen::Enroll { taken: 0, wanted: self.settings.shots })?;
                    Mode::Enrolling(Vec::new())
                }
                (Mode::Enrolling(shots), Event::NewFind) => Mode::Enrolling(shots),
                (Mode::Enrolling(_), Event::Hold) => {
                    self.show(&Screen::Ready { species: self.table.len() })?;
                    Mode::Ready(Find::default())
                }
                (Mode::Enrolling(mut shots), Event::Press) => match self.capture() {
                    Err(problem) => {
                        self.show(&problem)?;
                        Mode::Enrolling(shots)
                    }
                    Ok((observed, _)) => {
                        shots.push(observed.embedding);
                        if shots.len() < self.settings.shots {
                            self.show(&Screen::Enroll { taken: shots.len(), wanted: self.settings.shots })?;
                            Mode::Enrolling(shots)
                        } else {
                            let screen = self.enroll(shots);
                            self.show(&screen)?;
                            Mode::Ready(Find::default())
                        }
                    }
                },
            };
        }
        eprintln!("field mode: stopped");
        Ok(())
    }

    fn show(&mut self, screen: &Screen) -> anyhow::Result<()> {
        ui::draw(screen, &mut self.canvas);
        match screen {
            Screen::Problem { title, detail } => eprintln!("field mode: {title}: {detail}"),
            Screen::Answer(answer) => {
                eprintln!("field mode: {}: {}", screen.kind(), identify::describe(answer).replace('\n', "\n    "))
            }
            _ => eprintln!("field mode: {}", screen.kind()),
        }
        self.display.show(&self.canvas, screen.kind())
    }

    fn capture(&mut self) -> Result<(Observation, PathBuf), Screen> {
        let problem = |title: &str, e: anyhow::Error| Screen::Problem { title: title.into(), detail: format!("{e:#}") };
        let frame = self.camera.capture().map_err(|e| problem("camera", e))?;
        let observed = self.model.embedder.observe_image(&frame.image).map_err(|e| problem("bad frame", e.into()))?;
        Ok((observed, frame.label))
    }

    /// Captures a view, adds it to `find` and answers from all its views. A failed capture or
    /// a frame the model refuses adds nothing: the find goes on with the views it had.
    fn add_view(&mut self, find: &mut Find) -> Screen {
        if let Err(e) = self.reload_if_changed() {
            return Screen::Problem { title: "table".into(), detail: format!("{e:#}") };
        }
        let (observed, label) = match self.capture() {
            Err(problem) => return problem,
            Ok(captured) => captured,
        };
        find.views.push(observed);
        find.last = Some(Instant::now());
        match identify::find_answer(&self.table, &find.views, &label, self.settings.top_k) {
            Ok(answer) => Screen::Answer(Box::new(answer)),
            Err(e) => {
                find.views.pop();
                Screen::Problem { title: "identify".into(), detail: format!("{e:#}") }
            }
        }
    }

    fn enroll(&mut self, shots: Vec<Vec<f32>>) -> Screen {
        self.enrolled += 1;
        // A preset name may be enrolled again (more shots); a made-up one must be new, also
        // across sessions, or a second outing's "field species 1" would merge into the first's.
        let (species, new_only) = match self.settings.names.get(self.enrolled - 1) {
            Some(name) => (name.clone(), false),
            None => {
                let unused = (1..).map(|n| format!("field species {n}")).find(|name| self.table.get(name).is_none());
                (unused.expect("a free number"), true)
            }
        };
        let request = enroll::Request { species, edibility: None, new_only };
        let count = shots.len();
        let done = enroll::enroll(self.model, &self.table_path, &request, count, || Ok(shots), self.origin);
        let screen = match done {
            Ok(e) => Screen::Enrolled { species: e.species, shots: e.shots, warning: e.warning },
            Err(e) => Screen::Problem { title: "enroll".into(), detail: format!("{e:#}") },
        };
        if let Err(e) = self.reload() {
            return Screen::Problem { title: "table".into(), detail: format!("{e:#}") };
        }
        screen
    }

    /// Picks up changes other processes (a sync, an `enroll` in a shell) saved meanwhile.
    fn reload_if_changed(&mut self) -> anyhow::Result<()> {
        if modified(&self.table_path) != self.table_stamp { self.reload() } else { Ok(()) }
    }

    fn reload(&mut self) -> anyhow::Result<()> {
        self.table = self.model.open_table(&self.table_path)?;
        self.table_stamp = modified(&self.table_path);
        Ok(())
    }
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

/// Parses `WIDTHxHEIGHT`.
pub fn parse_size(s: &str) -> Result<(u32, u32), String> {
    let (w, h) = s.split_once('x').ok_or_else(|| format!("size \"{s}\": expected WIDTHxHEIGHT, e.g. 240x240"))?;
    let parse = |v: &str| v.parse::<u32>().map_err(|_| format!("size \"{s}\": expected WIDTHxHEIGHT"));
    let (w, h) = (parse(w)?, parse(h)?);
    if w < 160 || h < 128 {
        return Err(format!("size {w}x{h}: the screens need at least 160x128"));
    }
    Ok((w, h))
}

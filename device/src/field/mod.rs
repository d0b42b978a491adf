//! Field mode (`sporeprint-device run`): camera, screen and buttons around identify and enroll.
//!
//! The parts are independent and each chosen on the command line: [`camera`] (where photos come
//! from), [`display`] (where screens go), [`input`] (what the user does); [`ui`] draws the
//! screens onto a [`canvas::Canvas`] and [`session`] is the loop tying them together.

pub mod camera;
pub mod canvas;
pub mod display;
pub mod input;
pub mod session;
pub mod ui;

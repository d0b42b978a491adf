//! What the field instrument shows, drawn with `embedded-graphics` onto any [`Canvas`] size from
//! 240x240 up: the layout is computed from the canvas, never from a particular panel.
//!
//! The top band says at a glance what matters most, in a colour readable from arm's length:
//! red for poisonous, deadly or a dangerous look-alike, amber for an unknown species, green for
//! edible (still "check with an expert"), grey for inedible, blue while enrolling.

use super::canvas::Canvas;
use crate::identify::Answer;
use embedded_graphics::mono_font::MonoTextStyle;
use embedded_graphics::mono_font::iso_8859_1::{FONT_6X10, FONT_7X13, FONT_10X20};
use embedded_graphics::pixelcolor::Rgb565;
use embedded_graphics::prelude::*;
use embedded_graphics::primitives::{Circle, PrimitiveStyle, Rectangle};
use embedded_text::TextBox;
use embedded_text::alignment::{HorizontalAlignment, VerticalAlignment};
use embedded_text::style::TextBoxStyleBuilder;
use sporeprint_shared::Tone;
use sporeprint_shared::confidence::shown_percent;

pub const DANGER: Rgb565 = Rgb565::new(28, 0, 0);
pub const UNKNOWN: Rgb565 = Rgb565::new(28, 40, 0);
pub const EDIBLE: Rgb565 = Rgb565::new(0, 36, 4);
pub const NEUTRAL: Rgb565 = Rgb565::new(10, 20, 10);
pub const ENROLL: Rgb565 = Rgb565::new(2, 16, 24);
pub const TEXT: Rgb565 = Rgb565::WHITE;
pub const DIM: Rgb565 = Rgb565::new(22, 44, 22);
pub const BACKGROUND: Rgb565 = Rgb565::BLACK;

/// Height of the top band, in pixels.
pub const BANNER_HEIGHT: u32 = 40;

/// One screen of the field instrument.
#[derive(Clone, Debug)]
pub enum Screen {
    /// Waiting for a press.
    Ready {
        species: usize,
    },
    Answer(Box<Answer>),
    /// Enroll mode: `taken` of `wanted` shots so far.
    Enroll {
        taken: usize,
        wanted: usize,
    },
    Enrolled {
        species: String,
        shots: u32,
        warning: Option<String>,
    },
    /// Something went wrong; the instrument carries on.
    Problem {
        title: String,
        detail: String,
    },
}

impl Screen {
    /// A short name for the screen (file names of PNG frames, logs).
    pub fn kind(&self) -> &'static str {
        match self {
            Screen::Ready { .. } => "ready",
            Screen::Answer(a) if a.unknown => "unknown",
            Screen::Answer(_) => "answer",
            Screen::Enroll { .. } => "enroll",
            Screen::Enrolled { .. } => "enrolled",
            Screen::Problem { .. } => "problem",
        }
    }

    /// The band's colour and text.
    pub fn banner(&self) -> (Rgb565, String) {
        match self {
            Screen::Ready { .. } => (NEUTRAL, "sporeprint".into()),
            Screen::Answer(a) => (tone_colour(a.tone), a.headline.into()),
            Screen::Enroll { .. } => (ENROLL, "ENROLL".into()),
            Screen::Enrolled { warning: Some(_), .. } => (UNKNOWN, "ENROLLED - CHECK".into()),
            Screen::Enrolled { .. } => (ENROLL, "ENROLLED".into()),
            Screen::Problem { title, .. } => (UNKNOWN, title.to_uppercase()),
        }
    }
}

/// The colour of a verdict's tone (the verdict itself is decided in `shared::verdict`).
pub fn tone_colour(tone: Tone) -> Rgb565 {
    match tone {
        Tone::Danger => DANGER,
        Tone::Caution => UNKNOWN,
        Tone::Neutral => NEUTRAL,
        Tone::Edible => EDIBLE,
    }
}

/// Draws `screen` over the whole canvas.
pub fn draw(screen: &Screen, canvas: &mut Canvas) {
    let (width, height) = (canvas.width(), canvas.height());
    canvas.clear(BACKGROUND).expect("infallible");
    let (colour, title) = screen.banner();
    fill(canvas, Rectangle::new(Point::zero(), Size::new(width, BANNER_HEIGHT)), colour);
    text(
        canvas,
        &title,
        Rectangle::new(Point::new(4, 0), Size::new(width - 8, BANNER_HEIGHT)),
        Font::Large,
        Align::Centre,
    );

    let margin = 6;
    let inner = width - 2 * margin as u32;
    let below = |y: i32, h: u32| Rectangle::new(Point::new(margin, y), Size::new(inner, h));
    let body = below(BANNER_HEIGHT as i32 + 6, height - BANNER_HEIGHT - 6);
    match screen {
        Screen::Ready { species } => {
            let lines = format!(
                "{species} species known\n\npress: photograph a view\n(more presses: more views\nof the same find)\ndouble press: new find\nhold: enroll a new species"
            );
            text(canvas, &lines, body, Font::Medium, Align::Left);
        }
        Screen::Answer(answer) => draw_answer(answer, canvas, body),
        Screen::Enroll { taken, wanted } => {
            text(
                canvas,
                &format!("shot {} of {wanted}", (taken + 1).min(*wanted)),
                below(body.top_left.y, 24),
                Font::Large,
                Align::Centre,
            );
            let diameter = 24;
            let gap = 10;
            let total = (*wanted as i32) * (diameter + gap) - gap;
            let left = (width as i32 - total) / 2;
            for i in 0..*wanted as i32 {
                let circle =
                    Circle::new(Point::new(left + i * (diameter + gap), body.top_left.y + 34), diameter as u32);
                let style = if (i as usize) < *taken {
                    PrimitiveStyle::with_fill(TEXT)
                } else {
                    PrimitiveStyle::with_stroke(TEXT, 2)
                };
                circle.into_styled(style).draw(canvas).expect("infallible");
            }
            let help = "press: take a shot\nhold: cancel";
            text(canvas, help, below(body.top_left.y + 72, 40), Font::Medium, Align::Centre);
        }
        Screen::Enrolled { species, shots, warning } => {
            text(canvas, species, below(body.top_left.y, 44), Font::Large, Align::Left);
            text(canvas, &format!("{shots} shot(s)"), below(body.top_left.y + 48, 16), Font::Medium, Align::Left);
            if let Some(warning) = warning {
                text(
                    canvas,
                    warning,
                    below(body.top_left.y + 70, height.saturating_sub(body.top_left.y as u32 + 70)),
                    Font::Small,
                    Align::Left,
                );
            }
        }
        Screen::Problem { detail, .. } => text(canvas, detail, body, Font::Medium, Align::Left),
    }
}

fn draw_answer(answer: &Answer, canvas: &mut Canvas, body: Rectangle) {
    let (x, mut y, width) = (body.top_left.x, body.top_left.y, body.size.width);
    let at = |y: i32, h: u32| Rectangle::new(Point::new(x, y), Size::new(width, h));
    let named = match (&answer.species, &answer.genus) {
        (Some(species), _) => Some((species.clone(), answer.scientific_name.clone())),
        (None, Some(genus)) if answer.verdict == "genus" => Some((format!("genus {genus}"), None)),
        _ => None,
    };
    match (named, answer.confidence, answer.confidence_band) {
        (Some((name, scientific)), Some(confidence), Some(band)) => {
            text(canvas, &name, at(y, 42), Font::Large, Align::Left);
            y += 44;
            if let Some(scientific) = scientific {
                text(canvas, &scientific, at(y, 13), Font::Small, Align::Left);
                y += 14;
            }
            // Confidence bar (never full: no photo makes it certain), the band's words beside it.
            let bar_width = width - 64;
            let filled = (bar_width as f32 * f32::from(shown_percent(confidence)) / 100.0).round() as u32;
            let bar = Rectangle::new(Point::new(x, y + 2), Size::new(bar_width, 12));
            bar.into_styled(PrimitiveStyle::with_stroke(DIM, 1)).draw(canvas).expect("infallible");
            fill(canvas, Rectangle::new(bar.top_left, Size::new(filled, 12)), TEXT);
            text(
                canvas,
                band.words(),
                Rectangle::new(Point::new(x + bar_width as i32 + 4, y), Size::new(60, 16)),
                Font::Medium,
                Align::Left,
            );
            y += 20;
        }
        _ => {
            text(canvas, "not a species in this table", at(y, 20), Font::Medium, Align::Left);
            y += 22;
        }
    }
    if answer.views > 1 {
        text(canvas, &format!("from {} views of this find", answer.views), at(y, 13), Font::Small, Align::Left);
        y += 14;
    }
    let list: String =
        answer.top.iter().enumerate().map(|(i, c)| format!("{}. {} ({:.2})\n", i + 1, c.species, c.distance)).collect();
    text(canvas, list.trim_end(), at(y, 42), Font::Medium, Align::Left);
    y += 46;
    let remaining = (body.top_left.y + body.size.height as i32 - y).max(0) as u32;
    text(canvas, &answer.warning, at(y, remaining), Font::Small, Align::Left);
}

#[derive(Clone, Copy)]
enum Font {
    Small,
    Medium,
    Large,
}

#[derive(Clone, Copy)]
enum Align {
    Left,
    Centre,
}

/// `content` wrapped into `bounds` (what does not fit is cut, never drawn over other parts).
fn text(canvas: &mut Canvas, content: &str, bounds: Rectangle, font: Font, align: Align) {
    let font = match font {
        Font::Small => &FONT_6X10,
        Font::Medium => &FONT_7X13,
        Font::Large => &FONT_10X20,
    };
    let (horizontal, vertical) = match align {
        Align::Left => (HorizontalAlignment::Left, VerticalAlignment::Top),
        Align::Centre => (HorizontalAlignment::Center, VerticalAlignment::Middle),
    };
    let style = TextBoxStyleBuilder::new().alignment(horizontal).vertical_alignment(vertical).build();
    TextBox::with_textbox_style(content, bounds, MonoTextStyle::new(font, TEXT), style)
        .draw(canvas)
        .expect("infallible");
}

fn fill(canvas: &mut Canvas, area: Rectangle, colour: Rgb565) {
    area.into_styled(PrimitiveStyle::with_fill(colour)).draw(canvas).expect("infallible");
}

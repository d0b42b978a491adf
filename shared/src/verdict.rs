//! The verdict a forager sees, decided here and only here: the CLI's text, `--json` and the
//! field screen all render a [`Verdict`], none of them re-derives it.
//!
//! Fail closed: every verdict that is not a likely edible species says "do not eat", an unknown
//! edibility included (a species enrolled in the field has none until someone sets it), and so
//! does an edible species that is only "possible" or "a guess" ([`crate::confidence::Band`]).
//!
//! Genus: when the nearest species is not likely but its genus is (its species' calibrated
//! probabilities summed), the answer is the genus, with its most dangerous member's edibility.

use crate::classify::Identification;
use crate::confidence::Band;
use crate::species::Edibility;
use crate::table::Table;
use alloc::format;
use alloc::string::String;
use serde::Serialize;

/// What one identification tells a forager.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Nothing in the table is close enough.
    UnknownSpecies,
    /// Close enough by distance, but the photo looks unlike the photos the model learnt from
    /// (another kind of mushroom, or an unclear photo).
    UnknownAtypical,
    /// A deadly or poisonous species.
    Dangerous {
        species: usize,
        edibility: Edibility,
    },
    /// An edible species with a dangerous one close behind it.
    DangerousLookalike {
        species: usize,
        lookalike: usize,
    },
    /// A species whose edibility is not recorded.
    EdibilityUnknown {
        species: usize,
    },
    Inedible {
        species: usize,
    },
    /// An edible species, but not likely enough to eat: "possible" or "a guess".
    EdibleUnsure {
        species: usize,
        band: Band,
    },
    /// An edible species, likely, and no dangerous one near it. Still not a licence to eat it.
    Edible {
        species: usize,
    },
    /// No species is likely but this genus is. `member` is its most probable species (whose
    /// genus names it), `edibility` the most dangerous of its species' edibilities.
    Genus {
        member: usize,
        edibility: Edibility,
    },
}

/// How alarming a verdict is: what the screen's colour and the CLI's emphasis follow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Tone {
    /// Deadly, poisonous, or a dangerous look-alike: red.
    Danger,
    /// Unknown species or unknown edibility: amber.
    Caution,
    /// Inedible: grey.
    Neutral,
    /// Edible (still "ask an expert"): green.
    Edible,
}

impl Verdict {
    /// The verdict for `found`, an identification made against `table`.
    pub fn of(found: &Identification, table: &Table) -> Verdict {
        let Some(best) = found.species() else {
            return if found.unknown_by_atypicality { Verdict::UnknownAtypical } else { Verdict::UnknownSpecies };
        };
        let species = best.index;
        let band = Band::of(best.confidence);
        if band != Band::Likely
            && let Some(genus) = found.genus.filter(|g| Band::of(g.probability) == Band::Likely)
        {
            return Verdict::Genus { member: genus.member, edibility: genus.most_dangerous };
        }
        match (table.entries()[species].edibility, found.lookalike) {
            (edibility @ (Edibility::Deadly | Edibility::Poisonous), _) => Verdict::Dangerous { species, edibility },
            (Edibility::Edible, Some(lookalike)) => Verdict::DangerousLookalike { species, lookalike: lookalike.index },
            (Edibility::Edible, None) if band == Band::Likely => Verdict::Edible { species },
            (Edibility::Edible, None) => Verdict::EdibleUnsure { species, band },
            (Edibility::Inedible, _) => Verdict::Inedible { species },
            (Edibility::Unknown, _) => Verdict::EdibilityUnknown { species },
        }
    }

    /// The species named, if any (index into the table's entries).
    pub fn species(&self) -> Option<usize> {
        match *self {
            Verdict::UnknownSpecies | Verdict::UnknownAtypical | Verdict::Genus { .. } => None,
            Verdict::Dangerous { species, .. }
            | Verdict::DangerousLookalike { species, .. }
            | Verdict::EdibilityUnknown { species }
            | Verdict::Inedible { species }
            | Verdict::EdibleUnsure { species, .. }
            | Verdict::Edible { species } => Some(species),
        }
    }

    /// The genus named instead of a species: its most probable member (index into the entries).
    pub fn genus_member(&self) -> Option<usize> {
        match *self {
            Verdict::Genus { member, .. } => Some(member),
            _ => None,
        }
    }

    /// A stable name for scripts (`--json`'s `verdict`).
    pub fn kind(&self) -> &'static str {
        match self {
            Verdict::UnknownSpecies => "unknown-species",
            Verdict::UnknownAtypical => "unknown-atypical",
            Verdict::Dangerous { edibility: Edibility::Deadly, .. } => "deadly",
            Verdict::Dangerous { .. } => "poisonous",
            Verdict::DangerousLookalike { .. } => "dangerous-lookalike",
            Verdict::EdibilityUnknown { .. } => "edibility-unknown",
            Verdict::Inedible { .. } => "inedible",
            Verdict::EdibleUnsure { .. } => "edible-unsure",
            Verdict::Edible { .. } => "edible",
            Verdict::Genus { .. } => "genus",
        }
    }

    pub fn tone(&self) -> Tone {
        match self {
            Verdict::Dangerous { .. } | Verdict::DangerousLookalike { .. } => Tone::Danger,
            Verdict::Genus { edibility, .. } if edibility.is_dangerous() => Tone::Danger,
            Verdict::UnknownSpecies
            | Verdict::UnknownAtypical
            | Verdict::EdibilityUnknown { .. }
            | Verdict::EdibleUnsure { .. }
            | Verdict::Genus { .. } => Tone::Caution,
            Verdict::Inedible { .. } => Tone::Neutral,
            Verdict::Edible { .. } => Tone::Edible,
        }
    }

    /// Whether the forager is told not to eat it: everything but a likely edible species.
    pub fn do_not_eat(&self) -> bool {
        !matches!(self, Verdict::Edible { .. })
    }

    /// The few words that go first, in capitals (the screen's top band).
    pub fn headline(&self) -> &'static str {
        match self {
            Verdict::UnknownSpecies | Verdict::UnknownAtypical => "UNKNOWN - DO NOT EAT",
            Verdict::Dangerous { edibility: Edibility::Deadly, .. } => "DEADLY POISONOUS",
            Verdict::Dangerous { .. } => "POISONOUS",
            Verdict::DangerousLookalike { .. } => "DANGEROUS LOOK-ALIKE",
            Verdict::EdibilityUnknown { .. } => "EDIBILITY UNKNOWN",
            Verdict::Inedible { .. } => "INEDIBLE",
            Verdict::EdibleUnsure { .. } => "NOT SURE - DO NOT EAT",
            Verdict::Edible { .. } => "EDIBLE? ASK AN EXPERT",
            Verdict::Genus { edibility: Edibility::Deadly, .. } => "GENUS HAS DEADLY SPECIES",
            Verdict::Genus { edibility: Edibility::Poisonous, .. } => "GENUS HAS POISONOUS SPECIES",
            Verdict::Genus { .. } => "SPECIES UNCLEAR",
        }
    }

    /// What a forager must read before anything else. Every verdict has one.
    pub fn warning(&self, table: &Table) -> String {
        let name = |i: usize| table.entries()[i].name.as_str();
        match *self {
            Verdict::UnknownSpecies => "unknown species: not in this table. Do not eat.".into(),
            Verdict::UnknownAtypical => "unknown species: the photo looks unlike the photos the model learnt from \
                                         (another kind of mushroom, or an unclear photo). Do not eat."
                .into(),
            Verdict::Dangerous { species, edibility } => {
                format!("{} is {}. Do not eat.", name(species), edibility.in_words())
            }
            Verdict::DangerousLookalike { lookalike, .. } => format!(
                "looks like {} ({}), a dangerous look-alike, too. Do not eat.",
                name(lookalike),
                table.entries()[lookalike].edibility.in_words()
            ),
            Verdict::EdibilityUnknown { species } => {
                format!("nobody has recorded whether {} is edible. Do not eat.", name(species))
            }
            Verdict::Inedible { species } => format!("{} is not edible. Do not eat.", name(species)),
            Verdict::EdibleUnsure { species, band } => format!(
                "{} is edible, but this answer is only {} (under {:.0}%): not sure enough to eat. Do not eat.",
                name(species),
                band.words(),
                100.0 * Band::LIKELY
            ),
            Verdict::Edible { species } => format!(
                "{} is edible, but no photo identification makes a mushroom safe to eat: ask an expert.",
                name(species)
            ),
            Verdict::Genus { member, edibility } => {
                let genus = table.entries()[member].genus.as_ref().map_or("?", |g| g.as_str());
                let members = match edibility {
                    Edibility::Edible => "all its species in this table are edible, but which one this is is unclear",
                    Edibility::Inedible => "its species in this table are inedible or edible",
                    Edibility::Unknown => "some of its species have no recorded edibility",
                    Edibility::Poisonous => "this genus has poisonous species",
                    Edibility::Deadly => "this genus has deadly poisonous species",
                };
                format!("species unclear, probably the genus {genus}: {members}. Do not eat.")
            }
        }
    }
}

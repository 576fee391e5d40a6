//! The names of the objects in one hour partition, and what each kind is.
//!
//! ```text
//! node-a.ebpf.20261126T130500123456789Z.5f3a-000000000012-0.parquet   recorded (flowrec)
//! compacted.00000003.k3j9x2.0of2.parquet                              compacted (flowstore)
//! _commit.00000003.json                                               a commit (flowstore)
//! rollup.00000003.k3j9x2.parquet                                      rollup of generation 3
//! ```
//!
//! The kinds cannot be confused: a recorded name has four dot-separated fields before
//! `.parquet` (node and writer are sanitized to `[A-Za-z0-9_-]`, so they hold no dot) and a
//! time as its third; a compacted name has an 8-digit seq as its second and `<p>of<n>` as its
//! fourth (a node named `compacted` still writes recorded names); commits start with `_` and
//! end in `.json`, which Hive-style readers (Athena, Trino, Spark) skip and a `*.parquet` glob
//! never matches.

use std::fmt;

use super::FILE_EXTENSION;

/// How a recorded file's name writes its first row's time.
pub const RECORDED_TIME_FORMAT: &str = "%Y%m%dT%H%M%S%9fZ";

const COMPACTED: &str = "compacted";
const ROLLUP: &str = "rollup";
const COMMIT: &str = "_commit";

/// A compaction generation of one hour: `seq` orders them (the commit key is exclusive per
/// seq), `nonce` tells apart attempts that raced for the same seq.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Generation {
    pub seq: u64,
    pub nonce: String,
}

impl Generation {
    /// `compacted.<seq>.<nonce>.<part>of<parts>.parquet`
    pub fn output_name(&self, part: u32, parts: u32) -> String {
        format!(
            "{COMPACTED}.{:08}.{}.{part}of{parts}{FILE_EXTENSION}",
            self.seq, self.nonce
        )
    }

    /// `rollup.<seq>.<nonce>.parquet`, in the `flows_hourly` partition of the same hour.
    pub fn rollup_name(&self) -> String {
        format!("{ROLLUP}.{:08}.{}{FILE_EXTENSION}", self.seq, self.nonce)
    }

    /// A fresh nonce: 6 characters from the clock and the process id (attempts of one seq
    /// race only between processes, or one after a crash).
    pub fn new_nonce() -> String {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or_default();
        let mut x = now ^ (u64::from(std::process::id()).rotate_left(32));
        // splitmix64 finaliser: spreads clock bits over the whole nonce.
        x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        x ^= x >> 31;
        const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
        (0..6)
            .map(|i| ALPHABET[((x >> (i * 6)) % 36) as usize] as char)
            .collect()
    }
}

impl fmt::Display for Generation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:08}.{}", self.seq, self.nonce)
    }
}

/// The commit object of generation `seq` of an hour: `_commit.<seq>.json`.
pub fn commit_name(seq: u64) -> String {
    format!("{COMMIT}.{seq:08}.json")
}

/// What an object name in an hour partition is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ObjectName {
    /// Written by a recorder (or an import).
    Recorded { node: String, source: String },
    /// Part `part` of `parts` written by a compaction of generation `generation`.
    Compacted {
        generation: Generation,
        part: u32,
        parts: u32,
    },
    /// The commit of generation `seq`.
    Commit { seq: u64 },
    /// The rollup of raw generation `generation`.
    Rollup { generation: Generation },
    /// Anything else that ends in `.parquet`: not ours (a file copied in by hand, another
    /// tool's output). Never read; reported.
    ForeignParquet,
    /// Anything else (a local store's temporary `name#N`, notes): ignored.
    Other,
}

impl ObjectName {
    /// Classifies a file name (the last component of a key).
    pub fn parse(name: &str) -> ObjectName {
        if let Some(stem) = name.strip_suffix(FILE_EXTENSION) {
            return parse_parquet(stem).unwrap_or(ObjectName::ForeignParquet);
        }
        if let Some(seq) = name
            .strip_prefix(COMMIT)
            .and_then(|rest| rest.strip_prefix('.'))
            .and_then(|rest| rest.strip_suffix(".json"))
            .and_then(parse_seq)
        {
            return ObjectName::Commit { seq };
        }
        ObjectName::Other
    }

    /// A data file of a recorded table (recorded or compacted).
    pub fn is_data(&self) -> bool {
        matches!(
            self,
            ObjectName::Recorded { .. } | ObjectName::Compacted { .. }
        )
    }
}

fn parse_parquet(stem: &str) -> Option<ObjectName> {
    let fields: Vec<&str> = stem.split('.').collect();
    parse_flowstore(&fields).or_else(|| parse_recorded(&fields))
}

fn parse_flowstore(fields: &[&str]) -> Option<ObjectName> {
    match fields {
        [COMPACTED, seq, nonce, parts] => {
            let (part, parts) = parts.split_once("of")?;
            let (part, parts): (u32, u32) = (part.parse().ok()?, parts.parse().ok()?);
            let seq = parse_seq(seq)?;
            (part < parts && valid_nonce(nonce)).then(|| ObjectName::Compacted {
                generation: Generation {
                    seq,
                    nonce: nonce.to_string(),
                },
                part,
                parts,
            })
        }
        [ROLLUP, seq, nonce] => {
            let seq = parse_seq(seq)?;
            valid_nonce(nonce).then(|| ObjectName::Rollup {
                generation: Generation {
                    seq,
                    nonce: nonce.to_string(),
                },
            })
        }
        _ => None,
    }
}

fn parse_recorded(fields: &[&str]) -> Option<ObjectName> {
    match fields {
        [node, source, time, writer] => {
            let sanitized = |s: &str| {
                !s.is_empty()
                    && s.chars()
                        .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
            };
            let ok = sanitized(node)
                && sanitized(writer)
                && !source.is_empty()
                && source.chars().all(|c| c.is_ascii_lowercase())
                && chrono::NaiveDateTime::parse_from_str(time, RECORDED_TIME_FORMAT).is_ok();
            ok.then(|| ObjectName::Recorded {
                node: node.to_string(),
                source: source.to_string(),
            })
        }
        _ => None,
    }
}

fn parse_seq(text: &str) -> Option<u64> {
    (text.len() == 8 && text.bytes().all(|b| b.is_ascii_digit()))
        .then(|| text.parse().ok())
        .flatten()
}

fn valid_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce.len() <= 32
        && nonce
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_of_name_is_told_apart() {
        let generation = Generation {
            seq: 3,
            nonce: "k3j9x2".into(),
        };
        assert_eq!(
            ObjectName::parse(&generation.output_name(1, 2)),
            ObjectName::Compacted {
                generation: generation.clone(),
                part: 1,
                parts: 2
            }
        );
        assert_eq!(
            generation.output_name(0, 1),
            "compacted.00000003.k3j9x2.0of1.parquet"
        );
        assert_eq!(
            ObjectName::parse(&generation.rollup_name()),
            ObjectName::Rollup {
                generation: generation.clone()
            }
        );
        assert_eq!(
            ObjectName::parse(&commit_name(3)),
            ObjectName::Commit { seq: 3 }
        );
        assert_eq!(
            ObjectName::parse("node-a.ebpf.20261126T130500123456789Z.5f3a-000000000012-0.parquet"),
            ObjectName::Recorded {
                node: "node-a".into(),
                source: "ebpf".into()
            }
        );
        // A node called "compacted" still writes recorded files.
        assert!(matches!(
            ObjectName::parse("compacted.import.20261126T130500123456789Z.w-1.parquet"),
            ObjectName::Recorded { .. }
        ));
        for foreign in [
            "data.parquet",
            "compacted.3.k3j9x2.0of1.parquet",
            "compacted.00000003.K3J.0of1.parquet",
            "compacted.00000003.k3j.1of1.parquet",
            "a.b.notatime.w.parquet",
            ".parquet",
        ] {
            assert_eq!(
                ObjectName::parse(foreign),
                ObjectName::ForeignParquet,
                "{foreign}"
            );
        }
        for other in [
            "x.parquet#3",
            "_commit.3.json",
            "README",
            "_commit.00000003.json.tmp",
        ] {
            assert_eq!(ObjectName::parse(other), ObjectName::Other, "{other}");
        }
    }

    #[test]
    fn nonces_are_valid_and_differ() {
        let a = Generation::new_nonce();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = Generation::new_nonce();
        assert!(valid_nonce(&a) && valid_nonce(&b));
        assert_ne!(a, b);
    }
}

use super::*;
use std::io::Write;

/// Writes `events.log` the way lumberjack does: appends whole lines, rotates by renaming to a
/// sortable backup name and creating a new file, and can gzip a backup (then removes it).
struct Exporter {
    dir: tempfile::TempDir,
    next_line: u64,
    rotations: u64,
}

impl Exporter {
    fn new() -> Exporter {
        let dir = tempfile::tempdir().unwrap();
        File::create(dir.path().join("events.log")).unwrap();
        Exporter {
            dir,
            next_line: 0,
            rotations: 0,
        }
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("events.log")
    }

    fn write(&mut self, lines: u64) {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.path())
            .unwrap();
        for _ in 0..lines {
            writeln!(file, "{{\"line\":{}}}", self.next_line).unwrap();
            self.next_line += 1;
        }
    }

    /// Renames the file away and creates the next one; returns the backup. Like lumberjack
    /// (which rotates when a write would exceed the maximum size), never rotates an empty file.
    fn rotate(&mut self, gzip: bool) -> Option<PathBuf> {
        if std::fs::metadata(self.path()).unwrap().len() == 0 {
            return None;
        }
        self.rotations += 1;
        let backup = self.dir.path().join(format!(
            "events-2026-11-26T10-00-{:02}.000.log",
            self.rotations
        ));
        std::fs::rename(self.path(), &backup).unwrap();
        File::create(self.path()).unwrap();
        if gzip {
            self.gzip(&backup);
        }
        Some(backup)
    }

    fn gzip(&self, backup: &Path) {
        let data = std::fs::read(backup).unwrap();
        let mut encoder = flate2::write::GzEncoder::new(
            File::create(gz_name(backup)).unwrap(),
            flate2::Compression::fast(),
        );
        encoder.write_all(&data).unwrap();
        encoder.finish().unwrap();
        std::fs::remove_file(backup).unwrap();
    }

    fn all(&self) -> Vec<String> {
        (0..self.next_line)
            .map(|n| format!("{{\"line\":{n}}}"))
            .collect()
    }
}

fn gz_name(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    PathBuf::from(name)
}

fn lines_of(chunk: &Lines) -> Vec<String> {
    String::from_utf8(chunk.bytes.clone())
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

/// Reads until nothing is new; the lines and the last position.
fn drain(tail: &mut Tail, got: &mut Vec<String>, last: &mut Option<Position>) {
    while let Some(chunk) = tail.read(64).unwrap() {
        let lines = lines_of(&chunk);
        assert_eq!(
            chunk.position.line - chunk.first_line + 1,
            lines.len() as u64,
            "line numbers follow the lines"
        );
        got.extend(lines);
        *last = Some(chunk.position);
    }
}

#[test]
fn only_whole_lines_are_handed_out() {
    let exporter = Exporter::new();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(exporter.path())
        .unwrap();
    let mut tail = Tail::resume(&exporter.path(), None).unwrap();
    file.write_all(b"{\"a\":1}\n{\"b\":").unwrap();
    let chunk = tail.read(1 << 20).unwrap().unwrap();
    assert_eq!(chunk.bytes, b"{\"a\":1}\n");
    assert_eq!((chunk.first_line, chunk.position.offset), (1, 8));
    assert!(tail.read(1 << 20).unwrap().is_none(), "half a line waits");
    file.write_all(b"2}\n").unwrap();
    let chunk = tail.read(1 << 20).unwrap().unwrap();
    assert_eq!(chunk.bytes, b"{\"b\":2}\n");
    assert_eq!((chunk.first_line, chunk.position.line), (2, 2));
}

#[test]
fn a_line_longer_than_the_read_size_comes_whole_in_one_read() {
    let exporter = Exporter::new();
    let long = format!("{{\"pad\":\"{}\"}}\n", "x".repeat(300_000));
    std::fs::write(exporter.path(), format!("{long}{{\"short\":1}}\n")).unwrap();
    let mut tail = Tail::resume(&exporter.path(), None).unwrap();
    let chunk = tail.read(1000).unwrap().unwrap();
    assert_eq!(chunk.bytes.len(), long.len() + 12);
    assert_eq!(chunk.position.line, 2);
    assert_eq!(chunk.position.head_len as usize, HEAD);
}

#[test]
fn rotation_while_following_loses_and_repeats_nothing() {
    for gzip in [false, true] {
        let mut exporter = Exporter::new();
        let mut tail = Tail::resume(&exporter.path(), None).unwrap();
        let (mut got, mut last) = (Vec::new(), None);
        exporter.write(5);
        drain(&mut tail, &mut got, &mut last);
        // Written after the last read, then rotated: still read, from the open file.
        exporter.write(3);
        exporter.rotate(gzip);
        exporter.write(4);
        drain(&mut tail, &mut got, &mut last);
        // Two rotations between reads: the middle file is found among the backups.
        exporter.write(2);
        exporter.rotate(gzip);
        exporter.write(6);
        exporter.rotate(gzip);
        exporter.write(1);
        drain(&mut tail, &mut got, &mut last);
        assert_eq!(got, exporter.all(), "gzip: {gzip}");
    }
}

#[test]
fn a_last_line_without_newline_in_a_rotated_file_is_read() {
    let mut exporter = Exporter::new();
    let mut tail = Tail::resume(&exporter.path(), None).unwrap();
    std::fs::write(exporter.path(), b"{\"cut\":1}\n{\"cut\":2}").unwrap();
    exporter.rotate(false);
    exporter.write(1);
    let (mut got, mut last) = (Vec::new(), None);
    drain(&mut tail, &mut got, &mut last);
    assert_eq!(got, ["{\"cut\":1}", "{\"cut\":2}", "{\"line\":0}"]);
}

#[test]
fn resuming_finds_the_file_whether_current_renamed_or_gzipped() {
    // (rotations while the reader is down, gzip them)
    for (rotations, gzip) in [(0, false), (1, false), (1, true), (3, true), (2, false)] {
        let mut exporter = Exporter::new();
        let (mut got, mut last) = (Vec::new(), None);
        exporter.write(7);
        {
            let mut tail = Tail::resume(&exporter.path(), None).unwrap();
            drain(&mut tail, &mut got, &mut last);
        }
        let position = last.clone().unwrap();
        let decoded = Position::decode(&position.encode()).unwrap();
        assert_eq!(decoded, position);
        exporter.write(2);
        for _ in 0..rotations {
            exporter.rotate(gzip);
            exporter.write(3);
        }
        let mut tail = Tail::resume(&exporter.path(), Some(decoded)).unwrap();
        drain(&mut tail, &mut got, &mut last);
        assert_eq!(got, exporter.all(), "{rotations} rotations, gzip: {gzip}");
    }
}

#[test]
fn a_new_file_that_reuses_the_inode_is_not_mistaken_for_the_old_one() {
    let mut exporter = Exporter::new();
    exporter.write(3);
    let (mut got, mut last) = (Vec::new(), None);
    drain(
        &mut Tail::resume(&exporter.path(), None).unwrap(),
        &mut got,
        &mut last,
    );
    let mut position = last.unwrap();
    // Same inode, different first bytes: a different file, read from its start (with a warning).
    let other: Vec<String> = (0..10).map(|n| format!("{{\"other\":{n}}}")).collect();
    std::fs::write(exporter.path(), other.join("\n") + "\n").unwrap();
    assert!(std::fs::metadata(exporter.path()).unwrap().len() > u64::from(position.head_len));
    position.offset = 12;
    let mut tail = Tail::resume(&exporter.path(), Some(position)).unwrap();
    let chunk = tail.read(1 << 20).unwrap().unwrap();
    assert_eq!(
        lines_of(&chunk),
        other,
        "read from its start, as a new file"
    );
}

#[test]
fn a_file_truncated_in_place_is_read_again_from_its_start() {
    let mut exporter = Exporter::new();
    let mut tail = Tail::resume(&exporter.path(), None).unwrap();
    exporter.write(4);
    let (mut got, mut last) = (Vec::new(), None);
    drain(&mut tail, &mut got, &mut last);
    std::fs::OpenOptions::new()
        .write(true)
        .open(exporter.path())
        .unwrap()
        .set_len(0)
        .unwrap();
    assert!(tail.read(1 << 20).unwrap().is_none());
    exporter.write(1);
    let chunk = tail.read(1 << 20).unwrap().unwrap();
    assert_eq!(lines_of(&chunk), ["{\"line\":4}"]);
    assert_eq!(chunk.first_line, 1);
}

#[test]
fn positions_from_elsewhere_are_refused() {
    for bad in [
        "",
        "follow1 1 2 3",
        "follow2 1 2 3 4 5 6",
        "follow1 1 2 3 4 5 x",
    ] {
        assert!(
            matches!(
                Position::decode(bad.as_bytes()),
                Err(TailError::BadPosition(_))
            ),
            "{bad:?}"
        );
    }
}

/// Random writes, rotations (some gzipped, some gzipped late) and crashes of the reader: a
/// crash loses the chunks read since the last committed position, which are read again.
#[test]
fn random_rotations_and_crashes_give_every_line_exactly_once() {
    for seed in 1..=200u64 {
        let mut random = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        let mut next = move |n: u64| {
            random ^= random << 13;
            random ^= random >> 7;
            random ^= random << 17;
            random % n
        };
        let mut exporter = Exporter::new();
        let mut committed: Vec<String> = Vec::new();
        let mut position: Option<Position> = None;
        let mut tail = Tail::resume(&exporter.path(), None).unwrap();
        let mut ungzipped: Vec<PathBuf> = Vec::new();
        for _ in 0..60 {
            match next(10) {
                0..=3 => exporter.write(next(5)),
                4 => {
                    let gzip_now = next(2) == 0;
                    if let Some(backup) = exporter.rotate(gzip_now) {
                        if !gzip_now {
                            ungzipped.push(backup);
                        }
                    }
                }
                5 if !ungzipped.is_empty() => exporter.gzip(&ungzipped.remove(0)),
                // Crash: whatever was read but not committed is read again. (Not before the
                // first commit: a first start knows no position, and a rotation before its
                // first commit would hide the rotated lines; the recorder commits its first
                // lines at once.)
                6 if position.is_some() => {
                    while tail.read(64).unwrap().is_some() {
                        if next(2) == 0 {
                            break;
                        }
                    }
                    tail = Tail::resume(&exporter.path(), position.clone()).unwrap();
                }
                _ => {
                    for _ in 0..=next(4) {
                        let Some(chunk) = tail.read(32 + next(64) as usize).unwrap() else {
                            break;
                        };
                        committed.extend(lines_of(&chunk));
                        position = Some(chunk.position);
                    }
                }
            }
        }
        let mut last = position;
        drain(&mut tail, &mut committed, &mut last);
        assert_eq!(committed, exporter.all(), "seed {seed}");
    }
}

#[test]
fn only_lumberjack_backups_of_the_followed_file_count() {
    assert!(is_backup_name(
        "events-2026-11-26T10-00-01.000.log",
        "events",
        ".log"
    ));
    assert!(!is_backup_name("events-drops.log", "events", ".log"));
    assert!(!is_backup_name(
        "events-2026-11-26T10-00-01.000.json",
        "events",
        ".log"
    ));
    assert!(!is_backup_name(
        "other-2026-11-26T10-00-01.000.log",
        "events",
        ".log"
    ));
    // Another exporter's file next to ours is never read as one of our backups.
    let mut exporter = Exporter::new();
    let drops = exporter.dir.path().join("events-drops.log");
    std::fs::write(&drops, "{\"foreign\":1}\n").unwrap();
    let mut tail = Tail::resume(&exporter.path(), None).unwrap();
    let (mut got, mut last) = (Vec::new(), None);
    exporter.write(3);
    drain(&mut tail, &mut got, &mut last);
    exporter.rotate(false);
    exporter.write(2);
    drain(&mut tail, &mut got, &mut last);
    assert_eq!(got, exporter.all());
}

#[test]
fn resuming_while_a_backup_is_being_gzipped_reads_it_once() {
    let mut exporter = Exporter::new();
    exporter.write(5);
    let (mut got, mut last) = (Vec::new(), None);
    drain(
        &mut Tail::resume(&exporter.path(), None).unwrap(),
        &mut got,
        &mut last,
    );
    exporter.write(3);
    let backup = exporter.rotate(false).unwrap();
    exporter.write(2);
    // Compression in progress: the plain backup and a partial .gz side by side.
    let data = std::fs::read(&backup).unwrap();
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    encoder.write_all(&data).unwrap();
    let gz = encoder.finish().unwrap();
    std::fs::write(gz_name(&backup), &gz[..gz.len() / 2]).unwrap();
    let mut tail = Tail::resume(&exporter.path(), last.clone()).unwrap();
    let (mut both, mut after) = (got.clone(), last.clone());
    drain(&mut tail, &mut both, &mut after);
    assert_eq!(
        both,
        exporter.all(),
        "plain and partial .gz: the plain one, once"
    );
    // Compression done, plain removed: the .gz is found (by its head) instead.
    std::fs::write(gz_name(&backup), &gz).unwrap();
    std::fs::remove_file(&backup).unwrap();
    let mut tail = Tail::resume(&exporter.path(), last).unwrap();
    drain(&mut tail, &mut got, &mut None);
    assert_eq!(got, exporter.all(), "the .gz alone");
}

#[test]
fn a_damaged_gzip_backup_is_read_up_to_its_damage_and_left_behind() {
    let mut exporter = Exporter::new();
    let mut tail = Tail::resume(&exporter.path(), None).unwrap();
    let (mut got, mut last) = (Vec::new(), None);
    exporter.write(2);
    drain(&mut tail, &mut got, &mut last);
    exporter.write(400);
    let backup = exporter.rotate(true).unwrap();
    let gz = gz_name(&backup);
    let data = std::fs::read(&gz).unwrap();
    std::fs::write(&gz, &data[..data.len() - 40]).unwrap();
    exporter.write(3);
    // Resumed in the damaged .gz: what it holds up to the damage, then the next file.
    let mut tail = Tail::resume(&exporter.path(), last).unwrap();
    drain(&mut tail, &mut got, &mut None);
    let all = exporter.all();
    assert!(got.len() > 2 && got.len() < all.len(), "{}", got.len());
    assert_eq!(
        &got[..got.len() - 3],
        &all[..got.len() - 3],
        "a prefix of the damaged file"
    );
    assert_eq!(
        &got[got.len() - 3..],
        &all[all.len() - 3..],
        "then the new file"
    );
}

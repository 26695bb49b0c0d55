//! The on-disk spool between the audit writer and the shipper (docs/audit.md §6.2): append-only
//! segment files of JSON lines, fsynced per batch, and a committed position written atomically.
//! Blocking I/O: the writer thread calls [`Spool::append`], the shipper calls the reading side
//! through `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

/// A segment is closed once it holds this many bytes.
pub const SEGMENT_BYTES: u64 = 4 * 1024 * 1024;
const COMMITTED: &str = "committed";

/// A place in the spool: a segment's sequence number and a byte offset in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct Position {
    pub segment: u64,
    pub offset: u64,
}

/// Lines read from the committed position, and where they end.
#[derive(Debug, Default)]
pub struct Batch {
    pub lines: Vec<String>,
    pub bytes: usize,
    pub end: Position,
}

pub struct Spool {
    dir: PathBuf,
    max_bytes: u64,
    active: Mutex<Option<Active>>,
    /// Events dropped because the spool was full.
    pub dropped: AtomicU64,
}

struct Active {
    segment: u64,
    file: File,
    size: u64,
}

fn segment_name(seq: u64) -> String {
    format!("{seq:020}.seg")
}

fn parse_segment(name: &str) -> Option<u64> {
    let n = name.strip_suffix(".seg")?;
    (n.len() == 20).then(|| n.parse().ok()).flatten()
}

impl Spool {
    /// Opens (creating) the spool directory. Appends go to a new segment: a segment left by an
    /// earlier process may end in a torn line, which is then never appended to.
    pub fn open(dir: &Path, max_bytes: u64) -> io::Result<Spool> {
        fs::create_dir_all(dir)?;
        let _ = fs::remove_file(dir.join(format!("{COMMITTED}.tmp")));
        Ok(Spool {
            dir: dir.to_path_buf(),
            max_bytes,
            active: Mutex::new(None),
            dropped: AtomicU64::new(0),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Segment sequence numbers, oldest first, with their sizes.
    fn segments(&self) -> io::Result<Vec<(u64, u64)>> {
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            if let Some(seq) = entry.file_name().to_str().and_then(parse_segment) {
                out.push((seq, entry.metadata().map(|m| m.len()).unwrap_or(0)));
            }
        }
        out.sort_unstable();
        Ok(out)
    }

    /// Appends lines (each without a newline) and fsyncs them: on return they survive a crash.
    pub fn append<'a>(&self, lines: impl Iterator<Item = &'a str>) -> io::Result<()> {
        let mut buf = Vec::new();
        for l in lines {
            buf.extend_from_slice(l.as_bytes());
            buf.push(b'\n');
        }
        self.append_framed(&buf)
    }

    /// [`Spool::append`] of lines already newline-terminated in one buffer (the audit writer
    /// reuses its buffer from batch to batch).
    pub fn append_framed(&self, buf: &[u8]) -> io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let mut active = self.active.lock().unwrap_or_else(|e| e.into_inner());
        let rotate = active
            .as_ref()
            .is_none_or(|a| a.size > 0 && a.size + buf.len() as u64 > SEGMENT_BYTES);
        if rotate {
            let next = self.segments()?.last().map(|(s, _)| s + 1).unwrap_or(1);
            let next = next.max(active.as_ref().map(|a| a.segment + 1).unwrap_or(0));
            let file = OpenOptions::new()
                .create_new(true)
                .append(true)
                .open(self.dir.join(segment_name(next)))?;
            sync_dir(&self.dir)?;
            *active = Some(Active {
                segment: next,
                file,
                size: 0,
            });
        }
        let Some(a) = active.as_mut() else {
            return Err(io::Error::other("no active segment"));
        };
        a.file.write_all(buf)?;
        a.file.sync_data()?;
        a.size += buf.len() as u64;
        let current = a.segment;
        drop(active);
        self.enforce_bound(current)
    }

    /// Over `max_bytes`, deletes the oldest closed segments (their events are lost to the STS;
    /// stdout and the file still have them).
    fn enforce_bound(&self, current: u64) -> io::Result<()> {
        let segs = self.segments()?;
        let mut total: u64 = segs.iter().map(|(_, n)| n).sum();
        for (seq, size) in segs {
            if total <= self.max_bytes || seq == current {
                break;
            }
            let path = self.dir.join(segment_name(seq));
            let lines = count_lines(&path).unwrap_or(0);
            fs::remove_file(&path)?;
            self.dropped.fetch_add(lines, Ordering::Relaxed);
            tracing::warn!(
                segment = seq,
                events = lines,
                "audit spool full: the oldest unshipped events were dropped"
            );
            total -= size;
        }
        Ok(())
    }

    /// The committed position: everything before it was stored by the STS.
    pub fn committed(&self) -> Position {
        let Ok(text) = fs::read_to_string(self.dir.join(COMMITTED)) else {
            return Position::default();
        };
        let mut it = text.split_whitespace().map(str::parse::<u64>);
        match (it.next(), it.next()) {
            (Some(Ok(segment)), Some(Ok(offset))) => Position { segment, offset },
            _ => Position::default(),
        }
    }

    /// Records `pos` as committed (temporary file, fsync, rename, fsync of the directory) and
    /// deletes the segments wholly before it.
    pub fn commit(&self, pos: Position) -> io::Result<()> {
        let tmp = self.dir.join(format!("{COMMITTED}.tmp"));
        {
            let mut f = File::create(&tmp)?;
            writeln!(f, "{} {}", pos.segment, pos.offset)?;
            f.sync_all()?;
        }
        fs::rename(&tmp, self.dir.join(COMMITTED))?;
        sync_dir(&self.dir)?;
        for (seq, _) in self.segments()? {
            if seq < pos.segment {
                let _ = fs::remove_file(self.dir.join(segment_name(seq)));
            }
        }
        Ok(())
    }

    /// Up to `max_lines` complete lines (and about `max_bytes`) from the committed position on.
    pub fn read(&self, max_lines: usize, max_bytes: usize) -> io::Result<Batch> {
        let start = self.committed();
        let segs = self.segments()?;
        let last = segs.last().map(|(s, _)| *s);
        let mut batch = Batch {
            end: start,
            ..Default::default()
        };
        for (seq, _) in segs.into_iter().filter(|(s, _)| *s >= start.segment) {
            let offset = if seq == start.segment {
                start.offset
            } else {
                0
            };
            let file = match File::open(self.dir.join(segment_name(seq))) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let mut r = BufReader::new(file);
            r.seek(SeekFrom::Start(offset))?;
            let mut pos = offset;
            let mut complete = true;
            loop {
                if batch.lines.len() >= max_lines || batch.bytes >= max_bytes {
                    batch.end = Position {
                        segment: seq,
                        offset: pos,
                    };
                    return Ok(batch);
                }
                let mut line = String::new();
                let n = match r.read_line(&mut line) {
                    Ok(n) => n,
                    // Not UTF-8: a torn or damaged line. Skip the rest of this segment.
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        complete = false;
                        break;
                    }
                    Err(e) => return Err(e),
                };
                if n == 0 {
                    break;
                }
                if !line.ends_with('\n') {
                    complete = false;
                    break;
                }
                pos += n as u64;
                line.pop();
                if !line.is_empty() {
                    batch.bytes += line.len();
                    batch.lines.push(line);
                }
            }
            if Some(seq) == last {
                // The active segment: a line without its newline may still be being written.
                batch.end = Position {
                    segment: seq,
                    offset: pos,
                };
                return Ok(batch);
            }
            if !complete {
                tracing::warn!(segment = seq, "audit spool: a torn line was discarded");
            }
            // A closed segment read to its end: the next one starts at 0.
            batch.end = Position {
                segment: seq + 1,
                offset: 0,
            };
        }
        Ok(batch)
    }

    /// Events in the spool not yet committed (tests, metrics).
    pub fn pending(&self) -> io::Result<u64> {
        let start = self.committed();
        let mut n = 0;
        for (seq, _) in self.segments()? {
            if seq < start.segment {
                continue;
            }
            let mut f = File::open(self.dir.join(segment_name(seq)))?;
            if seq == start.segment {
                f.seek(SeekFrom::Start(start.offset))?;
            }
            n += BufReader::new(f).split(b'\n').count() as u64;
        }
        Ok(n)
    }
}

fn count_lines(path: &Path) -> io::Result<u64> {
    Ok(BufReader::new(File::open(path)?).split(b'\n').count() as u64)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(n: usize, tag: &str) -> Vec<String> {
        (0..n)
            .map(|i| format!("{{\"eventId\":\"{tag}{i}\"}}"))
            .collect()
    }

    #[test]
    fn appended_lines_are_read_once_committed_never_again() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), 1 << 30).unwrap();
        let a = lines(10, "a");
        s.append(a.iter().map(String::as_str)).unwrap();
        let b = s.read(4, usize::MAX).unwrap();
        assert_eq!(b.lines, a[..4]);
        s.commit(b.end).unwrap();
        let b = s.read(100, usize::MAX).unwrap();
        assert_eq!(b.lines, a[4..]);
        s.commit(b.end).unwrap();
        assert!(s.read(100, usize::MAX).unwrap().lines.is_empty());
        assert_eq!(s.pending().unwrap(), 0);
    }

    #[test]
    fn a_restart_replays_what_was_not_committed_and_skips_torn_lines() {
        let dir = tempfile::tempdir().unwrap();
        let first = Spool::open(dir.path(), 1 << 30).unwrap();
        let a = lines(5, "a");
        first.append(a.iter().map(String::as_str)).unwrap();
        let b = first.read(2, usize::MAX).unwrap();
        first.commit(b.end).unwrap();
        drop(first);
        // A crash mid-write leaves a line without its newline.
        let seg = dir.path().join(segment_name(1));
        let mut f = OpenOptions::new().append(true).open(&seg).unwrap();
        f.write_all(b"{\"eventId\":\"torn").unwrap();
        drop(f);
        let second = Spool::open(dir.path(), 1 << 30).unwrap();
        let c = lines(3, "c");
        second.append(c.iter().map(String::as_str)).unwrap();
        let b = second.read(100, usize::MAX).unwrap();
        let mut want = a[2..].to_vec();
        want.extend(c.clone());
        assert_eq!(b.lines, want);
        second.commit(b.end).unwrap();
        assert!(!seg.exists(), "a fully shipped segment is deleted");
        assert_eq!(second.pending().unwrap(), 0);
    }

    #[test]
    fn segments_rotate_and_the_bound_drops_the_oldest() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), SEGMENT_BYTES * 2).unwrap();
        let big = "x".repeat(1024 * 1024);
        for _ in 0..12 {
            s.append(std::iter::once(big.as_str())).unwrap();
        }
        let segs = s.segments().unwrap();
        assert!(segs.len() >= 2, "{segs:?}");
        let total: u64 = segs.iter().map(|(_, n)| n).sum();
        assert!(total <= SEGMENT_BYTES * 2 + big.len() as u64 + 1, "{total}");
        assert!(s.dropped.load(Ordering::Relaxed) > 0);
        // Reading starts at the oldest segment left.
        let b = s.read(100, usize::MAX).unwrap();
        assert!(!b.lines.is_empty());
    }

    #[test]
    fn damaged_committed_file_means_from_the_start() {
        let dir = tempfile::tempdir().unwrap();
        let s = Spool::open(dir.path(), 1 << 30).unwrap();
        fs::write(dir.path().join(COMMITTED), "garbage").unwrap();
        assert_eq!(s.committed(), Position::default());
        s.append(["{}"].into_iter()).unwrap();
        assert_eq!(s.read(10, usize::MAX).unwrap().lines, vec!["{}"]);
    }
}

//! The audit log file (`agentid.audit.file`, docs/gateway.md §11): appended a batch at a time,
//! rotated by size.

use crate::config::model::AuditFile;
use std::io::Write;

/// `audit.jsonl` → `audit.jsonl.1` … `.{maxFiles}` by size.
pub(super) struct RotatingFile {
    cfg: AuditFile,
    file: Option<std::fs::File>,
    size: u64,
}

impl RotatingFile {
    pub(super) fn new(cfg: AuditFile) -> Self {
        RotatingFile {
            cfg,
            file: None,
            size: 0,
        }
    }

    /// Appends the lines, each newline-terminated, in one `write` per file: `buf` collects them
    /// and is written out before a rotation and at the end.
    pub(super) fn write_lines<'a>(
        &mut self,
        lines: impl Iterator<Item = &'a str>,
        buf: &mut Vec<u8>,
    ) -> std::io::Result<()> {
        buf.clear();
        for line in lines {
            self.open()?;
            let pending = self.size + buf.len() as u64;
            if pending > 0 && pending + line.len() as u64 + 1 > self.cfg.max_size_bytes {
                self.write_out(buf)?;
                self.rotate();
                self.open()?;
            }
            buf.extend_from_slice(line.as_bytes());
            buf.push(b'\n');
        }
        self.write_out(buf)
    }

    fn open(&mut self) -> std::io::Result<()> {
        if self.file.is_none() {
            if let Some(parent) = self.cfg.path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.cfg.path)?;
            self.size = f.metadata()?.len();
            self.file = Some(f);
        }
        Ok(())
    }

    fn write_out(&mut self, buf: &mut Vec<u8>) -> std::io::Result<()> {
        if buf.is_empty() {
            return Ok(());
        }
        let result = match self.file.as_mut() {
            Some(f) => f.write_all(buf),
            None => Ok(()),
        };
        // Counted even when the write failed part-way: the size only decides rotation.
        self.size += buf.len() as u64;
        buf.clear();
        result
    }

    fn rotate(&mut self) {
        self.file = None;
        for i in (1..self.cfg.max_files).rev() {
            let from = rotated(&self.cfg.path, i);
            if from.exists() {
                let _ = std::fs::rename(&from, rotated(&self.cfg.path, i + 1));
            }
        }
        if self.cfg.max_files > 0 {
            let _ = std::fs::rename(&self.cfg.path, rotated(&self.cfg.path, 1));
        } else {
            // No rotated copies kept: start the file over.
            let _ = std::fs::remove_file(&self.cfg.path);
        }
    }
}

fn rotated(path: &std::path::Path, i: u32) -> std::path::PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{i}"));
    s.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(p: &std::path::Path) -> String {
        std::fs::read_to_string(p).unwrap_or_default()
    }

    #[test]
    fn a_batch_is_appended_whole_and_rotated_by_size() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/audit.jsonl");
        let mut f = RotatingFile::new(AuditFile {
            path: path.clone(),
            max_size_bytes: 10,
            max_files: 2,
        });
        let mut buf = Vec::new();
        f.write_lines(["1111", "2222"].into_iter(), &mut buf)
            .unwrap();
        assert_eq!(read(&path), "1111\n2222\n");
        // 10 bytes are full: the next line starts a new file, the old one becomes `.1`.
        f.write_lines(["3333", "4444", "55555555555"].into_iter(), &mut buf)
            .unwrap();
        // A line longer than the limit still goes out, alone in its file.
        assert_eq!(read(&path), "55555555555\n");
        assert_eq!(read(&rotated(&path, 1)), "3333\n4444\n");
        assert_eq!(read(&rotated(&path, 2)), "1111\n2222\n");
        f.write_lines(["6"].into_iter(), &mut buf).unwrap();
        assert_eq!(read(&path), "6\n");
        assert_eq!(read(&rotated(&path, 2)), "3333\n4444\n");
        assert!(!rotated(&path, 3).exists());
    }

    #[test]
    fn without_rotated_copies_the_file_starts_over() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.jsonl");
        std::fs::write(&path, "old old old\n").unwrap();
        let mut f = RotatingFile::new(AuditFile {
            path: path.clone(),
            max_size_bytes: 8,
            max_files: 0,
        });
        let mut buf = Vec::new();
        f.write_lines(["abc", "def"].into_iter(), &mut buf).unwrap();
        assert_eq!(read(&path), "abc\ndef\n");
        assert!(!rotated(&path, 1).exists());
    }
}

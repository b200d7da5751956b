//! Reader for series of raw guest-RAM snapshots.
//!
//! A series is a folder of `snap-NN.raw` files (`NN` = 00, 01, … without gaps; file offset =
//! guest-physical address), or the compressed form of the recorded guest-RAM snapshots
//! (`docs/data.md`): `snap-00.raw.zst` (plain zstd) followed by `snap-NN.raw.patch.zst`,
//! each compressed with `zstd --patch-from` the previous snapshot. Compressed snapshots are decoded in memory,
//! so nothing needs to be unpacked on disk first.

use std::fs::File;
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

/// Where one snapshot of a series comes from.
#[derive(Debug, Clone)]
enum Source {
    /// An uncompressed `snap-NN.raw`.
    Raw(PathBuf),
    /// `snap-00.raw.zst`: a plain zstd frame.
    Zstd(PathBuf),
    /// `snap-NN.raw.patch.zst`: zstd with the previous snapshot as reference prefix.
    Patch(PathBuf),
}

/// An ordered series of snapshots found in a folder.
#[derive(Debug, Clone)]
pub struct SnapshotSeries {
    dir: PathBuf,
    sources: Vec<Source>,
}

impl SnapshotSeries {
    /// Finds the snapshots in `dir`. Fails when the folder holds none, or when the
    /// numbering has a gap.
    pub fn open(dir: impl AsRef<Path>) -> io::Result<Self> {
        let dir = dir.as_ref().to_path_buf();
        let mut sources = Vec::new();
        for index in 0.. {
            let raw = dir.join(format!("snap-{index:02}.raw"));
            let compressed = if index == 0 {
                dir.join("snap-00.raw.zst")
            } else {
                dir.join(format!("snap-{index:02}.raw.patch.zst"))
            };
            let source = if raw.is_file() {
                Source::Raw(raw)
            } else if compressed.is_file() && index == 0 {
                Source::Zstd(compressed)
            } else if compressed.is_file() {
                Source::Patch(compressed)
            } else {
                break;
            };
            sources.push(source);
        }
        if sources.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!(
                    "no snapshots in {} (expected snap-00.raw or snap-00.raw.zst)",
                    dir.display()
                ),
            ));
        }
        Ok(Self { dir, sources })
    }

    /// The folder the series was read from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Number of snapshots.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    /// Always false: an opened series holds at least one snapshot.
    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// A reader that walks the snapshots in order.
    pub fn reader(&self) -> SnapshotReader<'_> {
        SnapshotReader {
            series: self,
            next_index: 0,
            current: Vec::new(),
            previous: Vec::new(),
        }
    }
}

/// Walks a series in order, keeping the current and the previous snapshot in memory.
#[derive(Debug)]
pub struct SnapshotReader<'a> {
    series: &'a SnapshotSeries,
    next_index: usize,
    current: Vec<u8>,
    previous: Vec<u8>,
}

impl SnapshotReader<'_> {
    /// Loads the next snapshot; returns its index, or `None` at the end of the series.
    /// Fails on unreadable or corrupt files, and when a snapshot's size differs from the
    /// first one's.
    pub fn advance(&mut self) -> io::Result<Option<usize>> {
        let index = self.next_index;
        let Some(source) = self.series.sources.get(index) else {
            return Ok(None);
        };
        std::mem::swap(&mut self.current, &mut self.previous);
        self.current.clear();
        let context = |path: &Path, err: io::Error| {
            io::Error::new(err.kind(), format!("{}: {err}", path.display()))
        };
        match source {
            Source::Raw(path) => File::open(path)
                .and_then(|mut file| file.read_to_end(&mut self.current))
                .map_err(|e| context(path, e))?,
            Source::Zstd(path) => {
                decompress(path, None, &mut self.current).map_err(|e| context(path, e))?
            }
            Source::Patch(path) => decompress(path, Some(&self.previous), &mut self.current)
                .map_err(|e| context(path, e))?,
        };
        if index > 0 && self.current.len() != self.previous.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "snapshot {index} has {} bytes, snapshot {} has {}",
                    self.current.len(),
                    index - 1,
                    self.previous.len()
                ),
            ));
        }
        self.next_index += 1;
        Ok(Some(index))
    }

    /// The snapshot loaded by the last [`advance`](Self::advance) (empty before the first).
    pub fn current(&self) -> &[u8] {
        &self.current
    }

    /// The snapshot before the current one, if the current one is not the first.
    pub fn previous(&self) -> Option<&[u8]> {
        (self.next_index >= 2).then_some(self.previous.as_slice())
    }
}

/// Decompresses a zstd file, with `reference` as the `--patch-from` prefix if given.
fn decompress(path: &Path, reference: Option<&[u8]>, out: &mut Vec<u8>) -> io::Result<usize> {
    let file = BufReader::new(File::open(path)?);
    let mut decoder = match reference {
        Some(prefix) => zstd::stream::read::Decoder::with_ref_prefix(file, prefix)?,
        None => zstd::stream::read::Decoder::with_buffer(file)?,
    };
    // `--patch-from` of a 256 MiB file uses a window as large as the file.
    decoder.window_log_max(31)?;
    decoder.read_to_end(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, name: &str, bytes: &[u8]) {
        std::fs::write(dir.join(name), bytes).unwrap();
    }

    #[test]
    fn reads_raw_series_in_order() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "snap-00.raw", &[1; 8192]);
        write(dir.path(), "snap-01.raw", &[2; 8192]);
        let series = SnapshotSeries::open(dir.path()).unwrap();
        assert_eq!(series.len(), 2);
        let mut reader = series.reader();
        assert_eq!(reader.advance().unwrap(), Some(0));
        assert_eq!(reader.current(), &[1; 8192][..]);
        assert!(reader.previous().is_none());
        assert_eq!(reader.advance().unwrap(), Some(1));
        assert_eq!(reader.current(), &[2; 8192][..]);
        assert_eq!(reader.previous(), Some(&[1; 8192][..]));
        assert_eq!(reader.advance().unwrap(), None);
    }

    #[test]
    fn decodes_zstd_delta_chain() {
        let dir = tempfile::tempdir().unwrap();
        let first: Vec<u8> = (0..65536u32).map(|i| (i * 7 % 251) as u8).collect();
        let mut second = first.clone();
        second[1000] ^= 0xff;
        second[40000] = 9;
        write(
            dir.path(),
            "snap-00.raw.zst",
            &zstd::encode_all(&first[..], 3).unwrap(),
        );
        let mut encoder =
            zstd::stream::write::Encoder::with_ref_prefix(Vec::new(), 3, &first).unwrap();
        io::Write::write_all(&mut encoder, &second).unwrap();
        write(
            dir.path(),
            "snap-01.raw.patch.zst",
            &encoder.finish().unwrap(),
        );

        let series = SnapshotSeries::open(dir.path()).unwrap();
        let mut reader = series.reader();
        reader.advance().unwrap();
        assert_eq!(reader.current(), &first[..]);
        reader.advance().unwrap();
        assert_eq!(reader.current(), &second[..]);
        assert_eq!(reader.previous(), Some(&first[..]));
    }

    #[test]
    fn rejects_empty_folder_and_size_change() {
        let dir = tempfile::tempdir().unwrap();
        assert!(SnapshotSeries::open(dir.path()).is_err());
        write(dir.path(), "snap-00.raw", &[0; 4096]);
        write(dir.path(), "snap-01.raw", &[0; 8192]);
        let series = SnapshotSeries::open(dir.path()).unwrap();
        let mut reader = series.reader();
        reader.advance().unwrap();
        let err = reader.advance().unwrap_err();
        assert!(
            err.to_string().contains("snapshot 1 has 8192 bytes"),
            "{err}"
        );
    }

    #[test]
    fn corrupt_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "snap-00.raw.zst", b"not zstd at all");
        let series = SnapshotSeries::open(dir.path()).unwrap();
        let err = series.reader().advance().unwrap_err();
        assert!(err.to_string().contains("snap-00.raw.zst"), "{err}");
    }
}

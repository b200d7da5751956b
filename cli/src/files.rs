//! The files a command reads and writes: `-` for standard input or output, and outputs
//! that never replace anything but a regular file.
//!
//! An output path is handled by what it names (symbolic links followed):
//!
//! * nothing: a new file, written to a temporary file in the same folder and renamed into
//!   place only when the command succeeds;
//! * a regular file: the same, and only with `--force`; the new file keeps the old one's
//!   permissions (and its owner and group where the system allows);
//! * a character device or a FIFO (`/dev/null`, a named pipe): written in place as the
//!   command goes, never replaced;
//! * a dangling symbolic link, a folder, a block device or a socket: refused.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use serde::Serialize;

/// The path that means standard input (for an input) or standard output (for an output).
const STDIO: &str = "-";

/// Read buffer of an input (pages are read one at a time: fewer system calls).
const READ_BUFFER: usize = 1 << 20;

/// Write buffer of an output.
const WRITE_BUFFER: usize = 1 << 20;

/// True when `path` is `-`: standard input or output.
pub(crate) fn is_stdio(path: &Path) -> bool {
    path.as_os_str() == STDIO
}

/// A file being read from start to end.
pub(crate) struct Input {
    /// The bytes.
    reader: Box<dyn Read>,
    /// The path as given, or "standard input".
    name: String,
    /// The length, when the input is a regular file.
    regular_len: Option<u64>,
}

impl Input {
    /// Opens `path`, or standard input for `-`.
    pub(crate) fn open(path: &Path) -> anyhow::Result<Self> {
        if is_stdio(path) {
            return Ok(Self {
                reader: Box::new(BufReader::with_capacity(READ_BUFFER, io::stdin().lock())),
                name: "standard input".to_owned(),
                regular_len: None,
            });
        }
        let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
        let meta = file
            .metadata()
            .with_context(|| format!("reading the metadata of {}", path.display()))?;
        if meta.is_dir() {
            bail!("{} is a folder, not a file", path.display());
        }
        Ok(Self {
            reader: Box::new(BufReader::with_capacity(READ_BUFFER, file)),
            name: path.display().to_string(),
            regular_len: meta.is_file().then_some(meta.len()),
        })
    }

    /// The path as given, or "standard input".
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// The length of a regular file (`None` for pipes, devices and standard input).
    pub(crate) fn regular_len(&self) -> Option<u64> {
        self.regular_len
    }

    /// Fills `buf` unless the input ends first; returns the bytes read (fewer than
    /// `buf.len()` only at the end of the input).
    pub(crate) fn read_full(&mut self, buf: &mut [u8]) -> anyhow::Result<usize> {
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e).with_context(|| format!("reading {}", self.name)),
            }
        }
        Ok(filled)
    }
}

/// Where the bytes of an [`Output`] go until [`Output::finish`].
enum Sink {
    /// Standard output.
    Stdout(io::StdoutLock<'static>),
    /// A character device or FIFO, written in place.
    InPlace(File),
    /// A temporary file that becomes `path` when the output is finished.
    Replacing {
        /// The temporary file, in the folder of `path` (deleted if never finished).
        temp: tempfile::NamedTempFile,
        /// The file it replaces or creates (symbolic links resolved).
        path: PathBuf,
    },
}

impl Sink {
    /// Moves `n` bytes forward, leaving a hole (read as zeros), if the sink is a file being
    /// created; false if it cannot seek.
    fn skip(&mut self, n: u64) -> io::Result<bool> {
        let Self::Replacing { temp, .. } = self else {
            return Ok(false);
        };
        let n = i64::try_from(n).map_err(|_| io::Error::other("hole too large"))?;
        temp.as_file_mut().seek(SeekFrom::Current(n))?;
        Ok(true)
    }
}

impl Write for Sink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Self::Stdout(out) => out.write(buf),
            Self::InPlace(file) => file.write(buf),
            Self::Replacing { temp, .. } => temp.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Self::Stdout(out) => out.flush(),
            Self::InPlace(file) => file.flush(),
            Self::Replacing { temp, .. } => temp.flush(),
        }
    }
}

/// A command's output file (see the module documentation for what each kind of path
/// does). Dropped without [`Output::finish`], a new or replacing file is never created.
pub(crate) struct Output {
    /// Buffered writes to the sink.
    writer: BufWriter<Sink>,
    /// The path as given, or "standard output".
    name: String,
    /// Bytes written so far.
    written: u64,
}

impl Output {
    /// Prepares to write `path` (`-`: standard output); an existing regular file is
    /// replaced only if `force`.
    pub(crate) fn create(path: &Path, force: bool) -> anyhow::Result<Self> {
        let sink = if is_stdio(path) {
            Sink::Stdout(io::stdout().lock())
        } else {
            open_sink(path, force)?
        };
        Ok(Self {
            writer: BufWriter::with_capacity(WRITE_BUFFER, sink),
            name: if is_stdio(path) {
                "standard output".to_owned()
            } else {
                path.display().to_string()
            },
            written: 0,
        })
    }

    /// The path as given, or "standard output".
    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    /// Bytes written so far.
    pub(crate) fn written(&self) -> u64 {
        self.written
    }

    /// Appends `bytes`.
    pub(crate) fn write_all(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.writer
            .write_all(bytes)
            .with_context(|| format!("writing {}", self.name))?;
        self.written += bytes.len() as u64;
        Ok(())
    }

    /// Appends `n` zero bytes: a hole in a new or replacing file (no disk space where the
    /// file system has sparse files), written out to standard output, devices and FIFOs.
    pub(crate) fn write_zeros(&mut self, n: u64) -> anyhow::Result<()> {
        static ZEROS: [u8; 1 << 16] = [0; 1 << 16];
        let name = &self.name;
        self.writer
            .flush()
            .with_context(|| format!("writing {name}"))?;
        if !self
            .writer
            .get_mut()
            .skip(n)
            .with_context(|| format!("writing {name}"))?
        {
            let mut left = n;
            while left > 0 {
                let chunk = left.min(ZEROS.len() as u64) as usize;
                self.writer
                    .write_all(&ZEROS[..chunk])
                    .with_context(|| format!("writing {name}"))?;
                left -= chunk as u64;
            }
        }
        self.written += n;
        Ok(())
    }

    /// Flushes everything; a new or replacing file is synced to disk and renamed into place.
    pub(crate) fn finish(self) -> anyhow::Result<()> {
        let name = self.name;
        let sink = self
            .writer
            .into_inner()
            .map_err(|e| e.into_error())
            .with_context(|| format!("writing {name}"))?;
        match sink {
            Sink::Stdout(mut out) => out.flush().with_context(|| format!("writing {name}")),
            Sink::InPlace(mut file) => file.flush().with_context(|| format!("writing {name}")),
            Sink::Replacing { temp, path } => {
                // Holes at the end (`write_zeros`) are not in the file until its length says so.
                temp.as_file()
                    .set_len(self.written)
                    .and_then(|()| temp.as_file().sync_all())
                    .with_context(|| format!("writing {}", temp.path().display()))?;
                temp.persist(&path).map_err(|e| e.error).with_context(|| {
                    format!("renaming the temporary file to {}", path.display())
                })?;
                Ok(())
            }
        }
    }
}

/// The bytes are counted as [`Output::written`]; errors do not name the file (prefer
/// [`Output::write_all`] where no other writer needs an [`io::Write`]).
impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.writer.write(buf)?;
        self.written += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.writer.flush()
    }
}

/// Writes `bytes` to `path` (`-`: standard output) as an [`Output`]: an existing regular
/// file is replaced only if `force`. Says `wrote PATH` on standard error for a file.
pub(crate) fn write_file(path: &Path, force: bool, bytes: &[u8]) -> anyhow::Result<()> {
    let mut out = Output::create(path, force)?;
    out.write_all(bytes)?;
    out.finish()?;
    if !is_stdio(path) {
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

/// Writes `value` as pretty JSON with [`write_file`].
pub(crate) fn write_json(path: &Path, force: bool, value: &impl Serialize) -> anyhow::Result<()> {
    let text = serde_json::to_string_pretty(value)?;
    write_file(path, force, (text + "\n").as_bytes())
}

/// The sink for a file path: see the module documentation.
fn open_sink(path: &Path, force: bool) -> anyhow::Result<Sink> {
    match fs::metadata(path) {
        Ok(meta) if meta.is_file() => {
            if !force {
                bail!(
                    "{} already exists: add --force to replace it",
                    path.display()
                );
            }
            // Replace the file a symbolic link points to, not the link.
            let real =
                fs::canonicalize(path).with_context(|| format!("resolving {}", path.display()))?;
            replacing(real, Some(&meta))
        }
        Ok(meta) if writes_in_place(&meta) => {
            let file = OpenOptions::new()
                .write(true)
                .open(path)
                .with_context(|| format!("opening {} for writing", path.display()))?;
            Ok(Sink::InPlace(file))
        }
        Ok(meta) => bail!(
            "{} is {}: the output must be a regular file, a character device, a FIFO or `-`",
            path.display(),
            describe(&meta)
        ),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if fs::symlink_metadata(path).is_ok() {
                bail!(
                    "{} is a symbolic link to a missing file: not writing through it",
                    path.display()
                );
            }
            replacing(path.to_path_buf(), None)
        }
        Err(e) => Err(e).with_context(|| format!("reading the metadata of {}", path.display())),
    }
}

/// A temporary file in the folder of `path` that will replace (or create) it, with the
/// permissions (and, where allowed, owner and group) of the file it replaces.
fn replacing(path: PathBuf, old: Option<&fs::Metadata>) -> anyhow::Result<Sink> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".xbzrle-");
    #[cfg(unix)]
    {
        // Like any new file (temporary files default to owner-only); the umask applies.
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(fs::Permissions::from_mode(0o666));
    }
    let temp = builder
        .tempfile_in(dir)
        .with_context(|| format!("creating a temporary file in {}", dir.display()))?;
    if let Some(old) = old {
        #[cfg(unix)]
        {
            // Best effort: only root may give a file away, and then only where the file
            // system supports owners; the permissions below apply either way.
            use std::os::unix::fs::MetadataExt;
            let _ = std::os::unix::fs::fchown(temp.as_file(), Some(old.uid()), Some(old.gid()));
        }
        temp.as_file()
            .set_permissions(old.permissions())
            .with_context(|| format!("setting the permissions of {}", temp.path().display()))?;
    }
    Ok(Sink::Replacing { temp, path })
}

/// True for the files written in place: character devices and FIFOs.
#[cfg(unix)]
fn writes_in_place(meta: &fs::Metadata) -> bool {
    use std::os::unix::fs::FileTypeExt;
    let kind = meta.file_type();
    kind.is_char_device() || kind.is_fifo()
}

/// True for the files written in place: none outside Unix.
#[cfg(not(unix))]
fn writes_in_place(_meta: &fs::Metadata) -> bool {
    false
}

/// What kind of file `meta` describes, for messages ("a folder").
fn describe(meta: &fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let kind = meta.file_type();
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// Fails early, before a long run, when `path` cannot be an output file written at the end
/// (its folder is missing, it is a folder, or it is a regular file and not `force`). `flag`
/// names the option in the message.
pub(crate) fn check_output_path(path: &Path, flag: &str, force: bool) -> anyhow::Result<()> {
    if is_stdio(path) {
        return Ok(());
    }
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if !fs::metadata(dir).is_ok_and(|m| m.is_dir()) {
        bail!(
            "{flag} {}: the folder {} does not exist",
            path.display(),
            dir.display()
        );
    }
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => bail!("{flag} {}: that is a folder", path.display()),
        Ok(meta) if meta.is_file() && !force => bail!(
            "{flag} {}: already exists: add --force to replace it",
            path.display()
        ),
        _ => Ok(()),
    }
}

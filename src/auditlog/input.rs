//! Inputs: files or standard input, plain or gzip (told by the magic bytes, so a
//! rotated `audit.log.1` that was compressed without the `.gz` name works too), read
//! line by line into one reused buffer whose size is capped.

use std::{
    fs::File,
    io::{self, BufRead, BufReader, Read},
    path::PathBuf,
};

use flate2::bufread::MultiGzDecoder;

use super::AuditError;

const READ_BUFFER: usize = 256 << 10;
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];
/// After a line longer than this the buffer is given back, so one huge event does not
/// keep its memory for the rest of the run.
const SHRINK_ABOVE: usize = 4 << 20;

/// One input, checked but not yet open.
#[derive(Debug)]
pub(crate) struct Source {
    /// The path as given, or `<stdin>`.
    pub name: String,
    path: Option<PathBuf>,
}

/// Check every file can be opened before reading any, so a typo in the last of ten
/// rotated files fails at once rather than after the first nine.
pub(crate) fn check_sources(paths: &[PathBuf]) -> Result<Vec<Source>, AuditError> {
    if paths.is_empty() {
        return Ok(vec![Source::stdin()]);
    }
    paths
        .iter()
        .map(|path| {
            if path.as_os_str() == "-" {
                return Ok(Source::stdin());
            }
            let name = path.display().to_string();
            let open_error = |source| AuditError::Open {
                path: name.clone(),
                source,
            };
            let file = File::open(path).map_err(open_error)?;
            if file.metadata().map_err(open_error)?.is_dir() {
                return Err(open_error(io::Error::other("is a directory")));
            }
            Ok(Source {
                name,
                path: Some(path.clone()),
            })
        })
        .collect()
}

impl Source {
    fn stdin() -> Self {
        Source {
            name: "<stdin>".to_string(),
            path: None,
        }
    }

    /// Open the source, looking through gzip when its first bytes say so.
    pub(crate) fn open(&self) -> Result<OpenSource, AuditError> {
        let raw: Box<dyn Read> = match &self.path {
            Some(path) => Box::new(File::open(path).map_err(|source| AuditError::Open {
                path: self.name.clone(),
                source,
            })?),
            None => Box::new(io::stdin().lock()),
        };
        open_reader(&self.name, raw)
    }
}

fn open_reader(name: &str, raw: Box<dyn Read>) -> Result<OpenSource, AuditError> {
    let mut buffered = BufReader::with_capacity(READ_BUFFER, raw);
    let gzip = loop {
        match buffered.fill_buf() {
            Ok(head) => break head.starts_with(&GZIP_MAGIC),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(source) => {
                return Err(AuditError::Read {
                    path: name.to_string(),
                    source,
                })
            }
        }
    };
    let reader: Box<dyn BufRead> = if gzip {
        Box::new(BufReader::with_capacity(
            READ_BUFFER,
            MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    Ok(OpenSource {
        name: name.to_string(),
        gzip,
        reader,
    })
}

/// An open input.
pub(crate) struct OpenSource {
    name: String,
    gzip: bool,
    pub reader: Box<dyn BufRead>,
}

impl OpenSource {
    /// The error for a failed read: in a gzip stream almost always corrupt data.
    pub(crate) fn read_error(&self, source: io::Error) -> AuditError {
        let path = self.name.clone();
        let corrupt = matches!(
            source.kind(),
            io::ErrorKind::InvalidInput | io::ErrorKind::InvalidData | io::ErrorKind::UnexpectedEof
        );
        if self.gzip && corrupt {
            AuditError::Gzip { path, source }
        } else {
            AuditError::Read { path, source }
        }
    }
}

/// What [`LineReader::next`] read.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ReadLine<'b> {
    /// A line without its `\n`.
    Line(&'b [u8]),
    /// A line longer than the limit, skipped: its length.
    TooLong(usize),
}

/// Reads lines into one buffer, never holding more than `max` bytes of a line.
pub(crate) struct LineReader {
    buf: Vec<u8>,
    max: usize,
}

impl LineReader {
    pub(crate) fn new(max: usize) -> Self {
        LineReader {
            buf: Vec::with_capacity(64 << 10),
            max,
        }
    }

    /// The next line, or `None` at the end of the input.
    pub(crate) fn next(&mut self, reader: &mut dyn BufRead) -> io::Result<Option<ReadLine<'_>>> {
        if self.buf.capacity() > SHRINK_ABOVE {
            self.buf = Vec::with_capacity(64 << 10);
        }
        self.buf.clear();
        let mut len = 0usize;
        let mut read_any = false;
        loop {
            let available = match reader.fill_buf() {
                Ok(available) => available,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                break;
            }
            read_any = true;
            let (chunk, used, done) = match memchr::memchr(b'\n', available) {
                Some(i) => (&available[..i], i + 1, true),
                None => (available, available.len(), false),
            };
            len += chunk.len();
            if len <= self.max {
                self.buf.extend_from_slice(chunk);
            } else if !self.buf.is_empty() {
                self.buf = Vec::new();
            }
            reader.consume(used);
            if done {
                break;
            }
        }
        Ok(match (read_any, len > self.max) {
            (false, _) => None,
            (true, true) => Some(ReadLine::TooLong(len)),
            (true, false) => Some(ReadLine::Line(&self.buf)),
        })
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn lines(input: &[u8], max: usize) -> Vec<String> {
        let mut reader = LineReader::new(max);
        let mut src = BufReader::with_capacity(7, input);
        let mut out = Vec::new();
        while let Some(line) = reader.next(&mut src).unwrap() {
            out.push(match line {
                ReadLine::Line(l) => String::from_utf8(l.to_vec()).unwrap(),
                ReadLine::TooLong(n) => format!("<too long: {n}>"),
            });
        }
        out
    }

    #[test]
    fn splits_lines_across_buffer_refills_and_keeps_a_last_line_without_newline() {
        assert_eq!(
            lines(b"first line\n\nsecond, longer line\nlast", 1024),
            ["first line", "", "second, longer line", "last"]
        );
        assert!(lines(b"", 1024).is_empty());
    }

    #[test]
    fn a_line_over_the_limit_is_skipped_whole_and_the_next_one_is_read() {
        assert_eq!(
            lines(b"short\n0123456789abcdef\nnext\n", 10),
            ["short", "<too long: 16>", "next"]
        );
    }

    #[test]
    fn gzip_is_told_by_its_magic_bytes_and_concatenated_members_are_read() {
        let gz = |text: &str| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(text.as_bytes()).unwrap();
            e.finish().unwrap()
        };
        let mut both = gz("a\nb\n");
        both.extend(gz("c\n"));
        let mut open = open_reader("x", Box::new(io::Cursor::new(both))).unwrap();
        assert!(open.gzip);
        let mut reader = LineReader::new(100);
        let mut got = Vec::new();
        while let Some(ReadLine::Line(l)) = reader.next(open.reader.as_mut()).unwrap() {
            got.push(String::from_utf8(l.to_vec()).unwrap());
        }
        assert_eq!(got, ["a", "b", "c"]);

        let plain = open_reader("y", Box::new(io::Cursor::new(b"{}\n".to_vec()))).unwrap();
        assert!(!plain.gzip);
    }

    #[test]
    fn corrupt_gzip_is_a_gzip_error() {
        let mut bad = GZIP_MAGIC.to_vec();
        bad.extend_from_slice(b"\x08\x00garbage that is not deflate");
        let mut open = open_reader("bad.gz", Box::new(io::Cursor::new(bad))).unwrap();
        let mut reader = LineReader::new(100);
        let err = reader.next(open.reader.as_mut()).unwrap_err();
        let err = open.read_error(err);
        assert!(matches!(err, AuditError::Gzip { .. }), "{err:?}");
        assert!(
            err.to_string().starts_with("bad.gz: corrupt gzip data"),
            "{err}"
        );
    }
}

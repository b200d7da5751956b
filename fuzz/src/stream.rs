//! Target `stream`: the migration stream reader on arbitrary bytes.
//!
//! The input is the stream itself; the seeds are small hand-built streams and the first
//! kilobytes of the real QEMU 7.2 streams (`examples/stream_seeds.rs`), which libFuzzer
//! mutates.
//!
//! Checks: no crash and no endless loop (every event consumes input); an error points
//! inside the input; every page record lies inside the input, after the previous one, and
//! carries a whole page; an XBZRLE record's delta turns the page before into the page
//! after; the device-state walker never panics on the tail. When the whole input is
//! accepted, its copy through [`xbzrle_stream::StreamWriter`] is read back to the same page
//! records with the same page contents (so the same RAM) and the same tail, and is no
//! longer than the input.

use xbzrle_stream::tail::DeviceState;
use xbzrle_stream::{Event, PageBody, ReaderOptions, StreamError, StreamReader, StreamWriter};

/// RAM a fuzzed stream may announce: enough for the real streams' 256 MiB, small enough to
/// keep the tables far from libFuzzer's memory limit (page memory follows the pages
/// written).
const MAX_RAM: u64 = 512 << 20;

/// A page record as the round trip compares it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Page {
    block: usize,
    page_offset: u64,
    page: Vec<u8>,
}

/// What reading a stream produced.
#[derive(Debug, Default)]
struct Read {
    pages: Vec<Page>,
    tail: Vec<u8>,
}

/// Reads `data` to the end or the first error, checking every event; with `copy`, writes
/// every event to a [`StreamWriter`] as it goes.
fn read(data: &[u8], mut copy: Option<&mut StreamWriter<Vec<u8>>>) -> Result<Read, StreamError> {
    let options = ReaderOptions {
        max_ram_bytes: MAX_RAM,
    };
    let mut reader = StreamReader::with_options(data, options);
    let mut out = Read::default();
    let mut next_offset = 0u64;
    let mut footers = false;
    loop {
        let before = reader.offset();
        let event = match reader.next_event() {
            Ok(Some(event)) => event,
            Ok(None) => break,
            Err(err) => {
                assert!(
                    err.offset() <= data.len() as u64,
                    "error offset {} past the input ({} bytes): {err}",
                    err.offset(),
                    data.len()
                );
                let _ = err.to_string();
                return Err(err);
            }
        };
        let writer = copy.as_deref_mut();
        match event {
            Event::Page(record) => {
                assert!(record.offset >= next_offset, "records out of order");
                next_offset = record.offset + record.len;
                assert!(next_offset <= data.len() as u64, "record past the input");
                if let PageBody::Xbzrle { delta, before } = record.body {
                    let mut page = before.to_vec();
                    xbzrle::decode(delta, &mut page).expect("the reader accepted the delta");
                    assert_eq!(page, record.page, "delta does not give the page after");
                }
                if let Some(w) = writer {
                    let written = match record.body {
                        PageBody::Zero { fill } => {
                            w.zero_page(record.block, record.page_offset, fill)
                        }
                        PageBody::Page => w.page(record.block, record.page_offset, record.page),
                        PageBody::Xbzrle { delta, .. } => {
                            w.xbzrle_page(record.block, record.page_offset, delta)
                        }
                    };
                    written.expect("the writer takes what the reader accepted");
                }
                out.pages.push(Page {
                    block: record.block,
                    page_offset: record.page_offset,
                    page: record.page.to_vec(),
                });
            }
            Event::Tail(chunk) => {
                if let Some(w) = writer {
                    w.raw(chunk).expect("writing to memory");
                }
                out.tail.extend_from_slice(chunk);
            }
            Event::SectionEnd { footer } => {
                footers = footer;
                if let Some(w) = writer {
                    w.end_section(footer).expect("a section is open");
                }
            }
            other => {
                if let Some(w) = writer {
                    let written = match other {
                        Event::Header { .. } => w.header(),
                        Event::Configuration(c) => w.configuration(c),
                        Event::Command { command, data } => w.command(command, data),
                        Event::SectionStart(section) => w.begin_section(section),
                        Event::MemSize {
                            page_size, blocks, ..
                        } => w.mem_size(page_size, blocks),
                        _ => unreachable!("handled above"),
                    };
                    written.expect("the writer takes what the reader accepted");
                }
            }
        }
        assert!(reader.offset() > before, "an event consumed no input");
    }
    assert_eq!(
        reader.offset(),
        data.len() as u64,
        "accepted without reading everything"
    );
    let _ = DeviceState::parse(&out.tail, footers);
    Ok(out)
}

/// Runs the checks on one input; panics on a finding.
pub fn check(data: &[u8]) {
    let mut writer = StreamWriter::new(Vec::new());
    let Ok(first) = read(data, Some(&mut writer)) else {
        return;
    };
    let copied = writer.finish().expect("writing to memory");
    let second = read(&copied, None).expect("the copy of an accepted stream is accepted");
    // Same records with the same page after each: the same RAM.
    assert!(
        first.pages == second.pages,
        "the copy has other page records"
    );
    assert!(first.tail == second.tail, "the copy has another tail");
    assert!(
        copied.len() <= data.len(),
        "the copy names blocks more often"
    );
}

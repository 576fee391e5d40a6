//! `flowrec import`: Hubble JSON files into the store.
//!
//! Pipeline: one thread reads chunks of lines, a pool decodes them (`flow_schema::hubble`), a
//! collector thread reports errors and batches rows into files (`batch`); the async side encodes
//! each sealed file (`parquet_file`, on a blocking thread) and uploads it (`upload`). Bounded
//! channels between the stages keep memory flat and every core busy.
//!
//! Bad input never loses good input: a malformed line is reported with `file:line` and skipped;
//! an unreadable input (missing file, truncated `.gz`) is reported, its lines before the damage
//! are imported, and the next input is read. With `--strict` every input is checked first and
//! nothing is written unless all of it is valid.

use std::collections::{BTreeMap, HashMap};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::sync_channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use flow_schema::hubble::{Decoded, HubbleDecoder};
use flow_schema::store::{Patience, Store, StoreError};
use flow_schema::{CaptureSource, Table};
use indicatif::{ProgressBar, ProgressStyle};
use tokio::sync::mpsc;

use crate::batch::{Batcher, RotationPolicy, Staged};
use crate::input::{Chunk, InputError, InputName, LineChunks};
use crate::parquet_file::Provenance;
use crate::sink::{self, SinkError};
use crate::upload::Uploader;

/// Bytes of input decoded at once (whole lines, ~1200 flows). Every chunk in flight costs its
/// bytes and then its decoded rows, and a streamed import holds little else: measured on 1M
/// flows, 2 MiB chunks peaked at 262 MiB where 4 MiB took 308 and 8 MiB 373, at the same CPU.
const CHUNK_BYTES: usize = 2 << 20;
/// Malformed lines printed per input; the rest are only counted.
const ERRORS_SHOWN_PER_INPUT: u64 = 20;

/// A validated import request.
#[derive(Debug, Clone)]
pub struct ImportConfig {
    pub inputs: Vec<InputName>,
    pub store_url: String,
    /// The recorder's node: names the files, and fills `node_name` for flows without one.
    pub node_name: String,
    pub strict: bool,
    pub rotation: RotationPolicy,
    /// Draw a progress bar (stderr is a terminal).
    pub progress: bool,
    /// What is removed from L7 records before anything is written.
    pub redaction: flow_schema::hubble::Redaction,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Write(#[from] SinkError),
    #[error("--store {0}")]
    Misconfigured(#[from] flow_schema::store::ProbeError),
    #[error(
        "--strict: {lines} malformed line(s) and {inputs} unreadable input(s); nothing was written"
    )]
    StrictCheckFailed { lines: u64, inputs: usize },
    #[error("cannot buffer stdin for --strict: {0}")]
    StdinSpool(std::io::Error),
    #[error("the reader thread failed: {0}")]
    Reader(String),
}

/// What an import did.
#[derive(Debug, Default, Clone)]
pub struct ImportSummary {
    pub flows_written: u64,
    pub lost_events_written: u64,
    pub lines_skipped: u64,
    /// Valid non-flow events (agent/debug/node status) that are not recorded.
    pub other_events: u64,
    pub files_written: u64,
    pub bytes_written: u64,
    /// Inputs that could not be read to their end (each was reported).
    pub unreadable_inputs: Vec<String>,
    pub elapsed: Duration,
}

impl ImportSummary {
    /// Every line of every input was imported.
    pub fn is_clean(&self) -> bool {
        self.lines_skipped == 0 && self.unreadable_inputs.is_empty()
    }
}

/// Reports problems on stderr without breaking the progress bar.
struct Reporter {
    bar: ProgressBar,
    /// Malformed lines seen per input (only the first few are printed).
    shown_per_input: HashMap<usize, u64>,
}

impl Reporter {
    fn new(config: &ImportConfig) -> Self {
        let bar = if config.progress && std::io::stderr().is_terminal() {
            let total: Option<u64> = config.inputs.iter().map(InputName::size).sum();
            let bar = ProgressBar::new(total.unwrap_or(0));
            let template = if total.is_some() {
                "{spinner} {elapsed} [{bar:30}] {bytes}/{total_bytes} {msg}"
            } else {
                "{spinner} {elapsed} {bytes} {msg}"
            };
            bar.set_style(
                ProgressStyle::with_template(template)
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            bar
        } else {
            ProgressBar::hidden()
        };
        Reporter {
            bar,
            shown_per_input: HashMap::new(),
        }
    }

    fn line_errors(&mut self, index: usize, input: &InputName, decoded: &Decoded) {
        let shown = self.shown_per_input.entry(index).or_default();
        for error in &decoded.errors {
            *shown += 1;
            if *shown <= ERRORS_SHOWN_PER_INPUT {
                self.bar.suspend(|| {
                    eprintln!("flowrec: skipped {input}:{}: {}", error.line, error.reason)
                });
            } else if *shown == ERRORS_SHOWN_PER_INPUT + 1 {
                self.bar.suspend(|| {
                    eprintln!("flowrec: {input}: more malformed lines; only counting them now")
                });
            }
        }
    }

    fn input_error(&self, error: &InputError) {
        self.bar.suspend(|| eprintln!("flowrec: error: {error}"));
    }
}

/// What the reading side tells the collecting side.
enum Event {
    /// The chunk numbered `seq` in reading order (all inputs).
    Decoded {
        seq: u64,
        input: usize,
        decoded: Decoded,
    },
    InputFailed {
        input: usize,
        error: InputError,
    },
}

/// Totals of reading every input.
#[derive(Debug, Default)]
struct ReadStats {
    lines_skipped: u64,
    other_events: u64,
    unreadable: Vec<String>,
}

/// Reads and decodes every input, handing each decoded chunk to `sink` (on the calling thread);
/// `sink` returns false to stop early.
///
/// One thread reads chunks of lines, `workers` threads decode them (decoding is most of the
/// CPU an import costs), the calling thread collects. Decoded chunks are handed over in reading
/// order (a worker may finish a later chunk first): files are streamed into their encoder as
/// rows arrive, and input already in time order must stay so.
fn read_inputs(
    inputs: &[InputName],
    decoder: &HubbleDecoder,
    reporter: &mut Reporter,
    mut sink: impl FnMut(Decoded) -> bool,
) -> ReadStats {
    let workers = std::thread::available_parallelism()
        .map_or(2, |n| n.get())
        .clamp(1, 8);
    let raw_read = Arc::new(AtomicU64::new(0));
    let mut stats = ReadStats::default();
    let mut failed: Vec<usize> = Vec::new();
    std::thread::scope(|scope| {
        // One chunk waiting per worker, decoded or not: more added memory (14 MiB on 1M flows
        // with two) and no speed, the reader being far ahead of the decoders.
        let (chunk_sender, chunk_receiver) = sync_channel::<(u64, usize, Chunk)>(workers);
        let chunk_receiver = Arc::new(Mutex::new(chunk_receiver));
        let (event_sender, events) = sync_channel::<Event>(workers);

        let reader_events = event_sender.clone();
        let reader_raw = Arc::clone(&raw_read);
        scope.spawn(move || {
            let mut seq = 0;
            for (index, input) in inputs.iter().enumerate() {
                let mut chunks = match LineChunks::open(input, CHUNK_BYTES, Arc::clone(&reader_raw))
                {
                    Ok(chunks) => chunks,
                    Err(error) => {
                        let _ = reader_events.send(Event::InputFailed {
                            input: index,
                            error,
                        });
                        continue;
                    }
                };
                loop {
                    match chunks.next_chunk() {
                        Ok(Some(chunk)) => {
                            if chunk_sender.send((seq, index, chunk)).is_err() {
                                return; // the collector stopped
                            }
                            seq += 1;
                        }
                        Ok(None) => break,
                        Err(error) => {
                            let _ = reader_events.send(Event::InputFailed {
                                input: index,
                                error,
                            });
                            break;
                        }
                    }
                }
            }
        });
        for _ in 0..workers {
            let receiver = Arc::clone(&chunk_receiver);
            let sender = event_sender.clone();
            scope.spawn(move || loop {
                let job = receiver.lock().expect("no worker panics holding it").recv();
                let Ok((seq, input, chunk)) = job else { break };
                let decoded = decoder.decode_lines(&chunk.bytes, chunk.first_line, &chunk.newlines);
                if sender
                    .send(Event::Decoded {
                        seq,
                        input,
                        decoded,
                    })
                    .is_err()
                {
                    break;
                }
            });
        }
        drop(event_sender);

        // Chunks decoded ahead of their turn (at most the chunks in flight).
        let mut ahead: BTreeMap<u64, (usize, Decoded)> = BTreeMap::new();
        let mut next = 0;
        'events: for event in events {
            match event {
                Event::Decoded {
                    seq,
                    input,
                    decoded,
                } => {
                    ahead.insert(seq, (input, decoded));
                    while let Some((input, decoded)) = ahead.remove(&next) {
                        next += 1;
                        reporter.line_errors(input, &inputs[input], &decoded);
                        stats.lines_skipped += decoded.errors.len() as u64;
                        stats.other_events += decoded.other_events as u64;
                        reporter.bar.set_position(raw_read.load(Ordering::Relaxed));
                        if !sink(decoded) {
                            break 'events;
                        }
                    }
                }
                Event::InputFailed { input, error } => {
                    reporter.input_error(&error);
                    failed.push(input);
                }
            }
        }
    });
    failed.sort_unstable();
    stats.unreadable = failed.into_iter().map(|i| inputs[i].to_string()).collect();
    stats
}

/// Runs an import.
pub async fn run(mut config: ImportConfig) -> Result<ImportSummary, ImportError> {
    let started = Instant::now();
    let store = Store::open(&config.store_url, &Patience::INTERACTIVE)?;
    crate::upload::check_store(&store).await?;
    let decoder = HubbleDecoder::new(CaptureSource::Import, Some(config.node_name.clone()))
        .with_redaction(config.redaction.clone());
    // Keeps a spooled stdin alive until the import is over.
    let mut _stdin_spool = None;
    if config.strict {
        _stdin_spool = spool_stdin(&mut config.inputs)?;
        check_strictly(&config, &decoder)?;
    }

    let provenance = Provenance {
        node: config.node_name.clone(),
        source: CaptureSource::Import.as_str(),
    };
    let (sender, receiver) = mpsc::channel::<Staged>(2);
    let reader_config = config.clone();
    let batcher_provenance = provenance.clone();
    let reader = std::thread::spawn(move || {
        let mut reporter = Reporter::new(&reader_config);
        let mut batcher = Batcher::new(reader_config.rotation.clone(), batcher_provenance);
        let send = |files: Vec<Staged>| files.into_iter().all(|f| sender.blocking_send(f).is_ok());
        let stats = read_inputs(&reader_config.inputs, &decoder, &mut reporter, |decoded| {
            let mut full = batcher.push(Table::Flows, decoded.flows);
            full.extend(batcher.push(Table::LostEvents, decoded.lost_events));
            send(full)
        });
        send(batcher.flush());
        reporter.bar.finish_and_clear();
        stats
    });

    let mut uploader = Uploader::new(store, config.node_name.clone(), provenance.source);
    let (written, failure) = sink::write_all(receiver, &mut uploader, &provenance).await;
    let mut summary = ImportSummary {
        flows_written: written.flows,
        lost_events_written: written.lost_events,
        files_written: written.files,
        bytes_written: written.bytes,
        ..ImportSummary::default()
    };
    let stats = reader
        .join()
        .map_err(|_| ImportError::Reader("panicked".into()))?;
    summary.lines_skipped = stats.lines_skipped;
    summary.other_events = stats.other_events;
    summary.unreadable_inputs = stats.unreadable;
    summary.elapsed = started.elapsed();
    match failure {
        Some(error) => {
            eprintln!(
                "flowrec: {}",
                summary.describe(&uploader.store().location.to_string())
            );
            Err(error.into())
        }
        None => Ok(summary),
    }
}

/// `--strict`: decode everything once, write nothing; fail if anything is wrong.
fn check_strictly(config: &ImportConfig, decoder: &HubbleDecoder) -> Result<(), ImportError> {
    let mut reporter = Reporter::new(config);
    let stats = read_inputs(&config.inputs, decoder, &mut reporter, |_| true);
    reporter.bar.finish_and_clear();
    if stats.lines_skipped > 0 || !stats.unreadable.is_empty() {
        return Err(ImportError::StrictCheckFailed {
            lines: stats.lines_skipped,
            inputs: stats.unreadable.len(),
        });
    }
    Ok(())
}

/// stdin can be read only once; `--strict` reads inputs twice, so stdin goes to a temp file.
fn spool_stdin(inputs: &mut [InputName]) -> Result<Option<tempfile::NamedTempFile>, ImportError> {
    if !inputs.contains(&InputName::Stdin) {
        return Ok(None);
    }
    let mut spool = tempfile::NamedTempFile::new().map_err(ImportError::StdinSpool)?;
    std::io::copy(&mut std::io::stdin().lock(), &mut spool).map_err(ImportError::StdinSpool)?;
    for input in inputs.iter_mut().filter(|i| **i == InputName::Stdin) {
        *input = InputName::Spooled(spool.path().to_path_buf());
    }
    Ok(Some(spool))
}

impl ImportSummary {
    /// One human line (plus details) for the end of an import.
    pub fn describe(&self, store: &str) -> String {
        let mut text = format!(
            "imported {} flows and {} lost-event records into {store}: {} files, {}, in {:.1}s",
            self.flows_written,
            self.lost_events_written,
            self.files_written,
            flow_schema::units::human_bytes(self.bytes_written),
            self.elapsed.as_secs_f64()
        );
        if self.lines_skipped > 0 {
            text += &format!(
                "\n  {} malformed line(s) skipped (reported above)",
                self.lines_skipped
            );
        }
        if !self.unreadable_inputs.is_empty() {
            text += &format!(
                "\n  {} input(s) not read to the end: {}",
                self.unreadable_inputs.len(),
                self.unreadable_inputs.join(", ")
            );
        }
        if self.other_events > 0 {
            text += &format!(
                "\n  {} non-flow event(s) (agent/debug/node status) not recorded",
                self.other_events
            );
        }
        text
    }
}

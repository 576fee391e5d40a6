//! Output formats. Everything but `table` streams batch by batch, so `select * from flows` over
//! a month writes with bounded memory.

use std::fs::File;
use std::io::{self, BufWriter, IsTerminal, Write};
use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::arrow::{csv, json};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use futures::StreamExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Aligned table (the default)
    Table,
    /// CSV with a header; lists and structs as text
    Csv,
    /// One JSON array of objects
    Json,
    /// One JSON object per line
    Ndjson,
    /// A zstd Parquet file (needs --output or a pipe)
    Parquet,
}

#[derive(Debug, thiserror::Error)]
pub enum PrintError {
    #[error("cannot write {target}: {source}")]
    Io {
        target: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot format results: {0}")]
    Arrow(#[from] ArrowError),
    #[error("cannot write Parquet: {0}")]
    Parquet(#[from] datafusion::parquet::errors::ParquetError),
    #[error("query failed while streaming results: {0}")]
    Query(#[from] datafusion::error::DataFusionError),
    #[error("refusing to write Parquet to a terminal: use --output FILE or a pipe")]
    BinaryToTerminal,
}

/// Where results go.
pub struct Printer {
    format: OutputFormat,
    target: String,
    out: Box<dyn Write + Send>,
    to_terminal: bool,
}

impl Printer {
    pub fn new(format: OutputFormat, output: Option<PathBuf>) -> Result<Printer, PrintError> {
        let (out, target, to_terminal): (Box<dyn Write + Send>, String, bool) = match output {
            Some(path) => {
                let file = File::create(&path).map_err(|source| PrintError::Io {
                    target: path.display().to_string(),
                    source,
                })?;
                (
                    Box::new(BufWriter::new(file)),
                    path.display().to_string(),
                    false,
                )
            }
            None => {
                let terminal = io::stdout().is_terminal();
                (
                    Box::new(BufWriter::new(io::stdout())),
                    "stdout".into(),
                    terminal,
                )
            }
        };
        if format == OutputFormat::Parquet && to_terminal {
            return Err(PrintError::BinaryToTerminal);
        }
        Ok(Printer {
            format,
            target,
            out,
            to_terminal,
        })
    }

    pub fn is_terminal(&self) -> bool {
        self.to_terminal
    }

    fn io(&self, source: io::Error) -> PrintError {
        PrintError::Io {
            target: self.target.clone(),
            source,
        }
    }

    /// Writes a whole result; returns the number of rows.
    pub async fn print_stream(
        &mut self,
        mut stream: SendableRecordBatchStream,
    ) -> Result<usize, PrintError> {
        let schema = stream.schema();
        let mut rows = 0;
        match self.format {
            OutputFormat::Table => {
                let mut batches = Vec::new();
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    rows += batch.num_rows();
                    batches.push(batch);
                }
                self.print_table(schema, &batches)?;
            }
            OutputFormat::Csv => {
                let mut writer = csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut self.out);
                let mut wrote_any = false;
                while let Some(batch) = stream.next().await {
                    let batch = as_text_columns(&batch?)?;
                    rows += batch.num_rows();
                    writer.write(&batch)?;
                    wrote_any = true;
                }
                if !wrote_any {
                    writer.write(&as_text_columns(&RecordBatch::new_empty(schema))?)?;
                }
            }
            OutputFormat::Json => {
                let mut writer = json::ArrayWriter::new(&mut self.out);
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    rows += batch.num_rows();
                    writer.write(&batch)?;
                }
                writer.finish()?;
                self.out.write_all(b"\n").map_err(|e| self.io(e))?;
            }
            OutputFormat::Ndjson => {
                let mut writer = json::LineDelimitedWriter::new(&mut self.out);
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    rows += batch.num_rows();
                    writer.write(&batch)?;
                }
                writer.finish()?;
            }
            OutputFormat::Parquet => {
                let properties = WriterProperties::builder()
                    .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
                    .build();
                let mut writer = ArrowWriter::try_new(&mut self.out, schema, Some(properties))?;
                while let Some(batch) = stream.next().await {
                    let batch = batch?;
                    rows += batch.num_rows();
                    writer.write(&batch)?;
                }
                writer.close()?;
            }
        }
        self.out.flush().map_err(|e| self.io(e))?;
        Ok(rows)
    }

    /// Prints batches already in memory (`\d`, small built-in results).
    pub async fn print_batches(
        &mut self,
        schema: SchemaRef,
        batches: Vec<RecordBatch>,
    ) -> Result<usize, PrintError> {
        let stream = datafusion::physical_plan::stream::RecordBatchStreamAdapter::new(
            schema,
            futures::stream::iter(batches.into_iter().map(Ok)),
        );
        self.print_stream(Box::pin(stream)).await
    }

    fn print_table(
        &mut self,
        schema: SchemaRef,
        batches: &[RecordBatch],
    ) -> Result<(), PrintError> {
        let table = if batches.iter().all(|b| b.num_rows() == 0) {
            pretty_format_batches(&[RecordBatch::new_empty(schema)])?
        } else {
            pretty_format_batches(batches)?
        };
        writeln!(self.out, "{table}").map_err(|e| self.io(e))
    }
}

/// Every cell of a batch as display text (NULL as `None`): for reports.
pub fn text_rows(batch: &RecordBatch) -> Result<Vec<Vec<Option<String>>>, ArrowError> {
    let options = FormatOptions::default();
    let formatters = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<Vec<_>, _>>()?;
    Ok((0..batch.num_rows())
        .map(|row| {
            batch
                .columns()
                .iter()
                .zip(&formatters)
                .map(|(column, f)| column.is_valid(row).then(|| f.value(row).to_string()))
                .collect()
        })
        .collect())
}

/// CSV has no nested values: lists and structs become their display text, dictionaries their
/// values.
fn as_text_columns(batch: &RecordBatch) -> Result<RecordBatch, ArrowError> {
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut columns: Vec<ArrayRef> = Vec::with_capacity(batch.num_columns());
    for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
        match field.data_type() {
            DataType::List(_)
            | DataType::LargeList(_)
            | DataType::Struct(_)
            | DataType::Map(_, _) => {
                let formatter =
                    ArrayFormatter::try_new(column.as_ref(), &FormatOptions::default())?;
                let text: StringArray = (0..column.len())
                    .map(|i| column.is_valid(i).then(|| formatter.value(i).to_string()))
                    .collect();
                fields.push(Field::new(field.name(), DataType::Utf8, true));
                columns.push(Arc::new(text));
            }
            DataType::Dictionary(_, value) => {
                fields.push(Field::new(field.name(), value.as_ref().clone(), true));
                columns.push(cast(column, value)?);
            }
            _ => {
                fields.push(field.as_ref().clone());
                columns.push(Arc::clone(column));
            }
        }
    }
    RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
}
